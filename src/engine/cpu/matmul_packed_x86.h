// The AVX-512 VNNI kernels for the packed weight layout (matmul_packed.h), included by
// matmul_avx512.cpp after matmul_x86.h (whose helpers they use), in the same namespace.
#pragma once

#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "engine/cpu/matmul_packed.h"

#if !defined(__AVX512F__) || !defined(__AVX512VNNI__)
#error "matmul_packed_x86.h is for the AVX-512 VNNI build"
#endif

namespace velocity::engine::cpu::VELOCITY_X86_NS {
namespace {

// Software prefetch distance: these kernels read 2x to 5x faster than matmul_x86.h's, so further
// ahead (8 KiB measured better than 2 KiB single-threaded from DRAM: MXFP4 +15%, 8 tokens +30%).
constexpr int kPackedPrefetchBytes = 8192;

// Packed weights (matmul_packed.h): a tile of 16 rows against T tokens. Per block, 8 vpdpbusd a
// token (one per group of 4 elements, the token's 4 bytes broadcast) leave each row's exact block
// dot product in its lane; then one convert and one fma per token for all 16 rows. With few
// tokens the 8 dependent vpdpbusd of a block are split over kChains accumulators (integer sums:
// the result does not depend on the split), so each token's float steps are the same for every
// T and the batch and single-token results agree bitwise.
//
// A format gives: kQuantBytes (a block's quants in a tile), kLoads vectors of them, each decoded
// to kPerLoad vectors of unsigned weights (groups g = load + kLoads * k), the block's 16 scales
// as floats, and the activations' bias scaled to its offset.
struct PackedQ8_0 {
  static constexpr int kQuantBytes = 512, kLoads = 8, kPerLoad = 1;
  static void decode(const uint8_t* q, int load, __m512i* w) { w[0] = _mm512_loadu_si512(q + 64 * load); }
  static __m512 scales(const uint8_t* s) { return _mm512_cvtph_ps(loadu256(s)); }
  static int32_t bias(int32_t b) { return b; }  // u = w + 128
  static constexpr int kScaleBytes = 32;
};
struct PackedQ4_0 {
  static constexpr int kQuantBytes = 256, kLoads = 4, kPerLoad = 2;
  static void decode(const uint8_t* q, int load, __m512i* w) {
    const __m512i v = _mm512_loadu_si512(q + 64 * load), m4 = _mm512_set1_epi8(0x0F);
    w[0] = _mm512_and_si512(v, m4);
    w[1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
  }
  static __m512 scales(const uint8_t* s) { return _mm512_cvtph_ps(loadu256(s)); }
  static int32_t bias(int32_t b) { return b >> 4; }  // u = w + 8: -8 * sum, exact (b is a multiple of 128)
  static constexpr int kScaleBytes = 32;
};
struct PackedMxfp4 {
  static constexpr int kQuantBytes = 256, kLoads = 4, kPerLoad = 2;
  static void decode(const uint8_t* q, int load, __m512i* w) {
    alignas(16) static constexpr uint8_t kTable[16] = {
        0x80, 0x81, 0x82, 0x83, 0x84, 0x86, 0x88, 0x8C, 0x80, 0x7F, 0x7E, 0x7D, 0x7C, 0x7A, 0x78, 0x74};  // kE2M1Doubled + 128
    const __m512i table = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kTable)));
    const __m512i v = _mm512_loadu_si512(q + 64 * load), m4 = _mm512_set1_epi8(0x0F);
    w[0] = _mm512_shuffle_epi8(table, _mm512_and_si512(v, m4));
    w[1] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
  }
  // e8m0_to_fp32_half of 16 bytes: 2^(e - 128), subnormal for e < 2.
  static __m512 scales(const uint8_t* s) {
    const __m512i e = _mm512_cvtepu8_epi32(loadu128(s));
    const __m512i normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
    const __m512i subnormal = _mm512_sllv_epi32(_mm512_set1_epi32(0x00200000), e);
    return _mm512_castsi512_ps(_mm512_mask_blend_epi32(_mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2)), normal, subnormal));
  }
  static int32_t bias(int32_t b) { return b; }  // u = w + 128
  static constexpr int kScaleBytes = 16;
};

