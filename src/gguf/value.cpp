#include "gguf/value.h"

#include <fmt/format.h>

#include <limits>

namespace velocity::gguf {

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8: return "UINT8";
    case ValueType::INT8: return "INT8";
    case ValueType::UINT16: return "UINT16";
    case ValueType::INT16: return "INT16";
    case ValueType::UINT32: return "UINT32";
    case ValueType::INT32: return "INT32";
    case ValueType::FLOAT32: return "FLOAT32";
    case ValueType::BOOL: return "BOOL";
    case ValueType::STRING: return "STRING";
    case ValueType::ARRAY: return "ARRAY";
    case ValueType::UINT64: return "UINT64";
    case ValueType::INT64: return "INT64";
    case ValueType::FLOAT64: return "FLOAT64";
  }
  return "?";
}

bool value_type_valid(uint32_t id) { return id <= (uint32_t)ValueType::FLOAT64; }

size_t value_type_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::BOOL: return 1;
    case ValueType::UINT16:
    case ValueType::INT16: return 2;
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::FLOAT32: return 4;
    case ValueType::UINT64:
    case ValueType::INT64:
    case ValueType::FLOAT64: return 8;
    case ValueType::STRING:
    case ValueType::ARRAY: return 0;
  }
  return 0;
}

Value Value::string(std::string s) {
  Value out;
  out.type_ = ValueType::STRING;
  out.str_ = std::move(s);
  return out;
}

Value Value::numeric_array(ValueType elem, std::vector<uint8_t> packed) {
  const size_t size = value_type_size(elem);
  if (size == 0) fail("numeric_array: element type {} is not numeric", value_type_name(elem));
  if (packed.size() % size != 0) fail("numeric_array: {} bytes is not a multiple of {}", packed.size(), size);
  Value out;
  out.type_ = ValueType::ARRAY;
  out.elem_ = elem;
  out.packed_ = std::move(packed);
  return out;
}

Value Value::string_array(std::vector<std::string> items) {
  Value out;
  out.type_ = ValueType::ARRAY;
  out.elem_ = ValueType::STRING;
  out.strings_ = std::move(items);
  return out;
}

Value Value::array_of_arrays(std::vector<Value> items) {
  for (const auto& item : items)
    if (item.type_ != ValueType::ARRAY) fail("array_of_arrays: an item is {}, not ARRAY", value_type_name(item.type_));
  Value out;
  out.type_ = ValueType::ARRAY;
  out.elem_ = ValueType::ARRAY;
  out.arrays_ = std::move(items);
  return out;
}

ValueType Value::elem_type() const {
  expect(ValueType::ARRAY);
  return elem_;
}

size_t Value::array_size() const {
  expect(ValueType::ARRAY);
  if (elem_ == ValueType::STRING) return strings_.size();
  if (elem_ == ValueType::ARRAY) return arrays_.size();
  return packed_.size() / value_type_size(elem_);
}

const std::string& Value::as_string() const {
  expect(ValueType::STRING);
  return str_;
}

bool Value::is_integer() const {
  switch (type_) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::UINT16:
    case ValueType::INT16:
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::UINT64:
    case ValueType::INT64: return true;
    default: return false;
  }
}

bool Value::is_float() const { return type_ == ValueType::FLOAT32 || type_ == ValueType::FLOAT64; }

namespace {

// Reads element i of a packed numeric buffer of type t as int64 (UINT64 values above INT64_MAX
// are reported through `overflow`).
template <class T> T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

bool load_int(ValueType t, const uint8_t* p, int64_t* out, uint64_t* out_u) {
  switch (t) {
    case ValueType::UINT8: *out = load<uint8_t>(p); break;
    case ValueType::INT8: *out = load<int8_t>(p); break;
    case ValueType::UINT16: *out = load<uint16_t>(p); break;
    case ValueType::INT16: *out = load<int16_t>(p); break;
    case ValueType::UINT32: *out = load<uint32_t>(p); break;
    case ValueType::INT32: *out = load<int32_t>(p); break;
    case ValueType::INT64: *out = load<int64_t>(p); break;
    case ValueType::UINT64: {
      const uint64_t u = load<uint64_t>(p);
      if (out_u) *out_u = u;
      if (u > (uint64_t)std::numeric_limits<int64_t>::max()) return false;
      *out = (int64_t)u;
      return true;
    }
    default: return false;
  }
  if (out_u) *out_u = (uint64_t)*out;
  return true;
}

bool load_float(ValueType t, const uint8_t* p, double* out) {
  if (t == ValueType::FLOAT32) {
    *out = load<float>(p);
    return true;
  }
  if (t == ValueType::FLOAT64) {
    *out = load<double>(p);
    return true;
  }
  return false;
}

}  // namespace

uint64_t Value::as_uint() const {
  if (!is_integer()) type_mismatch(ValueType::UINT64);
  int64_t v = 0;
  uint64_t u = 0;
  const bool fits = load_int(type_, scalar_, &v, &u);
  if (type_ == ValueType::UINT64) return u;
  if (!fits || v < 0) fail("value {} is negative where a non-negative integer is required", v);
  return (uint64_t)v;
}

