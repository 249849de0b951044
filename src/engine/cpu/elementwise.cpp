// Scalar elementwise kernels and the per-ISA choice.
#include "engine/cpu/elementwise.h"

#include <cmath>

#include "core/cpu_features.h"

namespace velocity::engine::cpu {
namespace {

void silu_mul_scalar(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace

ElementwiseKernels scalar_elementwise_kernels() { return {silu_mul_scalar}; }

ElementwiseKernels elementwise_kernels() {
#if defined(__x86_64__)
  const CpuIsa isa = best_cpu_isa();
  if (isa >= CpuIsa::Avx512) return avx512_elementwise_kernels();
  if (isa >= CpuIsa::Avx2) return avx2_elementwise_kernels();
#endif
  return scalar_elementwise_kernels();
}

}  // namespace velocity::engine::cpu
