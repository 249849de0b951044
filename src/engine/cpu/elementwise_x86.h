// The x86 elementwise kernels (elementwise.h), compiled twice: elementwise_avx2.cpp (8 floats a
// vector) and elementwise_avx512.cpp (16, masked tail). The including file defines VELOCITY_X86_NS.
#pragma once

#include <immintrin.h>

#include <cmath>

#include "engine/cpu/elementwise.h"
#include "engine/cpu/vec_math_x86.h"

namespace velocity::engine::cpu::VELOCITY_X86_NS {
namespace {

#if defined(__AVX512F__)
void silu_mul(const float* g, const float* u, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 vg = _mm512_maskz_loadu_ps(m, g + i), vu = _mm512_maskz_loadu_ps(m, u + i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), vg));
    _mm512_mask_storeu_ps(out + i, m, _mm512_div_ps(_mm512_mul_ps(vg, vu), _mm512_add_ps(one, e)));
  }
}
#else
void silu_mul(const float* g, const float* u, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 vg = _mm256_loadu_ps(g + i), vu = _mm256_loadu_ps(u + i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), vg));
    _mm256_storeu_ps(out + i, _mm256_div_ps(_mm256_mul_ps(vg, vu), _mm256_add_ps(one, e)));
  }
  for (; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}
#endif

}  // namespace

inline ElementwiseKernels elementwise_kernels_here() { return {silu_mul}; }

}  // namespace velocity::engine::cpu::VELOCITY_X86_NS