template <class Format, int T>
void tile_packed(const MatmulArgs& a, const uint8_t* tile, int64_t r, int64_t t0) {
  constexpr int kChains = T >= 6 ? 1 : T >= 3 ? 2 : 4;
  const int64_t nb = a.n_in / 32;
  const uint8_t* scales = tile + nb * Format::kQuantBytes;
  ActQ8_32 act[T];
  __m512 acc[T];
  for (int t = 0; t < T; ++t) {
    act[t] = view_q8_32(a.act + (t0 + t) * a.act_stride, a.n_in);
    acc[t] = _mm512_setzero_ps();
  }
  for (int64_t ib = 0; ib < nb; ++ib) {
    const uint8_t* q = tile + ib * Format::kQuantBytes;
    for (int k = 0; k < Format::kLoads; ++k) _mm_prefetch(reinterpret_cast<const char*>(q + kPackedPrefetchBytes + 64 * k), _MM_HINT_T0);
    __m512i p[T][kChains];
    for (int t = 0; t < T; ++t) {
      p[t][0] = _mm512_set1_epi32(Format::bias(act[t].bias[ib]));
      for (int c = 1; c < kChains; ++c) p[t][c] = _mm512_setzero_si512();
    }
    for (int load = 0; load < Format::kLoads; ++load) {
      __m512i w[Format::kPerLoad];
      Format::decode(q, load, w);
      for (int k = 0; k < Format::kPerLoad; ++k) {
        const int g = load + Format::kLoads * k, chain = (load * Format::kPerLoad + k) % kChains;
        for (int t = 0; t < T; ++t) {
          int32_t a4;
          std::memcpy(&a4, act[t].qs + 32 * ib + 4 * g, 4);
          p[t][chain] = _mm512_dpbusd_epi32(p[t][chain], w[k], _mm512_set1_epi32(a4));
        }
      }
    }
    const __m512 dw = Format::scales(scales + Format::kScaleBytes * ib);
    for (int t = 0; t < T; ++t) {
      __m512i sum = p[t][0];
      for (int c = 1; c < kChains; ++c) sum = _mm512_add_epi32(sum, p[t][c]);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(act[t].d[ib])), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(a.y + (t0 + t) * a.ldy + r, acc[t]);
}

// Packed Q4_K (matmul_packed.h), 16 rows against T tokens. Per super-block and token: 64
// vpdpbusd give sub-block s's dot products p_s (nibbles 0..15 against the activations; 16 rows
// in the lanes), summed as sum_s sc_s p_s in int32 (exact); the mins as sum_s m_s * (bsum_2s +
// bsum_2s+1) with one vpdpwssd per sub-block (m_s in both int16 halves of a lane against the
// two block sums); then d * da and dmin * da in float, in the same order for every T.
template <int T>
void tile_q4_k_packed(const MatmulArgs& a, const uint8_t* tile, int64_t r, int64_t t0) {
  constexpr int kChains = T >= 4 ? 1 : 2;  // per sub-block
  const int64_t nsb = a.n_in / 256;
  ActQ8_K act[T];
  __m512 acc[T];
  for (int t = 0; t < T; ++t) {
    act[t] = view_q8_k(a.act + (t0 + t) * a.act_stride, a.n_in);
    acc[t] = _mm512_setzero_ps();
  }
  const __m512i m4 = _mm512_set1_epi8(0x0F), m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3);
  for (int64_t ib = 0; ib < nsb; ++ib) {
    const uint8_t* q = tile + kPackedQ4KBytes * ib;
    const uint8_t* meta = q + 2048;
    for (int k = 0; k < 36; ++k) _mm_prefetch(reinterpret_cast<const char*>(q + kPackedPrefetchBytes + 64 * k), _MM_HINT_T0);
    const __m512i high = _mm512_loadu_si512(meta + 192);
    __m512i isum[T], msum[T];
    for (int t = 0; t < T; ++t) isum[t] = msum[t] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      __m512i p[T][2][kChains];
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < 2; ++h)
          for (int k = 0; k < kChains; ++k) p[t][h][k] = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        const __m512i v = _mm512_loadu_si512(q + 512 * c + 64 * k);
        const __m512i w[2] = {_mm512_and_si512(v, m4), _mm512_and_si512(_mm512_srli_epi16(v, 4), m4)};
        for (int h = 0; h < 2; ++h)
          for (int t = 0; t < T; ++t) {
            int32_t a4;
            std::memcpy(&a4, act[t].qs + 256 * ib + 32 * (2 * c + h) + 4 * k, 4);
            p[t][h][k % kChains] = _mm512_dpbusd_epi32(p[t][h][k % kChains], w[h], _mm512_set1_epi32(a4));
          }
      }
      for (int h = 0; h < 2; ++h) {
        const int sb = 2 * c + h;
        const __m512i low = _mm512_cvtepu8_epi32(loadu128(meta + 64 + 16 * sb));
        const __m512i sc = _mm512_or_si512(_mm512_and_si512(low, m15), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(high, 2 * sb), m3), 4));
        const __m512i m = _mm512_or_si512(_mm512_srli_epi32(low, 4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(high, 16 + 2 * sb), m3), 4));
        const __m512i m_twice = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
        for (int t = 0; t < T; ++t) {
          __m512i ps = p[t][h][0];
          for (int k = 1; k < kChains; ++k) ps = _mm512_add_epi32(ps, p[t][h][k]);
          isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(ps, sc));
          int32_t bsums;
          std::memcpy(&bsums, act[t].bsums + 16 * ib + 2 * sb, 4);
          msum[t] = _mm512_dpwssd_epi32(msum[t], m_twice, _mm512_set1_epi32(bsums));
        }
      }
    }
    const __m512 d = _mm512_cvtph_ps(loadu256(meta)), dmin = _mm512_cvtph_ps(loadu256(meta + 32));
    for (int t = 0; t < T; ++t) {
      const __m512 da = _mm512_set1_ps(act[t].d[ib]);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, da), acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[t]), _mm512_mul_ps(dmin, da), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(a.y + (t0 + t) * a.ldy + r, acc[t]);
}

