// The x86 SIMD kernels, written once and compiled twice: matmul_avx2.cpp (AVX2+FMA+F16C) and
// matmul_avx512.cpp (the same plus AVX-512 VL/BW and VNNI). The including file defines
// VELOCITY_X86_NS (the namespace, avx2 or avx512). With VNNI the u8 x s8 dot products are one
// vpdpbusd and the scaled 16-bit sums one vpdpwssd; without it, vpmaddubsw + vpmaddwd. Both give
// the same integers (no intermediate saturates for the ranges used below), and the float steps
// are identical, so AVX2 and AVX-512 results are bitwise equal.
//
// Types with kernels here: F32, F16, BF16, Q8_0, Q4_0, MXFP4 (Q8_32 activations), Q4_K, Q6_K
// (Q8_K activations). The rest (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K) fall back to the scalar
// kernels for now. In the AVX-512 build, Q8_0/Q4_0/MXFP4 use rows_q32_512 (two blocks per zmm,
// 8-token tiles); the others use the 256-bit code with VNNI (8-token tiles for the K-quants).
// The AVX-512 build also has kernels (matmul_packed_x86.h) for the load-time packed layout
// (matmul_packed.h) of Q8_0, Q4_0, MXFP4, Q4_K and Q6_K, which CpuBackend uses on such CPUs: 16
// rows per step, each row's products reduced in its own vpdpbusd lane.
//
// Walk: for each row, tiles of up to kTile tokens; inside a tile, blocks in order, and for each
// block every token of the tile. The weight block is decoded once per tile, the row is read from
// memory for the first tile and from L1 for the others. Each token accumulates into two float
// vectors (even and odd blocks, to halve the FMA dependency chain at one token), summed at the
// end: an order that is the same for every tile size.
//
// Sign trick (ggml's) for signed weights against signed activations: |w| * (a * sign(w)) with
// vpsignb, so the unsigned operand is |w| <= 128 and the signed one |a| <= 127; a maddubs pair is
// at most 2 * 128 * 127 = 32512 < 32767.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/fp16.h"
#include "engine/cpu/matmul_kernels.h"
#include "engine/cpu/vec_math_x86.h"

#ifndef VELOCITY_X86_NS
#error "define VELOCITY_X86_NS before including matmul_x86.h"
#endif

namespace velocity::engine::cpu::VELOCITY_X86_NS {
namespace {

constexpr int kTile = 4;                 // tokens per tile: 2 accumulators each in 16 ymm registers
constexpr int kPrefetchBytes = 2048;     // software prefetch distance along a row
#if defined(__AVX512F__)
constexpr int kTileK = 8;  // K-quant tile: AVX-512VL has 32 ymm registers
#else
constexpr int kTileK = kTile;
#endif

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// sum over groups of 4 bytes of u (unsigned) * s (signed): 8 int32 lanes.
inline __m256i udot(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// acc + sum over pairs of 16-bit p * scale: 8 int32 lanes.
inline __m256i madd_acc(__m256i acc, __m256i p, __m256i scale) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpwssd_epi32(acc, p, scale);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale));
#endif
}

inline float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
inline __m256i loadu256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i loadu128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
// 16 bytes of packed nibbles -> 32 bytes: low nibbles first (elements 0..15), then high (16..31).
inline __m256i unpack_nibbles(__m128i raw) {
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Runs tile<T>(row, r, t0) over rows and token tiles, T a compile-time count <= kMax.
template <int N, class Tile>
void tile_rest(Tile& tile, int n, const uint8_t* row, int64_t r, int64_t t0) {
  if constexpr (N > 0) {
    if (n == N) {
      tile.template operator()<N>(row, r, t0);
    } else {
      tile_rest<N - 1>(tile, n, row, r, t0);
    }
  }
}
template <int kMax = kTile, class Tile>
void for_tiles(const MatmulArgs& a, int64_t r0, int64_t r1, Tile&& tile) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w + r * a.row_bytes;
    int64_t t0 = 0;
    for (; t0 + kMax <= a.n_tokens; t0 += kMax) tile.template operator()<kMax>(row, r, t0);
    tile_rest<kMax - 1>(tile, (int)(a.n_tokens - t0), row, r, t0);
  }
}

