// The x86 attention primitives (attention_impl.h), compiled twice: attention_avx2.cpp (8 floats a
// vector, scalar tails) and attention_avx512.cpp (16 floats, masked tails). The including file
// defines VELOCITY_X86_NS. exp and the horizontal sums come from vec_math_x86.h.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"
#include "core/quant.h"
#include "engine/cpu/attention_impl.h"
#include "engine/cpu/vec_math_x86.h"

#ifndef VELOCITY_X86_NS
#error "define VELOCITY_X86_NS before including attention_x86.h"
#endif

namespace velocity::engine::cpu::VELOCITY_X86_NS {
namespace {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// One 32-element block of Q8_0 (2-byte scale, 32 int8) or Q4_0 (2-byte scale, 16 nibble bytes),
// written as floats (Q4_1 and Q5_1 below).
inline void q8_0_block_avx2(const uint8_t* b, float* y) {
  const __m256 d = _mm256_set1_ps(fp16_to_fp32(load_u16(b)));
  for (int i = 0; i < 32; i += 8) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + i));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
  }
}
inline void q4_0_block_avx2(const uint8_t* b, float* y) {
  const __m256 d = _mm256_set1_ps(fp16_to_fp32(load_u16(b)));
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
  const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);                      // elements 0..15
  const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);  // elements 16..31
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int i = 0; i < 4; ++i)
    _mm256_storeu_ps(y + 8 * i, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[i]))));
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
// Q4_1 (2-byte scale d, 2-byte min m, 16 nibble bytes) and Q5_1 (d, m, 32 fifth bits, 16 nibble
// bytes): y = q * d + m. q * d is exact in float, so the fused multiply-add rounds once, as the
// reference's multiply-then-add does: the same floats as dequantize_row.
inline void q4_1_block_avx2(const uint8_t* b, float* y) {
  const __m256 d = _mm256_set1_ps(fp16_to_fp32(load_u16(b))), m = _mm256_set1_ps(fp16_to_fp32(load_u16(b + 2)));
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(raw, m4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int i = 0; i < 4; ++i)
    _mm256_storeu_ps(y + 8 * i, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[i])), d, m));
}
inline void q5_1_block_avx2(const uint8_t* b, float* y) {
  const __m256 d = _mm256_set1_ps(fp16_to_fp32(load_u16(b))), m = _mm256_set1_ps(fp16_to_fp32(load_u16(b + 2)));
  const uint32_t qh = load_u32(b + 4);  // bit j: bit 4 of element j
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 8));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(raw, m4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), one = _mm256_set1_epi32(1);
  for (int i = 0; i < 4; ++i) {
    const __m256i bits = _mm256_set1_epi32(static_cast<int>(qh >> (8 * i)));
    const __m256i bit4 = _mm256_and_si256(_mm256_srlv_epi32(bits, lanes), one);
    const __m256i q = _mm256_or_si256(_mm256_cvtepu8_epi32(parts[i]), _mm256_slli_epi32(bit4, 4));
    _mm256_storeu_ps(y + 8 * i, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), d, m));
  }
}

const float* load_row_avx2(DType t, const uint8_t* src, float* tmp, int64_t n) {
  switch (t) {
    case DType::F32:
      return reinterpret_cast<const float*>(src);
    case DType::F16: {
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(tmp + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
      for (; i < n; ++i) tmp[i] = fp16_to_fp32(load_u16(src + 2 * i));
      return tmp;
    }
    case DType::Q8_0:
      for (int64_t b = 0; b < n / 32; ++b) q8_0_block_avx2(src + 34 * b, tmp + 32 * b);
      return tmp;
    case DType::Q4_0:
      for (int64_t b = 0; b < n / 32; ++b) q4_0_block_avx2(src + 18 * b, tmp + 32 * b);
      return tmp;
    case DType::Q4_1:
      for (int64_t b = 0; b < n / 32; ++b) q4_1_block_avx2(src + 20 * b, tmp + 32 * b);
      return tmp;
    case DType::Q5_1:
      for (int64_t b = 0; b < n / 32; ++b) q5_1_block_avx2(src + 24 * b, tmp + 32 * b);
      return tmp;
    default:
      dequantize_row(t, src, tmp, n);
      return tmp;
  }
}

void store_row(DType t, const float* x, uint8_t* dst, int64_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, x, n * sizeof(float));
      return;
    case DType::F16: {
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      if (i < n) quantize_row(DType::F16, x + i, dst + 2 * i, n - i);
      return;
    }
    default:
      quantize_row(t, x, dst, n);
  }
}

