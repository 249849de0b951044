// Safetensors reader; the rules and their source are listed in safetensors.h.
#include "tools/safetensors.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <filesystem>
#include <limits>
#include <set>
#include <unordered_set>
#include <utility>

#include "core/error.h"
#include "gguf/parser.h"

namespace velocity::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using gguf::printable;

constexpr std::array<SafeDTypeInfo, 17> kDTypes = {{
    {SafeDType::BOOL, "BOOL", 1},       {SafeDType::U8, "U8", 1},
    {SafeDType::I8, "I8", 1},           {SafeDType::F8_E5M2, "F8_E5M2", 1},
    {SafeDType::F8_E4M3, "F8_E4M3", 1}, {SafeDType::F8_E8M0, "F8_E8M0", 1},
    {SafeDType::I16, "I16", 2},         {SafeDType::U16, "U16", 2},
    {SafeDType::F16, "F16", 2},         {SafeDType::BF16, "BF16", 2},
    {SafeDType::I32, "I32", 4},         {SafeDType::U32, "U32", 4},
    {SafeDType::F32, "F32", 4},         {SafeDType::F64, "F64", 8},
    {SafeDType::I64, "I64", 8},         {SafeDType::U64, "U64", 8},
    {SafeDType::C64, "C64", 8},
}};

// A valid header nests 3 levels (object > tensor object > shape array); the index.json 3 too.
constexpr int kMaxJsonDepth = 3;
// model.safetensors.index.json is small (a name -> file map); bound it like a header.
constexpr uint64_t kMaxIndexSize = kSafetensorsMaxHeaderSize;

template <class... Args>
[[noreturn]] void fail_at(std::string_view file, uint64_t at, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format("{}: at byte {}: {}", file, at, fmt::format(format, std::forward<Args>(args)...)));
}

[[noreturn]] void fail_in_tensor(std::string_view file, std::string_view tensor, std::string_view what) {
  throw Error(fmt::format("{}: tensor '{}': {}", file, tensor, what));
}

const char* json_type(const json& j) { return j.type_name(); }

// Builds the DOM as nlohmann's own parser does, also rejecting duplicate keys in any object and
// nesting deeper than kMaxJsonDepth. (nlohmann's callback parser would do for the checks, but it
// rescans the parent container after every nested value ends: quadratic in the number of tensors,
// minutes for a few hundred thousand. The SAX DOM builder is linear.)
class StrictSax : public nlohmann::detail::json_sax_dom_parser<json> {
  using Base = nlohmann::detail::json_sax_dom_parser<json>;

 public:
  StrictSax(json& result, const std::string& file, uint64_t base, std::string_view what)
      : Base(result, true), file_(file), base_(base), what_(what) {}

  bool start_object(std::size_t n) {
    enter();
    keys_.emplace_back();
    is_object_.push_back(true);
    return Base::start_object(n);
  }
  bool start_array(std::size_t n) {
    enter();
    is_object_.push_back(false);
    return Base::start_array(n);
  }
  bool end_object() {
    leave();
    return Base::end_object();
  }
  bool end_array() {
    leave();
    return Base::end_array();
  }
  bool key(std::string& k) {
    if (!keys_.empty() && !keys_.back().insert(k).second) {
      if (is_object_.size() == 1)
        fail_at(file_, base_, "{}: key '{}' appears twice (duplicate tensor name)", what_, printable(k));
      fail_at(file_, base_, "{}: key '{}' appears twice in one JSON object", what_, printable(k));
    }
    return Base::key(k);
  }

 private:
  void enter() {
    if (is_object_.size() >= size_t(kMaxJsonDepth))
      fail_at(file_, base_, "{}: JSON nested deeper than {} levels", what_, kMaxJsonDepth);
  }
  void leave() {
    if (is_object_.empty()) return;
    if (is_object_.back() && !keys_.empty()) keys_.pop_back();
    is_object_.pop_back();
  }

  const std::string& file_;
  uint64_t base_;
  std::string_view what_;
  std::vector<std::unordered_set<std::string>> keys_;  // one set per open object
  std::vector<bool> is_object_;                        // per open container
};

