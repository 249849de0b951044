// What the engine computes on: weights (read-only, any GGUF type, up to 3-D) and activations
// (F32 matrices). Both live in the memory of the backend that owns them; for the CPU backend that
// is host memory (weights are views into the mmap'd GGUF file, activations are allocated at load).
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace velocity::engine {

// A weight tensor. GGUF order: a matrix of n_out rows of n_in elements (ne[0] = n_in is the
// contiguous dimension), n_mat matrices stacked (experts) for 3-D tensors. Vectors (norms,
// biases) have n_out = 1.
struct Weight {
  std::string name;            // GGUF tensor name, for error messages
  DType type = DType::F32;
  int64_t n_in = 0;            // elements per row
  int64_t n_out = 0;           // rows per matrix
  int64_t n_mat = 1;           // matrices (experts)
  int64_t row_bytes = 0;       // dtype_row_bytes(type, n_in)
  const uint8_t* data = nullptr;  // backend memory; nullptr when the model has no such tensor

  bool present() const { return data != nullptr; }
  // Matrix `i` of a 3-D weight as a 2-D weight (same name).
  Weight matrix(int64_t i) const {
    Weight w = *this;
    w.n_mat = 1;
    w.data = data + i * n_out * row_bytes;
    return w;
  }
};

// F32 activations [n_rows, n_cols], row-major and dense, in backend memory. Allocated once with
// room for `capacity` rows; n_rows is set per step (the step's token count, or fewer).
struct Act {
  float* data = nullptr;
  int64_t n_rows = 0;
  int64_t n_cols = 0;
  int64_t capacity = 0;

  float* row(int64_t r) const { return data + r * n_cols; }
};

}  // namespace velocity::engine