struct Avx2Ops {
  static const float* load(DType t, const uint8_t* src, float* tmp, int64_t n) { return load_row_avx2(t, src, tmp, n); }
  static float dot(const float* a, const float* b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
  }
  static float max(const float* x, int64_t n) {
    __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float r = hmax256(m);
    for (; i < n; ++i) r = std::max(r, x[i]);
    return r;
  }
  static float exp_sum(float* x, int64_t n, float sub) {
    const __m256 vs = _mm256_set1_ps(sub);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
      _mm256_storeu_ps(x + i, e);
      acc = _mm256_add_ps(acc, e);
    }
    float tail = 0;
    if (i < n) {  // the tail through the same vector exp
      alignas(32) float buf[8] = {};
      std::copy(x + i, x + n, buf);
      _mm256_store_ps(buf, exp256(_mm256_sub_ps(_mm256_load_ps(buf), vs)));
      for (int64_t k = 0; k < n - i; ++k) tail += x[i + k] = buf[k];
    }
    return hsum256(acc) + tail;
  }
  static void axpy(float a, const float* x, float* y, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += a * x[i];
  }
  static void scale(float* y, float s, int64_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(vs, _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] *= s;
  }
};

#if defined(__AVX512F__)
inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1); }

const float* load_row_avx512(DType t, const uint8_t* src, float* tmp, int64_t n) {
  switch (t) {
    case DType::F16:
      for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(tmp + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + 2 * i)));
      }
      return tmp;
    case DType::Q8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = src + 34 * b;
        const __m512 d = _mm512_set1_ps(fp16_to_fp32(load_u16(blk)));
        for (int h = 0; h < 2; ++h) {
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + 16 * h));
          _mm512_storeu_ps(tmp + 32 * b + 16 * h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
        }
      }
      return tmp;
    case DType::Q4_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = src + 18 * b;
        const __m512 d = _mm512_set1_ps(fp16_to_fp32(load_u16(blk)));
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
        const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);
        _mm512_storeu_ps(tmp + 32 * b, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo))));
        _mm512_storeu_ps(tmp + 32 * b + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi))));
      }
      return tmp;
    case DType::Q4_1:
    case DType::Q5_1: {  // y = q * d + m (one rounding, as q4_1_block_avx2)
      const bool five = t == DType::Q5_1;
      const int64_t block_bytes = five ? 24 : 20;
      const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
      const __m512i one = _mm512_set1_epi32(1);
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = src + block_bytes * b;
        const __m512 d = _mm512_set1_ps(fp16_to_fp32(load_u16(blk)));
        const __m512 m = _mm512_set1_ps(fp16_to_fp32(load_u16(blk + 2)));
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + (five ? 8 : 4)));
        const __m128i m4 = _mm_set1_epi8(0x0F);
        __m512i lo = _mm512_cvtepu8_epi32(_mm_and_si128(raw, m4));                      // elements 0..15
        __m512i hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));  // elements 16..31
        if (five) {
          const uint32_t qh = load_u32(blk + 4);
          const __m512i qh_lo = _mm512_set1_epi32(static_cast<int>(qh));
          const __m512i qh_hi = _mm512_set1_epi32(static_cast<int>(qh >> 16));
          const __m512i b_lo = _mm512_and_si512(_mm512_srlv_epi32(qh_lo, lanes), one);
          const __m512i b_hi = _mm512_and_si512(_mm512_srlv_epi32(qh_hi, lanes), one);
          lo = _mm512_or_si512(lo, _mm512_slli_epi32(b_lo, 4));
          hi = _mm512_or_si512(hi, _mm512_slli_epi32(b_hi, 4));
        }
        _mm512_storeu_ps(tmp + 32 * b, _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), d, m));
        _mm512_storeu_ps(tmp + 32 * b + 16, _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), d, m));
      }
      return tmp;
    }
    default:
      return load_row_avx2(t, src, tmp, n);
  }
}

