// A GGUF metadata value: a scalar of one of the 13 GGUF value types, a string, or an array
// (of scalars, strings or arrays). Numeric arrays keep their packed little-endian bytes, so a
// 150k-entry token_type array costs what it costs in the file, not 150k variant objects.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace velocity::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

std::string_view value_type_name(ValueType t);
bool value_type_valid(uint32_t id);
// Size in the file of one scalar of this type; 0 for STRING and ARRAY.
size_t value_type_size(ValueType t);

// The C++ type that holds one element of a numeric GGUF type (bool is stored as uint8_t 0/1).
template <ValueType T> struct ScalarOf;
template <> struct ScalarOf<ValueType::UINT8> { using type = uint8_t; };
template <> struct ScalarOf<ValueType::INT8> { using type = int8_t; };
template <> struct ScalarOf<ValueType::UINT16> { using type = uint16_t; };
template <> struct ScalarOf<ValueType::INT16> { using type = int16_t; };
template <> struct ScalarOf<ValueType::UINT32> { using type = uint32_t; };
template <> struct ScalarOf<ValueType::INT32> { using type = int32_t; };
template <> struct ScalarOf<ValueType::FLOAT32> { using type = float; };
template <> struct ScalarOf<ValueType::BOOL> { using type = uint8_t; };
template <> struct ScalarOf<ValueType::UINT64> { using type = uint64_t; };
template <> struct ScalarOf<ValueType::INT64> { using type = int64_t; };
template <> struct ScalarOf<ValueType::FLOAT64> { using type = double; };

template <class T> constexpr ValueType value_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>) return ValueType::UINT8;
  else if constexpr (std::is_same_v<T, int8_t>) return ValueType::INT8;
  else if constexpr (std::is_same_v<T, uint16_t>) return ValueType::UINT16;
  else if constexpr (std::is_same_v<T, int16_t>) return ValueType::INT16;
  else if constexpr (std::is_same_v<T, uint32_t>) return ValueType::UINT32;
  else if constexpr (std::is_same_v<T, int32_t>) return ValueType::INT32;
  else if constexpr (std::is_same_v<T, float>) return ValueType::FLOAT32;
  else if constexpr (std::is_same_v<T, bool>) return ValueType::BOOL;
  else if constexpr (std::is_same_v<T, uint64_t>) return ValueType::UINT64;
  else if constexpr (std::is_same_v<T, int64_t>) return ValueType::INT64;
  else if constexpr (std::is_same_v<T, double>) return ValueType::FLOAT64;
  else static_assert(sizeof(T) == 0, "not a GGUF scalar type");
}

class Value {
 public:
  Value() = default;

  // --- construction (used by the reader and the writer) ---
  template <class T> static Value scalar(T v) {
    Value out;
    out.type_ = value_type_of<T>();
    if constexpr (std::is_same_v<T, bool>) {
      const uint8_t b = v ? 1 : 0;
      std::memcpy(out.scalar_, &b, 1);
    } else {
      std::memcpy(out.scalar_, &v, sizeof(T));
    }
    return out;
  }
  static Value string(std::string s);
  // Numeric or bool array from packed little-endian element bytes (size = n * element size).
  static Value numeric_array(ValueType elem, std::vector<uint8_t> packed);
  template <class T> static Value array(const std::vector<T>& items) {
    if constexpr (std::is_same_v<T, bool>) {
      std::vector<uint8_t> packed(items.size());
      for (size_t i = 0; i < items.size(); ++i) packed[i] = items[i] ? 1 : 0;
      return numeric_array(ValueType::BOOL, std::move(packed));
    } else if constexpr (std::is_same_v<T, std::string>) {
      return string_array(items);
    } else {
      std::vector<uint8_t> packed(items.size() * sizeof(T));
      if (!items.empty()) std::memcpy(packed.data(), items.data(), packed.size());
      return numeric_array(value_type_of<T>(), std::move(packed));
    }
  }
  static Value string_array(std::vector<std::string> items);
  // Array of arrays; every item must be an ARRAY value.
  static Value array_of_arrays(std::vector<Value> items);

  // --- inspection ---
  ValueType type() const { return type_; }
  bool is_array() const { return type_ == ValueType::ARRAY; }
  ValueType elem_type() const;  // ARRAY only
  size_t array_size() const;    // ARRAY only

  // Exact-type scalar access; throws velocity::Error when the type differs.
  template <class T> T get() const {
    expect(value_type_of<T>());
    if constexpr (std::is_same_v<T, bool>) {
      return scalar_[0] != 0;
    } else {
      T v;
      std::memcpy(&v, scalar_, sizeof(T));
      return v;
    }
  }
  const std::string& as_string() const;
  // Lenient numeric access: any integer type (value must be representable), or any float type.
  bool is_integer() const;
  bool is_float() const;
  uint64_t as_uint() const;
  int64_t as_int() const;
  double as_double() const;  // integers or floats
  bool as_bool() const;      // BOOL only

  // Arrays. Exact element type; throws velocity::Error when it differs.
  template <class T> std::vector<T> array_as() const {
    expect(ValueType::ARRAY);
    if (elem_ != value_type_of<T>()) type_mismatch(value_type_of<T>());
    if constexpr (std::is_same_v<T, bool>) {
      std::vector<bool> out(packed_.size());
      for (size_t i = 0; i < packed_.size(); ++i) out[i] = packed_[i] != 0;
      return out;
    } else {
      std::vector<T> out(packed_.size() / sizeof(T));
      if (!out.empty()) std::memcpy(out.data(), packed_.data(), packed_.size());
      return out;
    }
  }
  // Any integer element type, widened (values must fit int64).
  std::vector<int64_t> int_array() const;
  // Any float element type, as double.
  std::vector<double> float_array() const;
  const std::vector<std::string>& strings() const;  // ARRAY of STRING
  const std::vector<Value>& arrays() const;         // ARRAY of ARRAY
  const std::vector<uint8_t>& packed() const;        // ARRAY of numeric/bool: raw LE bytes

  // Short human form: scalars in full, strings quoted (truncated past max_chars), arrays as
  // "[N x TYPE]" plus the first few items.
  std::string summary(size_t max_chars = 80) const;

  bool operator==(const Value& other) const;

 private:
  void expect(ValueType t) const;
  [[noreturn]] void type_mismatch(ValueType wanted) const;

  ValueType type_ = ValueType::UINT8;
  ValueType elem_ = ValueType::UINT8;  // ARRAY element type
  uint8_t scalar_[8] = {};
  std::string str_;
  std::vector<uint8_t> packed_;         // numeric / bool arrays
  std::vector<std::string> strings_;    // string arrays
  std::vector<Value> arrays_;           // arrays of arrays
};

}  // namespace velocity::gguf