// Parses `text` (which starts at byte `base` of `file`) strictly (see StrictSax); `what` names
// the text in messages ("header").
json parse_json_strict(std::string_view text, const std::string& file, uint64_t base, std::string_view what) {
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore what follows it; a
  // raw NUL is invalid anywhere in JSON (serde_json, the official parser, rejects it).
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
    fail_at(file, base + nul, "{} is not valid JSON: NUL byte", what);
  json root;
  StrictSax sax(root, file, base, what);
  try {
    json::sax_parse(text.begin(), text.end(), &sax);
  } catch (const json::parse_error& e) {
    // e.byte is 1-based and may point one past the end of the text.
    const uint64_t at = base + (e.byte > 0 ? std::min<uint64_t>(e.byte - 1, text.size()) : 0);
    fail_at(file, at, "{} is not valid JSON: {}", what, e.what());
  } catch (const json::exception& e) {
    fail_at(file, base, "{} is not valid JSON: {}", what, e.what());
  }
  return root;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

// A non-negative integer JSON value as u64; nullopt for anything else (negative, float, string).
std::optional<uint64_t> as_u64(const json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if (v >= 0) return uint64_t(v);
  }
  return std::nullopt;
}

std::string describe(const json& j) {
  std::string s = j.dump(-1, ' ', true, json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 40) + "...";
  return s;
}

SafeTensor parse_tensor(const std::string& file, const std::string& name, const json& entry, uint64_t data_start,
                        std::span<const uint8_t> buffer) {
  const std::string shown = printable(name);
  if (!entry.is_object()) fail_in_tensor(file, shown, fmt::format("entry is a JSON {}, expected an object", json_type(entry)));
  SafeTensor t;
  t.name = name;

  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) fail_in_tensor(file, shown, "field \"dtype\" is missing");
  if (!dtype_it->is_string()) fail_in_tensor(file, shown, fmt::format("field \"dtype\" is a JSON {}, expected a string", json_type(*dtype_it)));
  const std::string dtype_name = dtype_it->get<std::string>();
  const auto dtype = safe_dtype_from_name(dtype_name);
  if (!dtype) {
    if (dtype_name == "F4" || dtype_name == "F6_E2M3" || dtype_name == "F6_E3M2")
      fail_in_tensor(file, shown, fmt::format("field \"dtype\": sub-byte dtype '{}' is not supported", dtype_name));
    fail_in_tensor(file, shown, fmt::format("field \"dtype\": unknown dtype '{}'", printable(dtype_name)));
  }
  t.dtype = *dtype;

  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) fail_in_tensor(file, shown, "field \"shape\" is missing");
  if (!shape_it->is_array()) fail_in_tensor(file, shown, fmt::format("field \"shape\" is a JSON {}, expected an array", json_type(*shape_it)));
  int64_t n_elements = 1;
  bool overflow = false;
  for (size_t i = 0; i < shape_it->size(); ++i) {
    const json& d = (*shape_it)[i];
    const auto dim = as_u64(d);
    if (!dim) fail_in_tensor(file, shown, fmt::format("field \"shape\"[{}]: {} is not a non-negative integer", i, describe(d)));
    if (*dim > uint64_t(std::numeric_limits<int64_t>::max()))
      fail_in_tensor(file, shown, fmt::format("field \"shape\"[{}]: dimension {} is too large", i, *dim));
    t.shape.push_back(int64_t(*dim));
    if (__builtin_mul_overflow(n_elements, int64_t(*dim), &n_elements)) overflow = true;
  }
  // As the official library (try_fold with checked_mul, left to right): an overflow of any
  // prefix product is an error, even when a later dimension is 0.
  if (overflow) fail_in_tensor(file, shown, "field \"shape\": the number of elements overflows 64 bits");
  t.n_elements = n_elements;
  int64_t n_bytes = 0;
  if (__builtin_mul_overflow(n_elements, safe_dtype_size(t.dtype), &n_bytes))
    fail_in_tensor(file, shown, fmt::format("field \"shape\": {} elements of {} overflow 64 bits of bytes", n_elements,
                            safe_dtype_name(t.dtype)));

  const auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end()) fail_in_tensor(file, shown, "field \"data_offsets\" is missing");
  if (!offsets_it->is_array() || offsets_it->size() != 2)
    fail_in_tensor(file, shown, fmt::format("field \"data_offsets\" is {}, expected an array [begin, end]", describe(*offsets_it)));
  const auto begin = as_u64((*offsets_it)[0]);
  const auto end = as_u64((*offsets_it)[1]);
  if (!begin || !end)
    fail_in_tensor(file, shown, fmt::format("field \"data_offsets\" is {}, expected two non-negative integers", describe(*offsets_it)));
  if (*begin > *end) fail_in_tensor(file, shown, fmt::format("field \"data_offsets\" [{}, {}]: begin is after end", *begin, *end));
  if (*end > buffer.size())
    fail_in_tensor(file, shown, fmt::format("field \"data_offsets\" [{}, {}]: ends past the data buffer, which holds {} bytes "
                            "(file bytes {}..{})",
                            *begin, *end, buffer.size(), data_start, data_start + buffer.size()));
  if (*end - *begin != uint64_t(n_bytes))
    fail_in_tensor(file, shown, fmt::format("field \"data_offsets\" [{}, {}] span {} bytes, but shape [{}] of {} needs {} bytes", *begin,
                            *end, *end - *begin, fmt::join(t.shape, ", "), safe_dtype_name(t.dtype), n_bytes));
  t.begin = *begin;
  t.end = *end;
  t.file_offset = data_start + *begin;
  t.data = buffer.subspan(*begin, *end - *begin);
  return t;
}

}  // namespace