// --- plain formats: F32, F16, BF16 ----------------------------------------------------------------

struct LoadF32 {
  static __m256 vec(const uint8_t* row, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i); }
  static float one(const uint8_t* row, int64_t i) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  }
  static constexpr int kBytes = 4;
};
struct LoadF16 {
  static __m256 vec(const uint8_t* row, int64_t i) { return _mm256_cvtph_ps(loadu128(row + 2 * i)); }
  static float one(const uint8_t* row, int64_t i) { return load_fp16(row + 2 * i); }
  static constexpr int kBytes = 2;
};
struct LoadBF16 {
  static __m256 vec(const uint8_t* row, int64_t i) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(row + 2 * i)), 16));
  }
  static float one(const uint8_t* row, int64_t i) {
    uint16_t b;
    std::memcpy(&b, row + 2 * i, 2);
    return bf16_to_fp32(b);
  }
  static constexpr int kBytes = 2;
};

template <class Load>
void rows_plain(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t n = a.n_in;
  for_tiles(a, r0, r1, [&]<int T>(const uint8_t* row, int64_t r, int64_t t0) {
    const float* x[T];
    __m256 acc0[T], acc1[T];
    for (int t = 0; t < T; ++t) {
      x[t] = a.x + (t0 + t) * a.ldx;
      acc0[t] = acc1[t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      _mm_prefetch(reinterpret_cast<const char*>(row + (i * Load::kBytes) + kPrefetchBytes), _MM_HINT_T0);
      const __m256 w0 = Load::vec(row, i), w1 = Load::vec(row, i + 8);
      for (int t = 0; t < T; ++t) {
        acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + i), acc0[t]);
        acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t] + i + 8), acc1[t]);
      }
    }
    if (i + 8 <= n) {
      const __m256 w0 = Load::vec(row, i);
      for (int t = 0; t < T; ++t) acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + i), acc0[t]);
      i += 8;
    }
    for (int t = 0; t < T; ++t) {
      float sum = hsum256(_mm256_add_ps(acc0[t], acc1[t]));
      for (int64_t j = i; j < n; ++j) sum += Load::one(row, j) * x[t][j];
      a.y[(t0 + t) * a.ldy + r] = sum;
    }
  });
}

// --- 32-element formats with signed weights: Q8_0, Q4_0, MXFP4 -------------------------------------

// Block loaders: the 32 signed weights of the block and its scale (w = scale * weights).
#if defined(__AVX512F__)
inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
// [fp16 at b x 8, fp16 at b + stride x 8] as floats; pair_index = {0 x 8, 1 x 8}.
inline __m512 fp16_pair(const uint8_t* b, int stride, __m512i pair_index) {
  uint16_t h0, h1;
  std::memcpy(&h0, b, 2);
  std::memcpy(&h1, b + stride, 2);
  const __m128 two = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(h0 | (uint32_t)h1 << 16)));
  return _mm512_permutexvar_ps(pair_index, _mm512_castps128_ps512(two));
}
#endif