struct Avx512Ops {
  static const float* load(DType t, const uint8_t* src, float* tmp, int64_t n) { return load_row_avx512(t, src, tmp, n); }
  static float dot(const float* a, const float* b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
      s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
      const __mmask16 m = tail_mask(n - i);
      s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
  }
  static float max(const float* x, int64_t n) {
    const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    __m512 m = ninf;
    for (int64_t i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(ninf, tail_mask(n - i), x + i));
    return _mm512_reduce_max_ps(m);
  }
  static float exp_sum(float* x, int64_t n, float sub) {
    const __m512 vs = _mm512_set1_ps(sub);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = tail_mask(n - i);
      const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
      _mm512_mask_storeu_ps(x + i, m, e);
      acc = _mm512_mask_add_ps(acc, m, acc, e);
    }
    return _mm512_reduce_add_ps(acc);
  }
  static void axpy(float a, const float* x, float* y, int64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = tail_mask(n - i);
      _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
  }
  static void scale(float* y, float s, int64_t n) {
    const __m512 vs = _mm512_set1_ps(s);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = tail_mask(n - i);
      _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(vs, _mm512_maskz_loadu_ps(m, y + i)));
    }
  }
};
// r[i] = sum of the 16 lanes of v[i], for i < 16: pairwise lane sums within 128-bit lanes, then
// across them (45 shuffles and adds for 16 dot products instead of a full reduction each).
inline __m512 hadd16(const __m512* v) {
  __m512 u[8], w[4];
  for (int k = 0; k < 8; ++k)  // per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3]
    u[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  for (int k = 0; k < 4; ++k)  // per 128-bit lane: that lane's sums of v[4k .. 4k+3]
    w[k] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * k], u[2 * k + 1], 0x44), _mm512_shuffle_ps(u[2 * k], u[2 * k + 1], 0xEE));
  const __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x44), _mm512_shuffle_f32x4(w[0], w[1], 0xEE));
  const __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(w[2], w[3], 0x44), _mm512_shuffle_f32x4(w[2], w[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, 0x88), _mm512_shuffle_f32x4(x0, x1, 0xDD));
}

// The vector width the blocked walk runs at: 16 floats with AVX-512 (masked tails).
struct Vec512 {
  using V = __m512;
  static constexpr int W = 16;
  using Ops = Avx512Ops;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V hadd(const V* v) { return hadd16(v); }
  static void store_first(float* p, V v, int64_t count) { _mm512_mask_storeu_ps(p, tail_mask(count), v); }
  static const float* load_row(DType t, const uint8_t* src, float* tmp, int64_t n) { return load_row_avx512(t, src, tmp, n); }
};
#endif

// r[i] = sum of the 8 lanes of v[i], for i < 8: three rounds of vhaddps, then the two 128-bit
// halves added (9 instructions for 8 dot products).
inline __m256 hadd8(const __m256* v) {
  const __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);  // [v0..v3 | v0..v3], [v4..v7 | v4..v7]
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// 8 floats with AVX2 (tails through a small buffer).
struct Vec256 {
  using V = __m256;
  static constexpr int W = 8;
  using Ops = Avx2Ops;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V hadd(const V* v) { return hadd8(v); }
  static void store_first(float* p, V v, int64_t count) {
    alignas(32) float buf[8];
    _mm256_store_ps(buf, v);
    std::copy(buf, buf + std::min<int64_t>(count, 8), p);
  }
  static const float* load_row(DType t, const uint8_t* src, float* tmp, int64_t n) { return load_row_avx2(t, src, tmp, n); }
};

// Rows [j0, j0 + m) of a cache run as floats, row r at dst + r * d.
template <class VT>
inline void load_block(DType t, const uint8_t* base, int64_t stride, int64_t j0, int64_t m, int64_t d, float* dst) {
  for (int64_t r = 0; r < m; ++r) {
    const uint8_t* src = base + (j0 + r) * stride;
    if (t == DType::F32)
      std::memcpy(dst + r * d, src, d * sizeof(float));
    else
      VT::load_row(t, src, dst + r * d, d);
  }
}

