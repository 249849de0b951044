// CPU matrix products for every weight format: y = x W^T with W a GGUF-layout weight (rows of
// n_in elements in blocks) and x F32 activations. Quantised weights are multiplied block by block
// without dequantising whole rows; where the format calls for it the activations are first
// quantised to Q8 (Q8_0 / Q8_1 / Q8_K, as ggml pairs them), once per call, into scratch sized at
// construction. Kernels exist for AVX-512 (+VNNI), AVX2+FMA+F16C and scalar, picked at run time
// (core/cpu_features.h; VELOCITY_CPU_ISA=scalar|avx2|avx512 forces one, for tests and benches).
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "engine/tensor.h"

namespace velocity::engine::cpu {

// Weight types Matmul computes with.
bool matmul_supports(DType type);

class Matmul {
 public:
  // Scratch for up to max_tokens rows of up to max_n_in activations.
  Matmul(ThreadPool& pool, int64_t max_tokens, int64_t max_n_in);

  // y[t * ldy + r] = sum_i W[r, i] * x[t * ldx + i]  for t < n_tokens, r < w.n_out.
  // w.n_mat must be 1 (pass w.matrix(e) for an expert). Runs on the whole pool; do not call it
  // from inside a pool region.
  void run(const Weight& w, const float* x, int64_t ldx, int64_t n_tokens, float* y, int64_t ldy);

 private:
  ThreadPool& pool_;
  int64_t max_tokens_, max_n_in_;
  std::vector<uint8_t> scratch_;  // quantised activations
};

}  // namespace velocity::engine::cpu