// Packed Q6_K (matmul_packed.h), 16 rows against T tokens. Per super-block and token: 64
// vpdpbusd give sub-block s's dot products of the unsigned 6-bit q against the activations, each
// started at -32 * bsum_s (q - 32 is the weight: exact), summed as sum_s sc_s p_s in int32; then
// d * da in float. Sub-blocks are done 2 at a time per token (g and g + 2 of a half share the ql
// vectors), to keep 8 tokens' accumulators in registers.
template <int T>
void tile_q6_k_packed(const MatmulArgs& a, const uint8_t* tile, int64_t r, int64_t t0) {
  const int64_t nsb = a.n_in / 256;
  ActQ8_K act[T];
  __m512 acc[T];
  for (int t = 0; t < T; ++t) {
    act[t] = view_q8_k(a.act + (t0 + t) * a.act_stride, a.n_in);
    acc[t] = _mm512_setzero_ps();
  }
  const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
  for (int64_t ib = 0; ib < nsb; ++ib) {
    const uint8_t* q = tile + kPackedQ6KBytes * ib;
    for (int k = 0; k < 53; ++k) _mm_prefetch(reinterpret_cast<const char*>(q + kPackedPrefetchBytes + 64 * k), _MM_HINT_T0);
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h)
      for (int gp = 0; gp < 2; ++gp)      // g = gp (low nibbles) and gp + 2 (high nibbles)
        for (int half = 0; half < 2; ++half) {  // groups k of 4 elements: sub-block 8h + 2g + half
          const int s_lo = 8 * h + 2 * gp + half, s_hi = s_lo + 4;
          __m512i p[T][2];
          for (int t = 0; t < T; ++t) {
            p[t][0] = _mm512_set1_epi32(-32 * act[t].bsums[16 * ib + s_lo]);
            p[t][1] = _mm512_set1_epi32(-32 * act[t].bsums[16 * ib + s_hi]);
          }
          for (int k = 4 * half; k < 4 * half + 4; ++k) {
            const __m512i ql = _mm512_loadu_si512(q + 512 * (2 * h + gp) + 64 * k);
            const __m512i qh = _mm512_loadu_si512(q + 2048 + 512 * h + 64 * k);
            // high bits of g at bits 4, 5: qh << (4 - 2g) for g = gp, gp + 2
            const __m512i hi_lo = _mm512_and_si512(gp == 0 ? _mm512_slli_epi16(qh, 4) : _mm512_slli_epi16(qh, 2), m2);
            const __m512i hi_hi = _mm512_and_si512(gp == 0 ? qh : _mm512_srli_epi16(qh, 2), m2);
            const __m512i w_lo = _mm512_or_si512(_mm512_and_si512(ql, m4), hi_lo);
            const __m512i w_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hi_hi);
            for (int t = 0; t < T; ++t) {
              int32_t a_lo, a_hi;
              std::memcpy(&a_lo, act[t].qs + 256 * ib + 128 * h + 32 * gp + 4 * k, 4);
              std::memcpy(&a_hi, act[t].qs + 256 * ib + 128 * h + 32 * (gp + 2) + 4 * k, 4);
              p[t][0] = _mm512_dpbusd_epi32(p[t][0], w_lo, _mm512_set1_epi32(a_lo));
              p[t][1] = _mm512_dpbusd_epi32(p[t][1], w_hi, _mm512_set1_epi32(a_hi));
            }
          }
          const __m512i sc_lo = _mm512_cvtepi8_epi32(loadu128(q + 3072 + 16 * s_lo));
          const __m512i sc_hi = _mm512_cvtepi8_epi32(loadu128(q + 3072 + 16 * s_hi));
          for (int t = 0; t < T; ++t)
            isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(p[t][0], sc_lo), _mm512_mullo_epi32(p[t][1], sc_hi)));
        }
    const __m512 d = _mm512_cvtph_ps(loadu256(q + 3328));
    for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, _mm512_set1_ps(act[t].d[ib])), acc[t]);
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(a.y + (t0 + t) * a.ldy + r, acc[t]);
}

