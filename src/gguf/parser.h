// Internal to the GGUF reader: parsing and checking one file's bytes (parser.cpp), and joining
// the shards of a split model into one File (file.cpp).
//
// Every read goes through a bounds-checked cursor; every count read from the file is compared
// with the bytes left before anything is allocated for it, so the memory a file can make the
// reader allocate is bounded by a small multiple of its own size (the largest factor is an array
// of empty nested arrays: 12 bytes each in the file, one Value each in memory).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "gguf/file.h"

namespace velocity::gguf {

// Arrays of arrays may nest this deep (an array directly under a key is level 1).
constexpr int kMaxArrayDepth = 8;

// Throws "<file>: at byte <at>: <message>".
template <class... Args>
[[noreturn]] void fail_at(std::string_view file, uint64_t at, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format("{}: at byte {}: {}", file, at, fmt::format(format, std::forward<Args>(args)...)));
}

// A name or key from the file, made safe to print: control bytes escaped, cut after 64 bytes.
std::string printable(std::string_view s);

// One file's header as read from its bytes, with the byte positions that later checks cite.
struct ParsedShard {
  Shard shard;
  std::vector<std::pair<std::string, Value>> metadata;
  std::vector<uint64_t> value_at;   // per metadata entry: byte of its value type id
  uint64_t metadata_end = 0;        // byte where the tensor infos start
  std::vector<TensorInfo> tensors;  // data, file_offset not yet set (see place_tensors)
  std::vector<uint64_t> name_at;    // per tensor: byte where its info (name) starts
  std::vector<uint64_t> offset_at;  // per tensor: byte of its offset field

  const Value* find(std::string_view key) const;
  uint64_t value_byte(std::string_view key) const;  // metadata_end when absent
  bool header_only() const;                         // velocity.header_only == true
};

class Parser {
 public:
  // Reads and checks the header, metadata and tensor infos of one file (`name` is its path as
  // it appears in errors). Tensor placement is checked separately, as a split model's shards
  // all take header-only-ness from the first one.
  static ParsedShard parse_header(std::span<const uint8_t> bytes, const std::string& name);
  // Checks every tensor's offset (alignment, overflow, overlap and, unless header_only, that its
  // data lies inside the file) and sets file_offset and data.
  static void place_tensors(ParsedShard& shard, std::span<const uint8_t> bytes, bool header_only);

  static File open(const std::string& path, bool read = false);
  static File parse(std::span<const uint8_t> bytes, std::string name);

 private:
  // Moves the shards' tensors into one table (names unique across all), metadata of the first.
  static void assemble(File& file, std::vector<ParsedShard>& shards);
};

}  // namespace velocity::gguf