// pair (AVX-512 only): the signed weights of blocks b and b + kBytes, 64 bytes.
struct BlockQ8_0 {
  static constexpr int kBytes = 34;
  static float load(const uint8_t* b, __m256i& w) {
    w = loadu256(b + 2);
    return load_fp16(b);
  }
  static float scale(const uint8_t* b) { return load_fp16(b); }
#if defined(__AVX512F__)
  static __m512i pair(const uint8_t* b) { return join(loadu256(b + 2), loadu256(b + kBytes + 2)); }
  static __m512 scale_pair(const uint8_t* b, __m512i pair_index) { return fp16_pair(b, kBytes, pair_index); }
#endif
};
struct BlockQ4_0 {
  static constexpr int kBytes = 18;
  static float load(const uint8_t* b, __m256i& w) {
    w = _mm256_sub_epi8(unpack_nibbles(loadu128(b + 2)), _mm256_set1_epi8(8));
    return load_fp16(b);
  }
  static float scale(const uint8_t* b) { return load_fp16(b); }
#if defined(__AVX512F__)
  static __m512 scale_pair(const uint8_t* b, __m512i pair_index) { return fp16_pair(b, kBytes, pair_index); }
  static __m512i pair(const uint8_t* b) {
    return _mm512_sub_epi8(join(unpack_nibbles(loadu128(b + 2)), unpack_nibbles(loadu128(b + kBytes + 2))), _mm512_set1_epi8(8));
  }
#endif
};
struct BlockMxfp4 {
  static constexpr int kBytes = 17;
  static float load(const uint8_t* b, __m256i& w) {
    const __m256i table = _mm256_broadcastsi128_si256(loadu128(kE2M1Doubled));
    w = _mm256_shuffle_epi8(table, unpack_nibbles(loadu128(b + 1)));
    return e8m0_to_fp32_half(b[0]);
  }
  static float scale(const uint8_t* b) { return e8m0_to_fp32_half(b[0]); }
#if defined(__AVX512F__)
  static __m512 scale_pair(const uint8_t* b, __m512i) {
    return _mm512_insertf32x8(_mm512_set1_ps(scale(b)), _mm256_set1_ps(scale(b + kBytes)), 1);
  }
  static __m512i pair(const uint8_t* b) {
    const __m512i table = _mm512_broadcast_i32x4(loadu128(kE2M1Doubled));
    return _mm512_shuffle_epi8(table, join(unpack_nibbles(loadu128(b + 1)), unpack_nibbles(loadu128(b + kBytes + 1))));
  }
#endif
};

template <class Block>
void rows_q32(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / 32;
  for_tiles(a, r0, r1, [&]<int T>(const uint8_t* row, int64_t r, int64_t t0) {
    ActQ8_32 act[T];
    __m256 acc0[T], acc1[T];
    for (int t = 0; t < T; ++t) {
      act[t] = view_q8_32(a.act + (t0 + t) * a.act_stride, a.n_in);
      acc0[t] = acc1[t] = _mm256_setzero_ps();
    }
    const auto step = [&](int64_t ib, __m256* acc) {
      __m256i w;
      const __m256 scale = _mm256_set1_ps(Block::load(row + ib * Block::kBytes, w));
      const __m256i w_abs = _mm256_sign_epi8(w, w);
      for (int t = 0; t < T; ++t) {
        const __m256i q = _mm256_sign_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(act[t].qs + 32 * ib)), w);
        const __m256 p = _mm256_cvtepi32_ps(udot(w_abs, q));
        acc[t] = _mm256_fmadd_ps(p, _mm256_mul_ps(scale, _mm256_broadcast_ss(act[t].d + ib)), acc[t]);
      }
    };
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
      _mm_prefetch(reinterpret_cast<const char*>(row + ib * Block::kBytes + kPrefetchBytes), _MM_HINT_T0);
      step(ib, acc0);
      step(ib + 1, acc1);
    }
    if (ib < nb) step(ib, acc0);
    for (int t = 0; t < T; ++t) a.y[(t0 + t) * a.ldy + r] = hsum256(_mm256_add_ps(acc0[t], acc1[t]));
  });
}