const SafeDTypeInfo& safe_dtype_info(SafeDType type) {
  for (const auto& info : kDTypes)
    if (info.type == type) return info;
  VELOCITY_CHECK(false, "unknown SafeDType {}", int(type));
}

std::optional<SafeDType> safe_dtype_from_name(std::string_view name) {
  for (const auto& info : kDTypes)
    if (info.name == name) return info.type;
  return std::nullopt;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto map = std::make_unique<MappedFile>(path);
  SafetensorsFile file = parse(map->bytes(), path);
  file.map_ = std::move(map);
  return file;
}

SafetensorsFile SafetensorsFile::parse(std::span<const uint8_t> bytes, std::string name) {
  SafetensorsFile file;
  file.name_ = std::move(name);
  const std::string& fname = file.name_;
  // Header size checks in the official order: HeaderTooSmall, HeaderTooLarge, InvalidHeaderLength.
  if (bytes.size() < 8)
    fail_at(fname, 0, "file is {} bytes, too short for the 8-byte header size", bytes.size());
  const uint64_t n = read_u64_le(bytes.data());
  if (n > kSafetensorsMaxHeaderSize)
    fail_at(fname, 0, "header size {} is over the {} byte limit of the safetensors format", n,
            kSafetensorsMaxHeaderSize);
  if (n > bytes.size() - 8)
    fail_at(fname, 0, "header size {} runs past the end of the file ({} bytes after the size)", n, bytes.size() - 8);
  file.header_size_ = n;
  const std::string_view header(reinterpret_cast<const char*>(bytes.data()) + 8, n);
  // The official library reserves InvalidHeaderStart for this (commented out until 0.4.0);
  // every writer emits '{' first, so velocity requires it now.
  if (header.empty() || header[0] != '{') fail_at(fname, 8, "header does not start with '{{'");
  const json root = parse_json_strict(header, fname, 8, "header");
  if (!root.is_object()) fail_at(fname, 8, "header is a JSON {}, expected an object", json_type(root));

  const uint64_t data_start = 8 + n;
  const std::span<const uint8_t> buffer = bytes.subspan(data_start);
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object())
        throw Error(fmt::format("{}: field \"__metadata__\" is a JSON {}, expected an object of strings", fname,
                                json_type(value)));
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string())
          throw Error(fmt::format("{}: field \"__metadata__\"['{}'] is a JSON {}, expected a string", fname,
                                  printable(mkey), json_type(mvalue)));
        file.metadata_.emplace(mkey, mvalue.get<std::string>());
      }
      continue;
    }
    file.tensors_.push_back(parse_tensor(fname, key, value, data_start, buffer));
  }

  // Metadata::validate: sorted by data_offsets, tensors lie back to back from 0 and the last
  // one ends at the end of the buffer.
  std::sort(file.tensors_.begin(), file.tensors_.end(), [](const SafeTensor& a, const SafeTensor& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  const SafeTensor* previous = nullptr;
  for (const SafeTensor& t : file.tensors_) {
    if (t.begin < covered)
      throw Error(fmt::format("{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", fname,
                              printable(t.name), t.begin, t.end, printable(previous->name), previous->begin,
                              previous->end));
    if (t.begin > covered)
      fail_at(fname, data_start + covered, "data bytes [{}, {}) belong to no tensor (gap before tensor '{}')", covered,
              t.begin, printable(t.name));
    covered = t.end;
    previous = &t;
  }
  if (covered != buffer.size())
    fail_at(fname, data_start + covered, "data bytes [{}, {}) belong to no tensor (the data buffer is not fully covered)",
            covered, buffer.size());

  for (size_t i = 0; i < file.tensors_.size(); ++i) file.index_.emplace(file.tensors_[i].name, i);
  return file;
}

const SafeTensor* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

SafetensorsModel SafetensorsModel::open_dir(const std::string& dir) {
  SafetensorsModel model;
  model.dir = dir;
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::is_regular_file(single, ec)) {
    model.shards.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(single.string())));
  } else if (fs::is_regular_file(index_path, ec)) {
    const std::string iname = index_path.string();
    const MappedFile map(iname);
    if (map.bytes().size() > kMaxIndexSize)
      fail_at(iname, 0, "file is {} bytes, over the {} byte limit for an index", map.bytes().size(), kMaxIndexSize);
    const std::string_view text(reinterpret_cast<const char*>(map.bytes().data()), map.bytes().size());
    const json root = parse_json_strict(text, iname, 0, "index");
    if (!root.is_object()) fail_at(iname, 0, "index is a JSON {}, expected an object", json_type(root));
    const auto wm = root.find("weight_map");
    if (wm == root.end()) throw Error(fmt::format("{}: field \"weight_map\" is missing", iname));
    if (!wm->is_object())
      throw Error(fmt::format("{}: field \"weight_map\" is a JSON {}, expected an object", iname, json_type(*wm)));

    // tensor name -> shard file name, and the shard file names in sorted order.
    std::map<std::string, std::string> shard_of;
    std::set<std::string> shard_names;
    for (const auto& [tensor, file] : wm->items()) {
      if (!file.is_string())
        throw Error(fmt::format("{}: field \"weight_map\"['{}'] is a JSON {}, expected a file name", iname,
                                printable(tensor), json_type(file)));
      const std::string fname = file.get<std::string>();
      const fs::path p(fname);
      bool escapes = fname.empty() || p.is_absolute();
      for (const auto& part : p)
        if (part == "..") escapes = true;
      if (escapes)
        throw Error(fmt::format("{}: field \"weight_map\"['{}']: '{}' is not a file name inside the model directory",
                                iname, printable(tensor), printable(fname)));
      shard_of.emplace(tensor, fname);
      shard_names.insert(fname);
    }
    if (shard_names.empty()) throw Error(fmt::format("{}: field \"weight_map\" lists no tensors", iname));

    std::map<std::string, size_t> shard_index;
    for (const std::string& fname : shard_names) {
      const fs::path p = fs::path(dir) / fname;
      if (!fs::is_regular_file(p, ec)) {
        const auto first = std::find_if(shard_of.begin(), shard_of.end(), [&](const auto& kv) { return kv.second == fname; });
        throw Error(fmt::format("{}: field \"weight_map\"['{}'] names shard '{}', which does not exist in {}", iname,
                                printable(first->first), printable(fname), dir));
      }
      shard_index.emplace(fname, model.shards.size());
      model.shards.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(p.string())));
    }
    for (const auto& [tensor, fname] : shard_of) {
      const SafetensorsFile& shard = *model.shards[shard_index.at(fname)];
      if (!shard.find(tensor))
        throw Error(fmt::format("{}: field \"weight_map\"['{}']: tensor is not in shard {}", iname, printable(tensor),
                                shard.name()));
    }
    for (const auto& shard : model.shards) {
      for (const SafeTensor& t : shard->tensors()) {
        const auto it = shard_of.find(t.name);
        if (it == shard_of.end())
          throw Error(fmt::format("{}: tensor '{}' is not listed in {}", shard->name(), printable(t.name), iname));
        const SafetensorsFile& listed = *model.shards[shard_index.at(it->second)];
        if (&listed != shard.get())
          throw Error(fmt::format("{}: tensor '{}' is also in shard {} (where {} places it)", shard->name(),
                                  printable(t.name), listed.name(), iname));
      }
    }
  } else {
    throw Error(fmt::format("{}: no model.safetensors or model.safetensors.index.json", dir));
  }

  for (size_t s = 0; s < model.shards.size(); ++s) {
    for (const SafeTensor& t : model.shards[s]->tensors()) {
      VELOCITY_CHECK(model.index_.emplace(t.name, model.tensors.size()).second, "tensor '{}' twice",
                     printable(t.name));
      model.tensors.push_back(Entry{&t, s});
    }
  }
  return model;
}

const SafetensorsModel::Entry* SafetensorsModel::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors[it->second];
}

}  // namespace velocity::tools
