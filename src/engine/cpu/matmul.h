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

// Load-time repacking (matmul_packed.h): the bytes of w's packed layout where this CPU has
// kernels that read one faster (Q8_0, Q4_0, MXFP4, Q4_K, Q6_K with AVX-512 VNNI), 0 where w is
// best left as it is.
int64_t packed_size(const Weight& w);
// Writes w's packed layout to dst (packed_size(w) bytes, 64-byte aligned) and returns the Weight
// that describes it: the same type and shape, row_bytes = packed_row_bytes (which tells the
// layouts apart). Matmul::run and Weight::matrix work on it as on a GGUF-layout weight.
Weight pack_weight(const Weight& w, uint8_t* dst);
// Row r (< n_out * n_mat) of w as n_in floats, whichever layout w is in (embedding lookups).
void dequantize_weight_row(const Weight& w, int64_t r, float* out);

class Matmul {
 public:
  // Scratch for up to max_tokens rows of up to max_n_in activations.
  Matmul(ThreadPool& pool, int64_t max_tokens, int64_t max_n_in);

  // y[t * ldy + r] = sum_i W[r, i] * x[t * ldx + i]  for t < n_tokens, r < w.n_out.
  // w.n_mat must be 1 (pass w.matrix(e) for an expert); w in GGUF or packed layout. Runs on the whole pool; do not call it
  // from inside a pool region.
  void run(const Weight& w, const float* x, int64_t ldx, int64_t n_tokens, float* y, int64_t ldy);

 private:
  ThreadPool& pool_;
  int64_t max_tokens_, max_n_in_;
  std::vector<uint8_t> scratch_;  // quantised activations
};

}  // namespace velocity::engine::cpu
