// GGUF File: opening (one file or every shard of a split model), the joined tensor table, and the
// split file naming of the GGUF ecosystem. Parsing of one file's bytes is in parser.cpp.
#include "gguf/file.h"

#include <algorithm>
#include <charconv>
#include <optional>

#include "gguf/parser.h"

namespace velocity::gguf {

int64_t TensorInfo::n_rows() const {
  // Cannot overflow: the reader checks that the product of the nonzero dimensions fits int64.
  int64_t rows = 1;
  for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
  return rows;
}

File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::string& path, bool read) { return Parser::open(path, read); }

File File::parse(std::span<const uint8_t> bytes, std::string name) { return Parser::parse(bytes, std::move(name)); }

const Value* File::find(std::string_view key) const {
  for (const auto& [k, v] : metadata_)
    if (k == key) return &v;
  return nullptr;
}

const Value& File::at(std::string_view key) const {
  if (const Value* v = find(key)) return *v;
  fail("{}: missing metadata key '{}'", shards_.empty() ? std::string("<empty>") : shards_[0].path, key);
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string File::architecture() const {
  const Value* v = find("general.architecture");
  return v ? v->as_string() : std::string();
}

// ---------------------------------------------------------------------------------------------
// Split naming: "<prefix>-00001-of-00009.gguf", index 1-based, both numbers printed "%05d" (as
// llama.cpp's llama_split_path does), so a count above 99999 simply gets more digits.

std::string split_path(std::string_view prefix, int shard_index_1based, int n_shards) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, shard_index_1based, n_shards);
}

namespace {

// Parses the decimal number that ends at `end` (exclusive) in s; returns its start or npos.
std::optional<int> trailing_number(std::string_view s, size_t end, size_t* start) {
  size_t b = end;
  while (b > 0 && s[b - 1] >= '0' && s[b - 1] <= '9') --b;
  if (b == end || end - b > 9) return std::nullopt;
  int value = 0;
  std::from_chars(s.data() + b, s.data() + end, value);
  *start = b;
  return value;
}

}  // namespace

SplitName parse_split_path(std::string_view path) {
  constexpr std::string_view kSuffix = ".gguf";
  constexpr std::string_view kOf = "-of-";
  SplitName none;
  if (path.size() < kSuffix.size() || path.substr(path.size() - kSuffix.size()) != kSuffix) return none;
  size_t count_start = 0, index_start = 0;
  const auto count = trailing_number(path, path.size() - kSuffix.size(), &count_start);
  if (!count || count_start < kOf.size() || path.substr(count_start - kOf.size(), kOf.size()) != kOf) return none;
  const auto index = trailing_number(path, count_start - kOf.size(), &index_start);
  if (!index || index_start == 0 || path[index_start - 1] != '-') return none;
  if (*index < 1 || *count < 1 || *index > *count) return none;
  SplitName out{std::string(path.substr(0, index_start - 1)), *index, *count};
  // Only the canonical spelling (zero-padded to 5 digits, no extra zeros) names a shard.
  if (split_path(out.prefix, out.index, out.count) != path) return none;
  return out;
}

// ---------------------------------------------------------------------------------------------

void Parser::assemble(File& file, std::vector<ParsedShard>& shards) {
  file.header_only_ = shards[0].header_only();
  file.metadata_ = std::move(shards[0].metadata);
  size_t n_tensors = 0;
  for (const auto& s : shards) n_tensors += s.tensors.size();
  file.tensors_.reserve(n_tensors);
  file.tensor_index_.reserve(n_tensors);
  // Where each tensor's info starts, to cite the first of two tensors with the same name.
  std::vector<std::pair<uint32_t, uint64_t>> name_at;
  name_at.reserve(n_tensors);
  for (uint32_t si = 0; si < shards.size(); ++si) {
    ParsedShard& s = shards[si];
    file.shards_.push_back(s.shard);
    for (size_t i = 0; i < s.tensors.size(); ++i) {
      TensorInfo& t = s.tensors[i];
      const auto [it, inserted] = file.tensor_index_.emplace(t.name, file.tensors_.size());
      if (!inserted) {
        const auto [first_shard, first_at] = name_at[it->second];
        fail_at(s.shard.path, s.name_at[i], "duplicate tensor name '{}' (first at byte {} of {})", printable(t.name),
                first_at, shards[first_shard].shard.path);
      }
      t.shard = si;
      file.tensors_.push_back(std::move(t));
      name_at.emplace_back(si, s.name_at[i]);
    }
  }
}

