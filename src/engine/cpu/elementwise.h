// Elementwise float kernels of the CPU backend, one build per ISA (scalar, AVX2, AVX-512), picked
// by best_cpu_isa() like the matmul and attention kernels.
#pragma once

#include <cstdint>

namespace velocity::engine::cpu {

// out[i] = g[i] / (1 + e^-g[i]) * u[i]  (SwiGLU's silu(gate) * up); out may alias g or u.
using SiluMulFn = void (*)(const float* g, const float* u, float* out, int64_t n);

struct ElementwiseKernels {
  SiluMulFn silu_mul = nullptr;
};

// The kernels for the ISA in use now.
ElementwiseKernels elementwise_kernels();

ElementwiseKernels scalar_elementwise_kernels();
#if defined(__x86_64__)
ElementwiseKernels avx2_elementwise_kernels();
ElementwiseKernels avx512_elementwise_kernels();
#endif

}  // namespace velocity::engine::cpu
