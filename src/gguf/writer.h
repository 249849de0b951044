// GGUF writer (version 3): metadata and tensors with alignment, optional split output by size,
// streaming — declare every tensor first, then write their data in declaration order, in as many
// chunks as convenient, so a model larger than RAM is written with one chunk's memory.
//
//   Writer w("m.gguf", {.alignment = 32});
//   w.set("general.architecture", Value::string("llama"));
//   w.add_tensor("token_embd.weight", DType::Q4_K, {4096, 128256});
//   w.begin_data();                       // writes the header(s)
//   w.write(bytes_of_token_embd);         // any chunking; tensors in declaration order
//   w.finish();                           // checks every byte was written, pads, closes
//
// With split_max_bytes > 0 the output becomes "<prefix>-0000i-of-0000N.gguf" (prefix = path
// without ".gguf"): tensors are assigned in order to shards of at most that many data bytes
// (a tensor larger than the limit gets a shard of its own); all metadata goes to the first shard,
// every shard carries split.no (UINT16), split.count (UINT16), split.tensors.count (INT32).
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/dtype.h"
#include "gguf/value.h"

namespace velocity::gguf {

struct WriterOptions {
  uint64_t alignment = 32;        // written as general.alignment when not 32
  uint64_t split_max_bytes = 0;   // 0: one file
  bool header_only = false;       // write header(s) only, with velocity.header_only = true
};

class Writer {
 public:
  Writer(std::string path, WriterOptions options = {});
  ~Writer();  // an unfinished writer removes its partial outputs
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Metadata in insertion order; a duplicate key is an Error.
  void set(std::string key, Value value);
  // Declares a tensor; shape in GGUF order (shape[0] contiguous, multiple of the block size).
  void add_tensor(std::string name, DType type, std::vector<int64_t> shape);

  // Writes the header(s). No more set/add_tensor after this.
  void begin_data();
  // Appends data of the current tensor (declaration order); a chunk may span tensor ends.
  void write(std::span<const uint8_t> bytes);
  // Writes one whole tensor, which must be the next one due; sizes must match exactly.
  void write_tensor(std::string_view name, std::span<const uint8_t> bytes);
  // Name of the tensor whose data is due next ("" when all are written).
  std::string_view next_tensor() const;
  // Closes the output(s); Error if any tensor data is missing.
  void finish();

  // Output file paths (one, or the shards in order). Known after begin_data().
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  struct Pending {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    uint64_t n_bytes;
    uint32_t shard;
    uint64_t offset;  // within its shard's data section
  };
  void open_shard(uint32_t index);
  void ensure_shard(uint32_t index);
  void close_shard();
  std::vector<uint8_t> header_bytes(uint32_t shard) const;
  void raw_write(const void* data, size_t n);
  void write_zeros(uint64_t n);
  void complete_tensors();
  void require_data_phase(std::string_view what) const;
  [[noreturn]] void io_fail(std::string_view what, int err);

  std::string path_;
  WriterOptions options_;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::unordered_set<std::string> keys_;
  std::vector<Pending> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
  std::vector<std::string> paths_;
  std::vector<std::string> tmp_paths_;      // "<path>.tmp", renamed to paths_ by finish()
  std::vector<uint64_t> shard_data_bytes_;  // data section size of each shard, padding included
  bool begun_ = false;
  bool finished_ = false;
  bool failed_ = false;                     // an I/O error happened; only destruction remains
  bool user_alignment_key_ = false;         // general.alignment given by set()
  bool user_header_only_key_ = false;       // velocity.header_only given by set()
  std::FILE* out_ = nullptr;
  uint32_t n_opened_ = 0;                   // shards opened so far (in order)
  uint32_t current_shard_ = 0;
  size_t current_tensor_ = 0;
  uint64_t current_written_ = 0;  // bytes of the current tensor written so far
  uint64_t shard_pos_ = 0;        // bytes written to the current shard
  uint64_t shard_end_ = 0;        // expected size of the current shard
  uint64_t total_bytes_ = 0;      // tensor data bytes declared (without padding)
  uint64_t total_written_ = 0;
};

}  // namespace velocity::gguf
