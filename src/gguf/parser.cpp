// Parsing one GGUF file's bytes: header, metadata, tensor infos and tensor placement.
//
// Why so many checks: model files come from the internet. Each count is checked against the bytes
// left before it drives an allocation or a loop (every item of every type takes at least one
// byte, so work is linear in the file size), each size/offset computation is overflow-checked,
// and array nesting is capped so recursion depth is bounded.
#include "gguf/parser.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace velocity::gguf {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

std::string printable(std::string_view s) {
  constexpr size_t kMaxShown = 64;
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == kMaxShown) {
      out += fmt::format("...({} bytes)", s.size());
      break;
    }
    const unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || c == '\\' || c == '\'')
      out += fmt::format("\\x{:02x}", c);
    else
      out += (char)c;
  }
  return out;
}

const Value* ParsedShard::find(std::string_view key) const {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

uint64_t ParsedShard::value_byte(std::string_view key) const {
  for (size_t i = 0; i < metadata.size(); ++i)
    if (metadata[i].first == key) return value_at[i];
  return metadata_end;
}

bool ParsedShard::header_only() const {
  const Value* v = find(kHeaderOnlyKey);
  return v && v->as_bool();  // its type was checked while parsing
}

namespace {

// Bounds-checked little-endian reads over one file's bytes. `context` (the key or tensor being
// read) prefixes every error so the user learns which item was damaged, not just where.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return bytes_.size() - pos_; }
  void set_context(std::string context) { context_ = std::move(context); }

  template <class... Args>
  [[noreturn]] void fail(uint64_t at, fmt::format_string<Args...> format, Args&&... args) const {
    const std::string what = fmt::format(format, std::forward<Args>(args)...);
    if (context_.empty()) fail_at(name_, at, "{}", what);
    fail_at(name_, at, "{}: {}", context_, what);
  }

  const uint8_t* take(uint64_t n, std::string_view what) {
    if (n > left()) fail(pos_, "unexpected end of file reading {} (needs {} bytes, {} left)", what, n, left());
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }

  template <class T>
  T read(std::string_view what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }

  // A GGUF string: u64 length, then that many bytes (not NUL-terminated). The view points into
  // the file's bytes.
  std::string_view string(std::string_view what) {
    const uint64_t at = pos_;
    const uint64_t n = read<uint64_t>(what);
    if (n > left()) fail(at, "{} has length {} but only {} bytes are left in the file", what, n, left());
    return {reinterpret_cast<const char*>(take(n, what)), (size_t)n};
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  uint64_t pos_ = 0;
  std::string context_;
};

// Fewest bytes one array item of this type takes in the file: an empty string is its 8-byte
// length, an empty nested array its 4-byte element type and 8-byte count.
uint64_t min_item_bytes(ValueType t) {
  if (t == ValueType::STRING) return 8;
  if (t == ValueType::ARRAY) return 12;
  return value_type_size(t);
}

template <class T>
Value read_scalar(Cursor& c) {
  static constexpr ValueType kType = value_type_of<T>();
  if constexpr (std::is_same_v<T, bool>)
    return Value::scalar(c.read<uint8_t>("a BOOL value") != 0);
  else
    return Value::scalar(c.read<T>(value_type_name(kType)));
}

// Reads a value of `type` (its type id already read). `depth` is the number of arrays this value
// is inside of, plus one if it is itself an array.
Value read_value(Cursor& c, ValueType type, int depth) {
  switch (type) {
    case ValueType::UINT8: return read_scalar<uint8_t>(c);
    case ValueType::INT8: return read_scalar<int8_t>(c);
    case ValueType::UINT16: return read_scalar<uint16_t>(c);
    case ValueType::INT16: return read_scalar<int16_t>(c);
    case ValueType::UINT32: return read_scalar<uint32_t>(c);
    case ValueType::INT32: return read_scalar<int32_t>(c);
    case ValueType::FLOAT32: return read_scalar<float>(c);
    case ValueType::BOOL: return read_scalar<bool>(c);
    case ValueType::UINT64: return read_scalar<uint64_t>(c);
    case ValueType::INT64: return read_scalar<int64_t>(c);
    case ValueType::FLOAT64: return read_scalar<double>(c);
    case ValueType::STRING: return Value::string(std::string(c.string("a string")));
    case ValueType::ARRAY: break;
  }

  const uint64_t at = c.pos();
  if (depth > kMaxArrayDepth) c.fail(at, "arrays are nested more than {} levels deep", kMaxArrayDepth);
  const uint32_t elem_id = c.read<uint32_t>("an array element type");
  if (!value_type_valid(elem_id)) c.fail(at, "array has unknown element type id {}", elem_id);
  const ValueType elem = (ValueType)elem_id;
  const uint64_t n = c.read<uint64_t>("an array length");
  const uint64_t min_bytes = min_item_bytes(elem);
  if (n > c.left() / min_bytes)
    c.fail(at, "array of {} {} items cannot fit in the {} bytes left in the file (each takes at least {} bytes)", n,
           value_type_name(elem), c.left(), min_bytes);

  if (elem == ValueType::STRING) {
    std::vector<std::string> items;
    items.reserve(n);
    for (uint64_t i = 0; i < n; ++i) items.emplace_back(c.string("an array string"));
    return Value::string_array(std::move(items));
  }
  if (elem == ValueType::ARRAY) {
    std::vector<Value> items;
    items.reserve(n);
    for (uint64_t i = 0; i < n; ++i) items.push_back(read_value(c, ValueType::ARRAY, depth + 1));
    return Value::array_of_arrays(std::move(items));
  }
  const uint8_t* p = c.take(n * min_bytes, "array items");
  std::vector<uint8_t> packed(p, p + n * min_bytes);
  // BOOL is one byte, nonzero meaning true (as ggml reads it); keep it canonical.
  if (elem == ValueType::BOOL)
    for (auto& b : packed) b = b != 0;
  return Value::numeric_array(elem, std::move(packed));
}

// Keys whose type the GGUF ecosystem fixes (see file.h); elem applies when type is ARRAY.
struct KnownKey {
  std::string_view key;
  ValueType type;
  ValueType elem;
};
constexpr KnownKey kKnownKeys[] = {
    {"general.alignment", ValueType::UINT32, ValueType::UINT8},
    {"general.architecture", ValueType::STRING, ValueType::UINT8},
    {"split.no", ValueType::UINT16, ValueType::UINT8},
    {"split.count", ValueType::UINT16, ValueType::UINT8},
    {"split.tensors.count", ValueType::INT32, ValueType::UINT8},
    {"tokenizer.ggml.model", ValueType::STRING, ValueType::UINT8},
    {"tokenizer.ggml.pre", ValueType::STRING, ValueType::UINT8},
    {"tokenizer.ggml.tokens", ValueType::ARRAY, ValueType::STRING},
    {"tokenizer.ggml.merges", ValueType::ARRAY, ValueType::STRING},
    {"tokenizer.ggml.scores", ValueType::ARRAY, ValueType::FLOAT32},
    {"tokenizer.ggml.token_type", ValueType::ARRAY, ValueType::INT32},
    {kHeaderOnlyKey, ValueType::BOOL, ValueType::UINT8},
};

std::string type_text(const Value& v) {
  if (v.is_array()) return fmt::format("ARRAY of {}", value_type_name(v.elem_type()));
  return std::string(value_type_name(v.type()));
}

void check_known_key(const Cursor& c, uint64_t at, std::string_view key, const Value& v) {
  for (const auto& known : kKnownKeys) {
    if (known.key != key) continue;
    const bool ok = v.type() == known.type && (!v.is_array() || v.elem_type() == known.elem);
    if (!ok) {
      const std::string want = known.type == ValueType::ARRAY ? fmt::format("ARRAY of {}", value_type_name(known.elem))
                                                              : std::string(value_type_name(known.type));
      c.fail(at, "must be {}, found {}", want, type_text(v));
    }
    return;
  }
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += fmt::format("{}{}", i ? ", " : "", shape[i]);
  return out + "]";
}

void read_header(Cursor& c, ParsedShard& out, uint64_t* n_tensors, uint64_t* n_kv) {
  const uint8_t* magic = c.take(4, "the magic");
  uint32_t magic_u32;
  std::memcpy(&magic_u32, magic, 4);
  if (magic_u32 != kMagic)
    c.fail(0, "not a GGUF file: magic is '{}', expected 'GGUF'",
           printable(std::string_view(reinterpret_cast<const char*>(magic), 4)));

  const uint32_t version = c.read<uint32_t>("the version");
  if (version == 1)
    c.fail(4, "GGUF version 1 is not supported (only versions 2 and 3); convert the file with a current llama.cpp");
  if (version != 2 && version != 3) {
    // A version with its low 16 bits clear is what a big-endian file looks like from here.
    if (version != 0 && (version & 0xffff) == 0)
      c.fail(4, "GGUF version {:#x} is not supported (only versions 2 and 3); is this a big-endian file?", version);
    c.fail(4, "GGUF version {} is not supported (only versions 2 and 3)", version);
  }
  out.shard.version = version;

  // Each tensor info takes at least 32 bytes (name length, n_dims, one dim, type, offset); each
  // key/value pair at least 14 (key length, one key byte, type, a one-byte value).
  *n_tensors = c.read<uint64_t>("the tensor count");
  *n_kv = c.read<uint64_t>("the metadata count");
  if (*n_tensors > c.left() / 32)
    c.fail(8, "tensor count {} cannot fit in the {} bytes left in the file", *n_tensors, c.left());
  if (*n_kv > c.left() / 14)
    c.fail(16, "metadata count {} cannot fit in the {} bytes left in the file", *n_kv, c.left());
}

void read_metadata(Cursor& c, ParsedShard& out, uint64_t n_kv) {
  out.metadata.reserve(n_kv);
  out.value_at.reserve(n_kv);
  // Views into the file's bytes, which outlive this parse.
  std::unordered_set<std::string_view> seen;
  seen.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t key_at = c.pos();
    c.set_context(fmt::format("metadata entry {}", i));
    const std::string_view key = c.string("a key");
    if (key.empty()) c.fail(key_at, "empty key");
    c.set_context(fmt::format("key '{}'", printable(key)));
    if (!seen.insert(key).second) c.fail(key_at, "duplicate key");

    const uint64_t value_at = c.pos();
    const uint32_t type_id = c.read<uint32_t>("a value type");
    if (!value_type_valid(type_id)) c.fail(value_at, "unknown value type id {}", type_id);
    Value value = read_value(c, (ValueType)type_id, 1);
    check_known_key(c, value_at, key, value);
    if (key == "general.alignment") {
      const uint32_t alignment = value.get<uint32_t>();
      if (alignment == 0 || !std::has_single_bit(alignment))
        c.fail(value_at, "alignment {} is not a nonzero power of two", alignment);
      out.shard.alignment = alignment;
    }
    out.metadata.emplace_back(std::string(key), std::move(value));
    out.value_at.push_back(value_at);
  }
  c.set_context("");
  out.metadata_end = c.pos();
}

void read_tensor_infos(Cursor& c, ParsedShard& out, uint64_t n_tensors) {
  out.tensors.reserve(n_tensors);
  out.name_at.reserve(n_tensors);
  out.offset_at.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    const uint64_t name_at = c.pos();
    c.set_context(fmt::format("tensor info {}", i));
    t.name = std::string(c.string("a tensor name"));
    c.set_context(fmt::format("tensor '{}'", printable(t.name)));

    const uint64_t dims_at = c.pos();
    const uint32_t n_dims = c.read<uint32_t>("the number of dimensions");
    if (n_dims < 1 || n_dims > (uint32_t)kMaxDims) c.fail(dims_at, "n_dims is {}, must be 1..{}", n_dims, kMaxDims);
    // Dimensions are u64 in the file; ggml reads them as int64 and rejects negatives. Zero is
    // allowed (an empty tensor), as in ggml. The product of the nonzero dimensions must fit
    // int64, so that n_elements and n_rows() can never overflow.
    int64_t nonzero_product = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim_at = c.pos();
      const int64_t dim = c.read<int64_t>("a dimension");
      if (dim < 0) c.fail(dim_at, "dimension {} is {} (negative as int64)", d, dim);
      t.shape.push_back(dim);
      if (__builtin_mul_overflow(nonzero_product, std::max<int64_t>(dim, 1), &nonzero_product))
        c.fail(dims_at, "shape {} has more elements than fit in int64", shape_text(t.shape));
    }
    t.n_elements = std::count(t.shape.begin(), t.shape.end(), 0) ? 0 : nonzero_product;

    const uint64_t type_at = c.pos();
    const uint32_t type_id = c.read<uint32_t>("the tensor type");
    const std::optional<DTypeInfo> info = dtype_info(type_id);
    if (!info) c.fail(type_at, "unknown tensor type id {}", type_id);
    t.type = info->type;
    if (t.shape[0] % info->block_size != 0)
      c.fail(type_at, "row of {} elements is not a multiple of {}'s block size {}", t.shape[0], info->name,
             info->block_size);
    int64_t n_bytes = 0;
    if (__builtin_mul_overflow(t.n_elements / info->block_size, info->block_bytes, &n_bytes))
      c.fail(type_at, "shape {} of {} takes more bytes than fit in int64", shape_text(t.shape), info->name);
    t.n_bytes = (uint64_t)n_bytes;

    const uint64_t offset_at = c.pos();
    t.offset = c.read<uint64_t>("the tensor data offset");

    out.tensors.push_back(std::move(t));
    out.name_at.push_back(name_at);
    out.offset_at.push_back(offset_at);
  }
  c.set_context("");
}

}  // namespace

