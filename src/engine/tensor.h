// What the engine computes on: weights (read-only, any GGUF type, up to 3-D) and activations
// (F32 matrices). Both live in the memory of the device of the backend that owns them (host
// memory for the CPU backend, where weights are views into the mmap'd GGUF file; GPU memory for
// the CUDA backend). Only their backend dereferences `data`; moving data between host and device
// goes through Backend::write / read.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/dtype.h"
#include "engine/device.h"

namespace velocity::engine {

// How a weight's bytes are laid out in its backend's memory.
enum class WeightLayout : uint8_t {
  Gguf,       // the file's blocks: rows of row_bytes, one after the other
  CpuPacked,  // the CPU kernels' interleaved tiles (engine/cpu/matmul_packed.h)
  Cuda,       // the CUDA kernels' layout (engine/cuda/weights.h)
};

// A weight tensor. GGUF order: a matrix of n_out rows of n_in elements (ne[0] = n_in is the
// contiguous dimension), n_mat matrices stacked (experts) for 3-D tensors. Vectors (norms,
// biases) have n_out = 1. Copying one allocates nothing (a decode step copies per expert).
struct Weight {
  std::string_view name;       // GGUF tensor name, for messages; the model's file owns the text
  DType type = DType::F32;
  int64_t n_in = 0;            // elements per row
  int64_t n_out = 0;           // rows per matrix
  int64_t n_mat = 1;           // matrices (experts)
  int64_t row_bytes = 0;       // dtype_row_bytes(type, n_in): a row in GGUF layout (byte counts)
  int64_t stride = 0;          // bytes from one row to the next in `layout` (matrix i starts at
                               // data + i * n_out * stride)
  WeightLayout layout = WeightLayout::Gguf;
  Device device;
  const uint8_t* data = nullptr;  // device memory; nullptr when the model has no such tensor

  bool present() const { return data != nullptr; }
  // Matrix `i` of a 3-D weight as a 2-D weight (same name).
  Weight matrix(int64_t i) const {
    Weight w = *this;
    w.n_mat = 1;
    w.data = data + i * n_out * stride;
    return w;
  }
};

// F32 activations [n_rows, n_cols], row-major and dense, in device memory. Allocated once with
// room for `capacity` rows; n_rows is set per step (the step's token count, or fewer).
struct Act {
  float* data = nullptr;
  int64_t n_rows = 0;
  int64_t n_cols = 0;
  int64_t capacity = 0;
  Device device;

  // Address of row r (device memory: only the owning backend reads through it).
  float* row(int64_t r) const { return data + r * n_cols; }
};

}  // namespace velocity::engine
