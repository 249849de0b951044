// Safetensors reader (Hugging Face's weight format), memory-mapped, for `velocity convert`.
//
// Layout: u64 little-endian header size N, then N bytes of UTF-8 JSON, then the data buffer. The
// JSON is an object mapping tensor name -> {"dtype": "F32", "shape": [2, 3], "data_offsets":
// [begin, end]} with offsets relative to the start of the data buffer, plus an optional
// "__metadata__" object of string -> string. The header may be padded with trailing spaces.
//
// Every rule the official library enforces (huggingface/safetensors, safetensors/src/tensor.rs:
// SafeTensors::read_metadata and Metadata::validate) is enforced here, with a message naming the
// file and the byte offset or JSON field:
//   - the header size is at most 100'000'000 bytes (MAX_HEADER_SIZE) and fits in the file;
//   - the header starts with '{' and is valid UTF-8 JSON;
//   - tensors sorted by data_offsets lie back to back from 0: no gaps, no overlaps, and the last
//     end equals the size of the data buffer (no trailing bytes);
//   - end - begin == product(shape) * dtype size, computed without overflow;
//   - no tensor name twice (checked here on the raw JSON: a JSON object with a duplicate key is
//     rejected, where nlohmann would silently keep the last value).
// Like the official library: dimensions of 0 and scalar shapes [] are allowed; unknown fields in
// a tensor entry are ignored; "__metadata__": null means no metadata. Beyond it: JSON nesting is
// capped at 3 levels (as deep as a valid header goes) so a hostile header cannot blow the stack or the
// heap, and sub-byte dtypes (F4, F6_*) are rejected as unsupported.
//
// Cost: linear in the header size. The header is held as a JSON DOM while it is checked, so peak
// memory is up to ~30x the header (measured on hostile 99 MB headers: 2.9 GB for 6M metadata
// entries, 2.3 GB for a 49M-dimension shape, 1.6 GB for 1.7M tensors), the header itself being
// bounded by the file size and the 100 MB limit.
//
// Tensor data is not aligned in general (N is arbitrary): read it with memcpy.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mmap.h"

namespace velocity::tools {

// Maximum header size the official library accepts (MAX_HEADER_SIZE in tensor.rs).
constexpr uint64_t kSafetensorsMaxHeaderSize = 100'000'000;

// Element types by their safetensors names.
enum class SafeDType : uint8_t {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64,
};

struct SafeDTypeInfo {
  SafeDType type;
  std::string_view name;  // as the header spells it: "F32", "BF16", "F8_E4M3"
  int64_t size;           // bytes per element
};

const SafeDTypeInfo& safe_dtype_info(SafeDType type);
inline std::string_view safe_dtype_name(SafeDType type) { return safe_dtype_info(type).name; }
inline int64_t safe_dtype_size(SafeDType type) { return safe_dtype_info(type).size; }
// Exact (case-sensitive, as the official library) name lookup; nullopt when unknown.
std::optional<SafeDType> safe_dtype_from_name(std::string_view name);

struct SafeTensor {
  std::string name;
  SafeDType dtype = SafeDType::F32;
  std::vector<int64_t> shape;     // row-major, as PyTorch: shape.back() is contiguous; [] = scalar
  int64_t n_elements = 0;         // product of shape (1 for a scalar)
  uint64_t begin = 0;             // data_offsets, relative to the data buffer
  uint64_t end = 0;
  uint64_t file_offset = 0;       // absolute byte of the first element in the file
  std::span<const uint8_t> data;  // end - begin bytes into the mapping (unaligned)
};

class SafetensorsFile {
 public:
  // Memory-maps and parses `path`.
  static SafetensorsFile open(const std::string& path);
  // Parses an in-memory image; `name` appears in errors. The bytes must outlive the result.
  static SafetensorsFile parse(std::span<const uint8_t> bytes, std::string name = "<memory>");

  const std::string& name() const { return name_; }
  uint64_t header_size() const { return header_size_; }  // N, the JSON's length in bytes
  // In data-offset order (zero-size tensors at the same offset by name).
  const std::vector<SafeTensor>& tensors() const { return tensors_; }
  const SafeTensor* find(std::string_view name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;

  std::string name_;
  std::unique_ptr<MappedFile> map_;  // set by open(); spans point into it
  uint64_t header_size_ = 0;
  std::vector<SafeTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A Hugging Face model directory: model.safetensors, or model.safetensors.index.json naming the
// shards ("weight_map": tensor name -> shard file name). Every shard named must exist, every tensor
// listed must be in the shard named for it, every tensor of a shard must be listed for that shard,
// and no tensor may be in two shards.
struct SafetensorsModel {
  struct Entry {
    const SafeTensor* tensor = nullptr;  // into shards[shard]
    size_t shard = 0;
  };

  std::string dir;
  std::vector<std::unique_ptr<SafetensorsFile>> shards;  // sorted by file name
  std::vector<Entry> tensors;                            // shard order, then file order

  static SafetensorsModel open_dir(const std::string& dir);
  const Entry* find(std::string_view name) const;  // nullptr when absent

 private:
  std::unordered_map<std::string, size_t> index_;  // name -> index into tensors
};

}  // namespace velocity::tools