struct PackedQ6_K {};  // tag: tile_q6_k_packed

struct PackedQ4_K {};  // tag: tile_packed<PackedQ4_K, T> is tile_q4_k_packed<T>

template <class Format, int N>
void tile_packed_n(int n, const MatmulArgs& a, const uint8_t* tile, int64_t r, int64_t t0) {
  if constexpr (N > 0) {
    if (n == N) {
      if constexpr (std::is_same_v<Format, PackedQ4_K>) {
        tile_q4_k_packed<N>(a, tile, r, t0);
      } else if constexpr (std::is_same_v<Format, PackedQ6_K>) {
        tile_q6_k_packed<N>(a, tile, r, t0);
      } else {
        tile_packed<Format, N>(a, tile, r, t0);
      }
    } else {
      tile_packed_n<Format, N - 1>(n, a, tile, r, t0);
    }
  }
}

template <class Format>
void rows_packed(const MatmulArgs& a, int64_t r0, int64_t r1) {
  constexpr int kMax = 8;
  for (int64_t r = r0; r < r1; r += kPackRows) {
    const uint8_t* tile = a.w + r * a.row_bytes;
    int64_t t0 = 0;
    for (; t0 + kMax <= a.n_tokens; t0 += kMax) tile_packed_n<Format, kMax>(kMax, a, tile, r, t0);
    tile_packed_n<Format, kMax - 1>((int)(a.n_tokens - t0), a, tile, r, t0);
  }
}

}  // namespace

RowsKernel packed_rows_kernel(DType type) {
  switch (type) {
    case DType::Q8_0: return rows_packed<PackedQ8_0>;
    case DType::Q4_0: return rows_packed<PackedQ4_0>;
    case DType::MXFP4: return rows_packed<PackedMxfp4>;
    case DType::Q4_K: return rows_packed<PackedQ4_K>;
    case DType::Q6_K: return rows_packed<PackedQ6_K>;
    default: return nullptr;
  }
}

}  // namespace velocity::engine::cpu::VELOCITY_X86_NS