int64_t Value::as_int() const {
  if (!is_integer()) type_mismatch(ValueType::INT64);
  int64_t v = 0;
  if (!load_int(type_, scalar_, &v, nullptr)) fail("integer value does not fit in int64");
  return v;
}

double Value::as_double() const {
  double d = 0;
  if (load_float(type_, scalar_, &d)) return d;
  if (type_ == ValueType::UINT64) return (double)as_uint();
  if (is_integer()) return (double)as_int();
  type_mismatch(ValueType::FLOAT64);
}

bool Value::as_bool() const { return get<bool>(); }

std::vector<int64_t> Value::int_array() const {
  expect(ValueType::ARRAY);
  const size_t size = value_type_size(elem_);
  std::vector<int64_t> out;
  if (size == 0 || elem_ == ValueType::FLOAT32 || elem_ == ValueType::FLOAT64 || elem_ == ValueType::BOOL)
    fail("expected an array of integers, found an array of {}", value_type_name(elem_));
  out.resize(packed_.size() / size);
  for (size_t i = 0; i < out.size(); ++i)
    if (!load_int(elem_, packed_.data() + i * size, &out[i], nullptr))
      fail("array item {} does not fit in int64", i);
  return out;
}

std::vector<double> Value::float_array() const {
  expect(ValueType::ARRAY);
  if (elem_ != ValueType::FLOAT32 && elem_ != ValueType::FLOAT64)
    fail("expected an array of floats, found an array of {}", value_type_name(elem_));
  const size_t size = value_type_size(elem_);
  std::vector<double> out(packed_.size() / size);
  for (size_t i = 0; i < out.size(); ++i) load_float(elem_, packed_.data() + i * size, &out[i]);
  return out;
}

const std::vector<std::string>& Value::strings() const {
  expect(ValueType::ARRAY);
  if (elem_ != ValueType::STRING) type_mismatch(ValueType::STRING);
  return strings_;
}

const std::vector<Value>& Value::arrays() const {
  expect(ValueType::ARRAY);
  if (elem_ != ValueType::ARRAY) type_mismatch(ValueType::ARRAY);
  return arrays_;
}

const std::vector<uint8_t>& Value::packed() const {
  expect(ValueType::ARRAY);
  if (value_type_size(elem_) == 0) fail("array of {} has no packed bytes", value_type_name(elem_));
  return packed_;
}

namespace {

std::string quote(std::string_view s, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (n++ >= max_chars) {
      out += "…";
      break;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if ((unsigned char)c < 0x20) out += fmt::format("\\x{:02x}", (unsigned char)c);
        else out += c;
    }
  }
  return out + "\"";
}

std::string scalar_text(ValueType t, const uint8_t* p) {
  double d = 0;
  if (load_float(t, p, &d)) return fmt::format("{}", d);
  if (t == ValueType::BOOL) return p[0] ? "true" : "false";
  int64_t v = 0;
  uint64_t u = 0;
  load_int(t, p, &v, &u);
  return t == ValueType::UINT64 ? fmt::format("{}", u) : fmt::format("{}", v);
}

}  // namespace

std::string Value::summary(size_t max_chars) const {
  if (type_ == ValueType::STRING) return quote(str_, max_chars);
  if (type_ != ValueType::ARRAY) return scalar_text(type_, scalar_);
  const size_t n = array_size();
  std::string out = fmt::format("[{} x {}]", n, value_type_name(elem_));
  const size_t shown = std::min<size_t>(n, 4);
  if (shown == 0) return out;
  out += " ";
  for (size_t i = 0; i < shown; ++i) {
    if (i) out += ", ";
    if (elem_ == ValueType::STRING) out += quote(strings_[i], 24);
    else if (elem_ == ValueType::ARRAY) out += arrays_[i].summary(24);
    else out += scalar_text(elem_, packed_.data() + i * value_type_size(elem_));
  }
  if (n > shown) out += ", …";
  return out;
}

bool Value::operator==(const Value& other) const {
  if (type_ != other.type_) return false;
  switch (type_) {
    case ValueType::STRING: return str_ == other.str_;
    case ValueType::ARRAY:
      return elem_ == other.elem_ && packed_ == other.packed_ && strings_ == other.strings_ && arrays_ == other.arrays_;
    default: return std::memcmp(scalar_, other.scalar_, value_type_size(type_)) == 0;
  }
}

void Value::expect(ValueType t) const {
  if (type_ != t) type_mismatch(t);
}

void Value::type_mismatch(ValueType wanted) const {
  if (type_ == ValueType::ARRAY)
    fail("expected {}, found ARRAY of {}", value_type_name(wanted), value_type_name(elem_));
  fail("expected {}, found {}", value_type_name(wanted), value_type_name(type_));
}

}  // namespace velocity::gguf
