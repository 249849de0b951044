// GGUF reader: versions 2 and 3, memory-mapped, split models (`name-00001-of-0000N.gguf`).
//
// Every size, count and offset read from the file is checked before use: a corrupt or hostile
// file gets a velocity::Error "<file>: at byte <offset>: <what is wrong>", never a crash, a hang
// or an allocation larger than a small multiple of the file's own size.
//
// Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv
// key/value pairs (string key, u32 value type, value), then n_tensors tensor infos (string name,
// u32 n_dims, n_dims x u64 dims, u32 ggml type, u64 offset), padding to `general.alignment`
// (default 32), then the data section; a tensor's offset is relative to the data section start.
//
// What the reader accepts where the spec is silent, following ggml's gguf.cpp: dimensions of 0
// (an empty tensor, n_bytes 0); tensors in any offset order (but never sharing bytes); any
// nonzero power of two as general.alignment; any nonempty key. Arrays of arrays nest at most 8
// deep (ggml reads none). A file version other than 2 or 3 is an error.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/mmap.h"
#include "gguf/value.h"

namespace velocity::gguf {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;

// Keys with a type fixed by the GGUF ecosystem; the reader rejects other types for them.
//   general.alignment: UINT32 (power of two), general.architecture: STRING,
//   split.no / split.count: UINT16, split.tensors.count: INT32,
//   tokenizer.ggml.model / .pre: STRING, tokenizer.ggml.tokens / .merges: ARRAY of STRING,
//   tokenizer.ggml.scores: ARRAY of FLOAT32, tokenizer.ggml.token_type: ARRAY of INT32.
// Files written by synth --header-only carry `velocity.header_only = true`: their tensor data is
// absent, and the reader then checks offsets and alignment but not that the data is present.
constexpr std::string_view kHeaderOnlyKey = "velocity.header_only";

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the contiguous (row) dimension
  int64_t n_elements = 0;
  uint64_t n_bytes = 0;
  uint32_t shard = 0;          // index into File::shards()
  uint64_t offset = 0;         // relative to its shard's data section, as stored in the file
  uint64_t file_offset = 0;    // absolute byte offset in its shard
  const uint8_t* data = nullptr;  // into the mapping; nullptr for header-only files

  int64_t n_rows() const;      // product of shape[1..]
  std::span<const uint8_t> bytes() const { return {data, data ? n_bytes : 0}; }
};

struct Shard {
  std::string path;
  uint32_t version = 0;
  uint64_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;    // start of the data section
  uint64_t file_size = 0;
};

class File {
 public:
  // Opens a file; when it is a split model, `path` must name the first shard (the others are
  // found by name in the same directory and validated against it).
  // `read`: the file (and its shards) read into memory instead of mapped (--no-mmap).
  static File open(const std::string& path, bool read = false);
  // Parses an in-memory image of a single (unsplit or lone) GGUF file; `name` appears in errors.
  // The bytes must outlive the File. Used by the fuzzer and by tests.
  static File parse(std::span<const uint8_t> bytes, std::string name = "<memory>");

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  uint32_t version() const { return shards_.at(0).version; }
  uint64_t alignment() const { return shards_.at(0).alignment; }
  bool header_only() const { return header_only_; }
  const std::vector<Shard>& shards() const { return shards_; }

  // Metadata of the first shard, in file order (split.* keys included).
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;         // nullptr when absent
  const Value& at(std::string_view key) const;           // Error naming file and key when absent

  // Tensors of all shards, in file order (shard 0 first).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

  // "general.architecture", or "" when absent.
  std::string architecture() const;

 private:
  File() = default;
  friend class Parser;

  std::vector<Shard> shards_;
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;  // name -> index into tensors_
  bool header_only_ = false;
};

// Split file naming of the GGUF ecosystem: "<prefix>-00001-of-00009.gguf" (1-based).
std::string split_path(std::string_view prefix, int shard_index_1based, int n_shards);
// If `path` follows that pattern, returns {prefix, index, count}; else index == 0.
struct SplitName {
  std::string prefix;
  int index = 0;
  int count = 0;
};
SplitName parse_split_path(std::string_view path);

}  // namespace velocity::gguf
