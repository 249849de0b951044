// Vector math for the x86 kernels (matmul_x86.h, attention_x86.h, elementwise_x86.h). Internal linkage inside
// the including file's VELOCITY_X86_NS namespace: each ISA build must get its own copy (an inline
// function shared by an AVX2 and an AVX-512 file could be linked to the AVX-512 code).
//
// exp: x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2; e^r by its degree-7 Taylor
// polynomial (truncation error < 3e-9, below float rounding), times 2^n. Inputs are clamped to
// [-87, 88] so 2^n stays a normal float: e^-87 ~ 1.6e-38 stands for 0 and e^88 ~ 1.7e38 for
// overflow (softmax feeds it x - max <= 0; silu divides by 1 + e^-x, where either end is right).
#pragma once

#include <immintrin.h>

#ifndef VELOCITY_X86_NS
#error "define VELOCITY_X86_NS before including vec_math_x86.h"
#endif

namespace velocity::engine::cpu::VELOCITY_X86_NS {
namespace {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;          // ln 2 split so n * kLn2Hi is exact for |n| < 2^9
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpLo = -87.0f, kExpHi = 88.0f;

// The sum (max) of the 8 lanes.
inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax256(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// e^r for |r| <= ln2/2, degree-7 Taylor in Horner form.
template <class V, class Fma, class Set>
inline V exp_poly(V r, Fma fma, Set set) {
  V p = set(1.0f / 5040);
  p = fma(p, r, set(1.0f / 720));
  p = fma(p, r, set(1.0f / 120));
  p = fma(p, r, set(1.0f / 24));
  p = fma(p, r, set(1.0f / 6));
  p = fma(p, r, set(0.5f));
  p = fma(p, r, set(1.0f));
  return fma(p, r, set(1.0f));
}

inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpLo)), _mm256_set1_ps(kExpHi));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  const __m256 p = exp_poly(r, [](__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); },
                            [](float f) { return _mm256_set1_ps(f); });
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#if defined(__AVX512F__)
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kExpLo)), _mm512_set1_ps(kExpHi));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  const __m512 p = exp_poly(r, [](__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); },
                            [](float f) { return _mm512_set1_ps(f); });
  return _mm512_scalef_ps(p, n);
}
#endif

}  // namespace
}  // namespace velocity::engine::cpu::VELOCITY_X86_NS