#if defined(__AVX512F__)
// The same results as rows_q32 (bitwise), two blocks per 512-bit step: lanes 0..7 hold the even
// block (rows_q32's acc0), lanes 8..15 the odd one (acc1). AVX-512 has no vpsignb, so the sign
// trick is abs + a masked negate of the activations where the weight is negative; each int32
// lane is the same exact integer as in rows_q32, and the scales multiply in the same order.
// 8 tokens a tile (32 zmm registers).
template <class Block>
void rows_q32_512(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / 32;
  for_tiles<8>(a, r0, r1, [&]<int T>(const uint8_t* row, int64_t r, int64_t t0) {
    ActQ8_32 act[T];
    __m512 acc[T];
    for (int t = 0; t < T; ++t) {
      act[t] = view_q8_32(a.act + (t0 + t) * a.act_stride, a.n_in);
      acc[t] = _mm512_setzero_ps();
    }
    const __m512i pair_index = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
      const uint8_t* b = row + ib * Block::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchBytes), _MM_HINT_T0);
      const __m512i w = Block::pair(b);
      const __m512i w_abs = _mm512_abs_epi8(w);
      const __mmask64 negative = _mm512_movepi8_mask(w);
      const __m512 dw = Block::scale_pair(b, pair_index);
      for (int t = 0; t < T; ++t) {
        const __m512i q = _mm512_load_si512(act[t].qs + 32 * ib);
        const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w_abs, _mm512_mask_sub_epi8(q, negative, _mm512_setzero_si512(), q));
        // [d(ib) x 8, d(ib + 1) x 8]
        const __m512 da = _mm512_permutexvar_ps(pair_index, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(act[t].d + ib)))));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, da), acc[t]);
      }
    }
    __m256i w_tail = _mm256_setzero_si256();
    float dw_tail = 0.0f;
    if (ib < nb) dw_tail = Block::load(row + ib * Block::kBytes, w_tail);
    for (int t = 0; t < T; ++t) {
      __m256 even = _mm512_castps512_ps256(acc[t]);
      const __m256 odd = _mm512_extractf32x8_ps(acc[t], 1);
      if (ib < nb) {
        const __m256i q = _mm256_sign_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(act[t].qs + 32 * ib)), w_tail);
        const __m256 p = _mm256_cvtepi32_ps(udot(_mm256_sign_epi8(w_tail, w_tail), q));
        even = _mm256_fmadd_ps(p, _mm256_mul_ps(_mm256_set1_ps(dw_tail), _mm256_broadcast_ss(act[t].d + ib)), even);
      }
      a.y[(t0 + t) * a.ldy + r] = hsum256(_mm256_add_ps(even, odd));
    }
  });
}
#endif

// --- K-quants ------------------------------------------------------------------------------------