// out[0 .. W * CN) += sum_p w[p] * rows[p * ld + 0 .. W * CN), p < m; accumulators in registers.
template <class VT, int CN>
inline void weighted_rows(const float* w, const float* rows, int64_t ld, int64_t m, float* out) {
  typename VT::V acc[CN];
  for (int c = 0; c < CN; ++c) acc[c] = VT::load(out + VT::W * c);
  for (int64_t p = 0; p < m; ++p) {
    const typename VT::V wp = VT::set1(w[p]);
    for (int c = 0; c < CN; ++c) acc[c] = VT::fma(wp, VT::load(rows + p * ld + VT::W * c), acc[c]);
  }
  for (int c = 0; c < CN; ++c) VT::store(out + VT::W * c, acc[c]);
}

template <class VT>
inline void weighted_rows_n(int cn, const float* w, const float* rows, int64_t ld, int64_t m, float* out) {
  switch (cn) {
    case 1: return weighted_rows<VT, 1>(w, rows, ld, m, out);
    case 2: return weighted_rows<VT, 2>(w, rows, ld, m, out);
    case 3: return weighted_rows<VT, 3>(w, rows, ld, m, out);
    case 4: return weighted_rows<VT, 4>(w, rows, ld, m, out);
    case 5: return weighted_rows<VT, 5>(w, rows, ld, m, out);
    case 6: return weighted_rows<VT, 6>(w, rows, ld, m, out);
    case 7: return weighted_rows<VT, 7>(w, rows, ld, m, out);
    default: return weighted_rows<VT, 8>(w, rows, ld, m, out);
  }
}

// The blocked walk for head dims that are whole vectors: kAttendBlock positions of K (then V)
// converted to float once for the whole group; scores W positions at a time per query (W dot
// partials reduced together by VT::hadd); the V sums with the output in registers, 8 vectors of
// dims at a time. Other head dims take the row-at-a-time walk (attention_impl.h).
template <class VT>
void attend_group_blocked(const AttendArgs& a) {
  using V = typename VT::V;
  constexpr int W = VT::W;
  const int64_t n = a.n_pos, dk = a.dk, dv = a.dv, group = a.group;
  if (dk % W != 0 || dv % W != 0) return attend_group<typename VT::Ops>(a);
  const int64_t nk = dk / W, nv = dv / W;
  const V vscale = VT::set1(a.scale);
  for (int64_t j0 = 0; j0 < n; j0 += kAttendBlock) {
    const int64_t m = std::min(kAttendBlock, n - j0);
    load_block<VT>(a.tk, a.k, a.k_stride, j0, m, dk, a.row);
    for (int64_t g = 0; g < group; ++g) {
      const float* qg = a.q + g * dk;
      for (int64_t p0 = 0; p0 < m; p0 += W) {
        V part[W];
        for (int p = 0; p < W; ++p) {
          V acc = VT::zero();
          if (p0 + p < m) {
            const float* kr = a.row + (p0 + p) * dk;
            for (int64_t c = 0; c < nk; ++c) acc = VT::fma(VT::load(qg + W * c), VT::load(kr + W * c), acc);
          }
          part[p] = acc;
        }
        VT::store_first(a.scores + g * n + j0 + p0, VT::mul(vscale, VT::hadd(part)), m - p0);
      }
    }
  }
  for (int64_t g = 0; g < group; ++g) {
    float* s = a.scores + g * n;
    a.sums[g] = softmax_sum<typename VT::Ops>(a, g, s, n);
    std::fill(a.out + g * dv, a.out + (g + 1) * dv, 0.0f);
  }
  for (int64_t j0 = 0; j0 < n; j0 += kAttendBlock) {
    const int64_t m = std::min(kAttendBlock, n - j0);
    load_block<VT>(a.tv, a.v, a.v_stride, j0, m, dv, a.row);
    for (int64_t g = 0; g < group; ++g)
      for (int64_t c0 = 0; c0 < nv; c0 += 8)
        weighted_rows_n<VT>(static_cast<int>(std::min<int64_t>(8, nv - c0)), a.scores + g * n + j0, a.row + W * c0, dv, m,
                            a.out + g * dv + W * c0);
  }
  for (int64_t g = 0; g < group; ++g) VT::Ops::scale(a.out + g * dv, 1.0f / a.sums[g], dv);
}

}  // namespace

#if defined(__AVX512F__)
inline AttentionKernels attention_kernels() { return {attend_group_blocked<Vec512>, store_row}; }
#else
inline AttentionKernels attention_kernels() { return {attend_group_blocked<Vec256>, store_row}; }
#endif

}  // namespace velocity::engine::cpu::VELOCITY_X86_NS
