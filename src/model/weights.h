// Looks up a model's tensors by name, checks each shape against what the architecture expects
// (Error: "<file>: tensor <name>: expected shape [..], found [..]") and places it on the backend.
// Counts the bytes a decode token reads, for bandwidth bounds.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "gguf/file.h"

namespace velocity::model {

class Weights {
 public:
  Weights(const gguf::File& file, engine::Backend& backend) : file_(file), backend_(backend) {}

  // A tensor that must exist, with this shape (GGUF order).
  engine::Weight get(const std::string& name, std::initializer_list<int64_t> shape);
  // A tensor that may be absent (returns an absent Weight); when present its shape must match.
  engine::Weight optional(const std::string& name, std::initializer_list<int64_t> shape);
  // A small tensor the host reads (rope frequency factors), as F32 [n]; empty when absent.
  std::vector<float> host_f32(const std::string& name, int64_t n);
  // Per-layer name: "blk.<il>.<suffix>".
  static std::string layer(int64_t il, const char* suffix);

  // Every tensor in the file must have been taken (an unused tensor means the file is not what
  // the architecture expects). Error listing the first few unused names.
  void check_all_used() const;

  // Decode-token bytes: every dense weight counts in full; for expert tensors the caller passes
  // the fraction of experts used.
  // (GGUF row bytes: a backend's packed layout may carry a few more bytes per row.)
  void count_bytes(const engine::Weight& w, double fraction = 1.0) {
    bytes_per_token_ += static_cast<double>(w.n_mat * w.n_out * dtype_row_bytes(w.type, w.n_in)) * fraction;
  }
  uint64_t bytes_per_token() const { return static_cast<uint64_t>(bytes_per_token_); }

 private:
  engine::Weight take(const gguf::TensorInfo& t, std::initializer_list<int64_t> shape);
  const gguf::File& file_;
  engine::Backend& backend_;
  std::set<std::string> used_;
  double bytes_per_token_ = 0;
};

}  // namespace velocity::model