// Q4_K (144 bytes: d, dmin, scales[12], qs[128]); w = d * sc_j * q - dmin * m_j per 32-element
// sub-block j. Per token: sum_j sc_j (q . a)_j as int32 lanes, and sum_j m_j (bsum_2j + bsum_2j+1)
// from the activation block sums; both scaled by the activation scale at the end of the block.
void rows_q4_k(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / 256;
  for_tiles<kTileK>(a, r0, r1, [&]<int T>(const uint8_t* row, int64_t r, int64_t t0) {
    ActQ8_K act[T];
    __m256 acc[T];
    for (int t = 0; t < T; ++t) {
      act[t] = view_q8_k(a.act + (t0 + t) * a.act_stride, a.n_in);
      acc[t] = _mm256_setzero_ps();
    }
    for (int64_t ib = 0; ib < nb; ++ib) {
      const uint8_t* b = row + ib * 144;
      _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchBytes + 64), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchBytes + 128), _MM_HINT_T0);
      const float d = load_fp16(b), dmin = load_fp16(b + 2);
      const uint8_t* packed = b + 4;
      uint8_t sc[8], m[8];
      for (int j = 0; j < 4; ++j) {
        sc[j] = packed[j] & 63;
        m[j] = packed[j + 4] & 63;
        sc[j + 4] = (uint8_t)((packed[j + 8] & 0x0F) | ((packed[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4));
      }
      // mins, each twice: against the 16 bsums of 16 elements
      const __m256i mins = _mm256_set_epi16(m[7], m[7], m[6], m[6], m[5], m[5], m[4], m[4], m[3], m[3], m[2], m[2], m[1], m[1], m[0], m[0]);
      __m256i sumi[T];
      for (int t = 0; t < T; ++t) sumi[t] = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        const __m256i raw = loadu256(b + 16 + 32 * c);
        const __m256i lo = _mm256_and_si256(raw, _mm256_set1_epi8(0x0F));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), _mm256_set1_epi8(0x0F));
        const __m256i sc_lo = _mm256_set1_epi16(sc[2 * c]), sc_hi = _mm256_set1_epi16(sc[2 * c + 1]);
        for (int t = 0; t < T; ++t) {
          const int8_t* q = act[t].qs + 256 * ib + 64 * c;
          sumi[t] = madd_acc(sumi[t], _mm256_maddubs_epi16(lo, _mm256_load_si256(reinterpret_cast<const __m256i*>(q))), sc_lo);
          sumi[t] = madd_acc(sumi[t], _mm256_maddubs_epi16(hi, _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32))), sc_hi);
        }
      }
      for (int t = 0; t < T; ++t) {
        const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act[t].bsums + 16 * ib));
        const __m256 da = _mm256_broadcast_ss(act[t].d + ib);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[t]), _mm256_mul_ps(_mm256_set1_ps(d), da), acc[t]);
        acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, mins)), _mm256_mul_ps(_mm256_set1_ps(dmin), da), acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) a.y[(t0 + t) * a.ldy + r] = hsum256(acc[t]);
  });
}

// Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d); w = d * sc_s * (q - 32) per 16-element
// sub-block s, q in 0..63 unsigned against the activations, the -32 taken off with the block sums:
// sum_s sc_s (q . a)_s - 32 sum_s sc_s bsum_s.
void rows_q6_k(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / 256;
  for_tiles<kTileK>(a, r0, r1, [&]<int T>(const uint8_t* row, int64_t r, int64_t t0) {
    ActQ8_K act[T];
    __m256 acc[T];
    for (int t = 0; t < T; ++t) {
      act[t] = view_q8_k(a.act + (t0 + t) * a.act_stride, a.n_in);
      acc[t] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    for (int64_t ib = 0; ib < nb; ++ib) {
      const uint8_t* b = row + ib * 210;
      for (int k = 0; k < 4; ++k) _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchBytes + 64 * k), _MM_HINT_T0);
      const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
      const float d = load_fp16(b + 208);
      __m256i sumi[T];
      for (int t = 0; t < T; ++t) sumi[t] = _mm256_setzero_si256();
      for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = loadu256(b + 64 * h), ql1 = loadu256(b + 64 * h + 32);
        const __m256i qh = loadu256(b + 128 + 32 * h);
        const __m256i q[4] = {
            _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
            _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2)),
        };
        for (int g = 0; g < 4; ++g) {
          const int s = 8 * h + 2 * g;
          const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(scales[s + 1]), _mm_set1_epi16(scales[s]));
          for (int t = 0; t < T; ++t) {
            const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(act[t].qs + 256 * ib + 128 * h + 32 * g));
            sumi[t] = madd_acc(sumi[t], _mm256_maddubs_epi16(q[g], x), sc);
          }
        }
      }
      const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(scales));
      for (int t = 0; t < T; ++t) {
        const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act[t].bsums + 16 * ib));
        const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[t], offset)),
                                 _mm256_mul_ps(_mm256_set1_ps(d), _mm256_broadcast_ss(act[t].d + ib)), acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) a.y[(t0 + t) * a.ldy + r] = hsum256(acc[t]);
  });
}

// --- activation quantisers (same rounding as the scalar ones: quant_act.h) -------------------------