ParsedShard Parser::parse_header(std::span<const uint8_t> bytes, const std::string& name) {
  ParsedShard out;
  out.shard.path = name;
  out.shard.file_size = bytes.size();
  Cursor c(bytes, name);
  uint64_t n_tensors = 0, n_kv = 0;
  read_header(c, out, &n_tensors, &n_kv);
  read_metadata(c, out, n_kv);
  read_tensor_infos(c, out, n_tensors);
  // The data section starts at the first multiple of the alignment after the tensor infos
  // (alignment <= 2^31 and the position is within the file, so this cannot overflow).
  const uint64_t end = c.pos();
  out.shard.data_offset = (end + out.shard.alignment - 1) / out.shard.alignment * out.shard.alignment;
  return out;
}

void Parser::place_tensors(ParsedShard& shard, std::span<const uint8_t> bytes, bool header_only) {
  const std::string& file = shard.shard.path;
  const uint64_t alignment = shard.shard.alignment;
  for (size_t i = 0; i < shard.tensors.size(); ++i) {
    TensorInfo& t = shard.tensors[i];
    const uint64_t at = shard.offset_at[i];
    if (t.offset % alignment != 0)
      fail_at(file, at, "tensor '{}': offset {} is not a multiple of the alignment {}", printable(t.name), t.offset,
              alignment);
    uint64_t begin = 0, end = 0;
    if (__builtin_add_overflow(shard.shard.data_offset, t.offset, &begin) ||
        __builtin_add_overflow(begin, t.n_bytes, &end))
      fail_at(file, at, "tensor '{}': offset {} + {} bytes overflows", printable(t.name), t.offset, t.n_bytes);
    if (!header_only && end > bytes.size())
      fail_at(file, at, "tensor '{}': data [{}, {}) extends past the end of the file ({} bytes)", printable(t.name),
              begin, end, bytes.size());
    t.file_offset = begin;
    t.data = header_only ? nullptr : bytes.data() + begin;
  }

  // Tensors must not share bytes. Empty tensors own no bytes and are skipped.
  std::vector<size_t> order(shard.tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return shard.tensors[a].offset < shard.tensors[b].offset; });
  const TensorInfo* reach = nullptr;  // the nonempty tensor seen so far that ends last
  for (size_t i : order) {
    const TensorInfo& t = shard.tensors[i];
    if (t.n_bytes == 0) continue;
    if (reach && t.offset < reach->offset + reach->n_bytes)
      fail_at(file, shard.offset_at[i], "tensor '{}' at data offset [{}, {}) overlaps tensor '{}' at [{}, {})",
              printable(t.name), t.offset, t.offset + t.n_bytes, printable(reach->name), reach->offset,
              reach->offset + reach->n_bytes);
    if (!reach || t.offset + t.n_bytes > reach->offset + reach->n_bytes) reach = &t;
  }
}

}  // namespace velocity::gguf
