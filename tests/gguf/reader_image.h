// A tiny GGUF byte-image builder for the reader tests. Deliberately independent of
// src/gguf/writer: it writes exactly what it is told, including every kind of damage.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "gguf/value.h"

namespace velocity::gguf::test {

using Buf = std::vector<uint8_t>;

template <class T>
void put(Buf& b, T v) {
  uint8_t raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  b.insert(b.end(), raw, raw + sizeof(T));
}
inline void put_bytes(Buf& b, const Buf& more) { b.insert(b.end(), more.begin(), more.end()); }
inline void put_string(Buf& b, std::string_view s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

// Value bodies (what follows the value type id), composable for arrays of arrays.
template <class T>
Buf body(T v) {
  Buf b;
  put<T>(b, v);
  return b;
}
inline Buf str_body(std::string_view s) {
  Buf b;
  put_string(b, s);
  return b;
}
// An array body: element type, count, then the items' bodies as given.
inline Buf array_body(ValueType elem, uint64_t n, const Buf& items = {}) {
  Buf b;
  put<uint32_t>(b, (uint32_t)elem);
  put<uint64_t>(b, n);
  put_bytes(b, items);
  return b;
}
template <class T>
Buf numeric_array_body(const std::vector<T>& v) {
  Buf items;
  for (const T& x : v) put<T>(items, x);
  return array_body(value_type_of<T>(), v.size(), items);
}
inline Buf string_array_body(const std::vector<std::string>& v) {
  Buf items;
  for (const auto& s : v) put_string(items, s);
  return array_body(ValueType::STRING, v.size(), items);
}

struct TensorSpec {
  std::string name;
  uint32_t type = 0;               // raw ggml type id
  std::vector<int64_t> shape;      // written as u64 each
  std::optional<uint64_t> offset;  // default: next aligned offset after the previous tensor
  std::optional<uint32_t> n_dims;  // default: shape.size()
};

class Image {
 public:
  explicit Image(uint32_t version = 3) : version_(version) {}

  std::optional<uint64_t> n_tensors_override, n_kv_override;
  std::optional<uint64_t> data_size;  // default: up to the end of the last tensor
  uint64_t layout_alignment = 32;     // padding used by build(); see align()

  Image& kv_raw(std::string key, uint32_t type, Buf value_body) {
    Buf b;
    put_string(b, key);
    put<uint32_t>(b, type);
    put_bytes(b, value_body);
    kvs_.push_back(std::move(b));
    return *this;
  }
  Image& kv(std::string key, ValueType type, Buf value_body) {
    return kv_raw(std::move(key), (uint32_t)type, std::move(value_body));
  }
  template <class T>
  Image& kv_scalar(std::string key, T v) {
    return kv(std::move(key), value_type_of<T>(), body<T>(v));
  }
  Image& kv_string(std::string key, std::string_view s) { return kv(std::move(key), ValueType::STRING, str_body(s)); }
  // Writes general.alignment and lays out the data section with it.
  Image& align(uint32_t alignment) {
    layout_alignment = alignment;
    return kv_scalar<uint32_t>("general.alignment", alignment);
  }
  Image& tensor(std::string name, DType type, std::vector<int64_t> shape, std::optional<uint64_t> offset = {}) {
    tensors_.push_back({std::move(name), (uint32_t)type, std::move(shape), offset, {}});
    return *this;
  }
  Image& tensor(TensorSpec spec) {
    tensors_.push_back(std::move(spec));
    return *this;
  }

  // Bytes of a tensor as the builder sizes it (0 for unknown types or odd shapes).
  static uint64_t tensor_bytes(const TensorSpec& t) {
    const auto info = dtype_info(t.type);
    if (!info) return 0;
    int64_t n = 1, bytes = 0;
    for (int64_t d : t.shape)
      if (__builtin_mul_overflow(n, d, &n)) return 0;
    if (n < 0 || n % info->block_size) return 0;
    if (__builtin_mul_overflow(n / info->block_size, info->block_bytes, &bytes)) return 0;
    return (uint64_t)bytes;
  }
  // Offsets the builder gives the tensors (explicit ones as given).
  std::vector<uint64_t> offsets() const {
    std::vector<uint64_t> out;
    uint64_t next = 0;
    for (const auto& t : tensors_) {
      const uint64_t off = t.offset ? *t.offset : (next + layout_alignment - 1) / layout_alignment * layout_alignment;
      out.push_back(off);
      next = off + tensor_bytes(t);
    }
    return out;
  }
  // The byte every tensor's data byte j holds: distinct per tensor.
  static uint8_t pattern(size_t tensor_index, uint64_t j) { return (uint8_t)(tensor_index * 37 + j * 11 + 5); }

  // Header, metadata, tensor infos, padding to the alignment, data. No padding after the last
  // tensor, so every strict prefix of an image with a nonempty last tensor is incomplete.
  Buf build(uint64_t* data_offset_out = nullptr, uint64_t* header_end_out = nullptr) const {
    Buf b;
    put<uint32_t>(b, 0x46554747);
    put<uint32_t>(b, version_);
    put<uint64_t>(b, n_tensors_override.value_or(tensors_.size()));
    put<uint64_t>(b, n_kv_override.value_or(kvs_.size()));
    for (const auto& kv : kvs_) put_bytes(b, kv);
    const auto offs = offsets();
    uint64_t data_end = 0;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const auto& t = tensors_[i];
      put_string(b, t.name);
      put<uint32_t>(b, t.n_dims.value_or((uint32_t)t.shape.size()));
      for (int64_t d : t.shape) put<uint64_t>(b, (uint64_t)d);
      put<uint32_t>(b, t.type);
      put<uint64_t>(b, offs[i]);
      data_end = std::max(data_end, offs[i] + tensor_bytes(t));
    }
    if (header_end_out) *header_end_out = b.size();
    while (b.size() % layout_alignment) b.push_back(0);
    const uint64_t data_offset = b.size();
    if (data_offset_out) *data_offset_out = data_offset;
    const uint64_t size = data_size.value_or(data_end);
    if (size > (1u << 24)) throw std::runtime_error("test image too large; set data_size");
    b.resize(data_offset + size, 0xee);
    for (size_t i = 0; i < tensors_.size(); ++i)
      for (uint64_t j = 0; j < tensor_bytes(tensors_[i]) && offs[i] + j < size; ++j)
        b[data_offset + offs[i] + j] = pattern(i, j);
    return b;
  }

 private:
  uint32_t version_;
  std::vector<Buf> kvs_;
  std::vector<TensorSpec> tensors_;
};

inline void write_file(const std::filesystem::path& path, const Buf& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size());
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// A fresh directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "velocity-reader-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace velocity::gguf::test