// 32 floats -> 32 int8 at q (in order), given 127/amax; returns the 4 int32 vectors' sum lanes via
// `parts` (elements 0..7, 8..15, 16..23, 24..31).
inline void quantize32(const float* x, float id, int8_t* q, __m256i parts[4]) {
  const __m256 vid = _mm256_set1_ps(id);
  for (int k = 0; k < 4; ++k) parts[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid));
  const __m256i p01 = _mm256_packs_epi32(parts[0], parts[1]), p23 = _mm256_packs_epi32(parts[2], parts[3]);
  const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), bytes);
}
inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

void quantize_q8_32(const float* x, uint8_t* token, int64_t n_in, int64_t begin, int64_t end) {
  int8_t* qs = reinterpret_cast<int8_t*>(token);
  float* d = reinterpret_cast<float*>(token + round_up64(n_in));
  float* s = d + n_in / 32;
  int32_t* bias = reinterpret_cast<int32_t*>(s + n_in / 32);
  for (int64_t i0 = begin; i0 < end; i0 += 32) {
    __m256 m = abs_ps(_mm256_loadu_ps(x + i0));
    for (int k = 1; k < 4; ++k) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + i0 + 8 * k)));
    const float amax = hmax(m);
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    __m256i parts[4];
    quantize32(x + i0, id, qs + i0, parts);
    const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(parts[0], parts[1]), _mm256_add_epi32(parts[2], parts[3])));
    d[i0 / 32] = amax / 127.0f;
    s[i0 / 32] = d[i0 / 32] * (float)sum;
    bias[i0 / 32] = -128 * sum;
  }
}

void quantize_q8_k(const float* x, uint8_t* token, int64_t n_in, int64_t begin, int64_t end) {
  int8_t* qs = reinterpret_cast<int8_t*>(token);
  float* d = reinterpret_cast<float*>(token + round_up64(n_in));
  int16_t* bsums = reinterpret_cast<int16_t*>(d + n_in / 256);
  for (int64_t i0 = begin; i0 < end; i0 += 256) {
    __m256 m = abs_ps(_mm256_loadu_ps(x + i0));
    for (int k = 1; k < 32; ++k) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + i0 + 8 * k)));
    const float amax = hmax(m);
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int c = 0; c < 8; ++c) {
      __m256i parts[4];
      quantize32(x + i0 + 32 * c, id, qs + i0 + 32 * c, parts);
      bsums[i0 / 16 + 2 * c] = (int16_t)hsum_i32(_mm256_add_epi32(parts[0], parts[1]));
      bsums[i0 / 16 + 2 * c + 1] = (int16_t)hsum_i32(_mm256_add_epi32(parts[2], parts[3]));
    }
    d[i0 / 256] = amax / 127.0f;
  }
}

}  // namespace

RowsKernel rows_kernel(DType type) {
  switch (type) {
    case DType::F32: return rows_plain<LoadF32>;
    case DType::F16: return rows_plain<LoadF16>;
    case DType::BF16: return rows_plain<LoadBF16>;
#if defined(__AVX512F__)
    case DType::Q8_0: return rows_q32_512<BlockQ8_0>;
    case DType::Q4_0: return rows_q32_512<BlockQ4_0>;
    case DType::MXFP4: return rows_q32_512<BlockMxfp4>;
#else
    case DType::Q8_0: return rows_q32<BlockQ8_0>;
    case DType::Q4_0: return rows_q32<BlockQ4_0>;
    case DType::MXFP4: return rows_q32<BlockMxfp4>;
#endif
    case DType::Q4_K: return rows_q4_k;
    case DType::Q6_K: return rows_q6_k;
    default: return nullptr;
  }
}


QuantizeActFn quantizer(ActKind kind) {
  switch (kind) {
    case ActKind::Q8_32: return quantize_q8_32;
    case ActKind::Q8_K: return quantize_q8_k;
    case ActKind::F32: return nullptr;
  }
  return nullptr;
}

}  // namespace velocity::engine::cpu::VELOCITY_X86_NS