File Parser::parse(std::span<const uint8_t> bytes, std::string name) {
  std::vector<ParsedShard> shards;
  shards.push_back(parse_header(bytes, name));
  place_tensors(shards[0], bytes, shards[0].header_only());
  File file;
  assemble(file, shards);
  return file;
}

File Parser::open(const std::string& path, bool read) {
  File file;
  file.maps_.push_back(std::make_unique<MappedFile>(path, read));
  std::vector<ParsedShard> shards;
  shards.push_back(parse_header(file.maps_[0]->bytes(), path));
  const bool header_only = shards[0].header_only();

  // Key types were checked while parsing, so get<> cannot fail here. split.count 0 is taken
  // as 1 (llama.cpp treats both as "not split").
  const Value* count_value = shards[0].find("split.count");
  const uint64_t count_at = shards[0].value_byte("split.count");
  const int n_shards = count_value ? std::max<int>(count_value->get<uint16_t>(), 1) : 1;
  if (n_shards > 1) {
    const SplitName name = parse_split_path(path);
    if (name.index == 0)
      fail_at(path, count_at,
              "split.count is {} but the file name does not follow '<prefix>-00001-of-{:05d}.gguf'; open the first "
              "shard under its proper name",
              n_shards, n_shards);
    if (name.count != n_shards)
      fail_at(path, count_at, "split.count is {} but the file name says {} shards", n_shards, name.count);
    if (name.index != 1)
      fail_at(path, count_at, "this is shard {} of {}; open the first shard '{}'", name.index, n_shards,
              split_path(name.prefix, 1, n_shards));

    for (int i = 1; i < n_shards; ++i) {
      const std::string shard_path = split_path(name.prefix, i + 1, n_shards);
      try {
        file.maps_.push_back(std::make_unique<MappedFile>(shard_path, read));
      } catch (const Error& e) {
        fail_at(path, count_at, "split.count is {} but shard {} cannot be opened: {}", n_shards, i + 1, e.what());
      }
      shards.push_back(parse_header(file.maps_.back()->bytes(), shard_path));
    }
  }

  // Each shard names its place (split.no, 0-based) and the shard count; a model of one file may
  // carry them too (split.count 1).
  for (int i = 0; i < (int)shards.size(); ++i) {
    const ParsedShard& s = shards[i];
    const Value* no = s.find("split.no");
    const Value* count = s.find("split.count");
    if (n_shards > 1 && (!no || !count))
      fail_at(s.shard.path, s.metadata_end, "shard {} of {} lacks the split.no or split.count key", i + 1, n_shards);
    if (no && no->get<uint16_t>() != i)
      fail_at(s.shard.path, s.value_byte("split.no"), "split.no is {} but this file is shard {} of {} (split.no {})",
              no->get<uint16_t>(), i + 1, n_shards, i);
    if (count && std::max<int>(count->get<uint16_t>(), 1) != n_shards)
      fail_at(s.shard.path, s.value_byte("split.count"), "split.count is {} but the first shard '{}' says {}",
              count->get<uint16_t>(), path, n_shards);
  }
  const ParsedShard& first = shards[0];  // no more shards are added from here on
  const Value* total_value = first.find("split.tensors.count");
  if (n_shards > 1 && !total_value)
    fail_at(path, first.metadata_end, "split model of {} shards lacks split.tensors.count", n_shards);
  if (total_value) {
    uint64_t total = 0;
    for (const auto& s : shards) total += s.tensors.size();
    if (total_value->get<int32_t>() < 0 || (uint64_t)total_value->get<int32_t>() != total)
      fail_at(path, first.value_byte("split.tensors.count"),
              "split.tensors.count is {} but the {} shard(s) hold {} tensors", total_value->get<int32_t>(),
              shards.size(), total);
  }

  for (size_t i = 0; i < shards.size(); ++i) place_tensors(shards[i], file.maps_[i]->bytes(), header_only);
  assemble(file, shards);
  return file;
}

}  // namespace velocity::gguf
