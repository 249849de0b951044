// Scalar kernels for every weight type: the fallback on CPUs without AVX2 and for the types the
// SIMD files leave out (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K). Integer dot products per block
// against the quantised activations, float accumulation across blocks.
//
// Each row is walked block by block against a tile of up to kTile tokens, each block decoded
// once for the tile; a token's result is the same whatever tile it falls in.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "engine/cpu/matmul_kernels.h"
#include "engine/cpu/matmul_packed.h"

namespace velocity::engine::cpu {
namespace {

using namespace velocity::quant;

constexpr int kTile = 8;

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// --- activation quantisers ----------------------------------------------------------------------

void quantize_q8_32(const float* x, uint8_t* token, int64_t n_in, int64_t begin, int64_t end) {
  int8_t* qs = reinterpret_cast<int8_t*>(token);
  float* d = reinterpret_cast<float*>(token + round_up64(n_in));
  float* s = d + n_in / 32;
  int32_t* bias = reinterpret_cast<int32_t*>(s + n_in / 32);
  for (int64_t i0 = begin; i0 < end; i0 += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[i0 + j]));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = (int)std::nearbyint(x[i0 + j] * id);
      qs[i0 + j] = (int8_t)q;
      sum += q;
    }
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
    float amax = 0.0f;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[i0 + j]));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 16 * g; j < 16 * g + 16; ++j) {
        const int q = (int)std::nearbyint(x[i0 + j] * id);
        qs[i0 + j] = (int8_t)q;
        sum += q;
      }
      bsums[i0 / 16 + g] = (int16_t)sum;
    }
    d[i0 / 256] = amax / 127.0f;
  }
}

// --- the row x token-tile walk --------------------------------------------------------------------

// Calls tile(row, t0, n) for every row and tile of up to kTile tokens.
template <class Tile>
void for_tiles(const MatmulArgs& a, int64_t r0, int64_t r1, Tile&& tile) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTile) tile(a.w + r * a.row_bytes, r, t0, (int)std::min<int64_t>(kTile, a.n_tokens - t0));
}

// Plain formats: load(row, i) -> float. Float accumulation in 8 interleaved partial sums (so the
// compiler may vectorise without changing the order), summed at the end.
template <class Load>
void rows_plain(const MatmulArgs& a, int64_t r0, int64_t r1, Load load) {
  for_tiles(a, r0, r1, [&](const uint8_t* row, int64_t r, int64_t t0, int n) {
    for (int t = 0; t < n; ++t) {
      const float* x = a.x + (t0 + t) * a.ldx;
      float part[8] = {};
      int64_t i = 0;
      for (; i + 8 <= a.n_in; i += 8)
        for (int k = 0; k < 8; ++k) part[k] += load(row, i + k) * x[i + k];
      float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      for (; i < a.n_in; ++i) sum += load(row, i) * x[i];
      a.y[(t0 + t) * a.ldy + r] = sum;
    }
  });
}

// 32-element formats: block(row, ib, lv) decodes block ib into signed levels lv[32] and returns
// {scale, min} with w = scale * lv + min (min 0 for the symmetric ones).
struct Scales {
  float scale, min;
};
template <int kBlockBytes, class Decode>
void rows_q32(const MatmulArgs& a, int64_t r0, int64_t r1, Decode decode) {
  const int64_t nb = a.n_in / 32;
  for_tiles(a, r0, r1, [&](const uint8_t* row, int64_t r, int64_t t0, int n) {
    float acc[kTile] = {};
    int8_t lv[32];
    for (int64_t ib = 0; ib < nb; ++ib) {
      const Scales sc = decode(row + ib * kBlockBytes, lv);
      for (int t = 0; t < n; ++t) {
        const ActQ8_32 act = view_q8_32(a.act + (t0 + t) * a.act_stride, a.n_in);
        const int8_t* q = act.qs + ib * 32;
        int sum = 0;
        for (int j = 0; j < 32; ++j) sum += lv[j] * q[j];
        acc[t] += sc.scale * act.d[ib] * (float)sum + sc.min * act.s[ib];
      }
    }
    for (int t = 0; t < n; ++t) a.y[(t0 + t) * a.ldy + r] = acc[t];
  });
}

Scales decode_q8_0(const uint8_t* b, int8_t* lv) {
  std::memcpy(lv, b + 2, 32);
  return {fp16_to_fp32(load_u16(b)), 0.0f};
}
Scales decode_q4_0(const uint8_t* b, int8_t* lv) {
  for (int j = 0; j < 16; ++j) {
    lv[j] = (int8_t)((b[2 + j] & 0x0F) - 8);
    lv[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
  }
  return {fp16_to_fp32(load_u16(b)), 0.0f};
}
Scales decode_q4_1(const uint8_t* b, int8_t* lv) {
  for (int j = 0; j < 16; ++j) {
    lv[j] = (int8_t)(b[4 + j] & 0x0F);
    lv[j + 16] = (int8_t)(b[4 + j] >> 4);
  }
  return {fp16_to_fp32(load_u16(b)), fp16_to_fp32(load_u16(b + 2))};
}
// Q5: low nibbles at qs, bit 4 of element j is bit j of the 32-bit qh.
void unpack_q5(const uint8_t* qh_bytes, const uint8_t* qs, int offset, int8_t* lv) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  for (int j = 0; j < 16; ++j) {
    lv[j] = (int8_t)(((qs[j] & 0x0F) | ((qh >> j) & 1) << 4) - offset);
    lv[j + 16] = (int8_t)(((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - offset);
  }
}
Scales decode_q5_0(const uint8_t* b, int8_t* lv) {
  unpack_q5(b + 2, b + 6, 16, lv);
  return {fp16_to_fp32(load_u16(b)), 0.0f};
}
Scales decode_q5_1(const uint8_t* b, int8_t* lv) {
  unpack_q5(b + 4, b + 8, 0, lv);
  return {fp16_to_fp32(load_u16(b)), fp16_to_fp32(load_u16(b + 2))};
}
Scales decode_mxfp4(const uint8_t* b, int8_t* lv) {
  for (int j = 0; j < 16; ++j) {
    lv[j] = kE2M1Doubled[b[1 + j] & 0x0F];
    lv[j + 16] = kE2M1Doubled[b[1 + j] >> 4];
  }
  return {e8m0_to_fp32_half(b[0]), 0.0f};
}

// --- K-quants: a super-block decoded to signed levels and integer sub-block scales/mins, with
// w = d * sc[s] * lv - dmin * m[s] ---------------------------------------------------------------

struct DecodedK {
  int sub;        // elements per sub-block: 16 or 32
  int8_t lv[256];
  int sc[16];
  int m[16];      // 0 for the symmetric formats
  float d, dmin;
};

void unpack_2bit(const uint8_t* qs, int8_t* lv) {
  for (int h = 0; h < 2; ++h)
    for (int shift = 0; shift < 4; ++shift)
      for (int l = 0; l < 32; ++l) lv[128 * h + 32 * shift + l] = (int8_t)((qs[32 * h + l] >> (2 * shift)) & 3);
}
void scale_min_k4(int j, const uint8_t* packed, int* sc, int* m) {
  if (j < 4) {
    *sc = packed[j] & 63;
    *m = packed[j + 4] & 63;
  } else {
    *sc = (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4);
    *m = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}
void unpack_nibbles_k(const uint8_t* qs, int8_t* lv) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      lv[64 * c + l] = (int8_t)(qs[32 * c + l] & 0x0F);
      lv[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
    }
}

void decode_q2_k(const uint8_t* p, DecodedK& k) {
  const auto b = load_block<BlockQ2_K>(p, 0);
  k.sub = 16;
  unpack_2bit(b.qs, k.lv);
  for (int s = 0; s < 16; ++s) {
    k.sc[s] = b.scales[s] & 0x0F;
    k.m[s] = b.scales[s] >> 4;
  }
  k.d = fp16_to_fp32(b.d);
  k.dmin = fp16_to_fp32(b.dmin);
}
void decode_q3_k(const uint8_t* p, DecodedK& k) {
  const auto b = load_block<BlockQ3_K>(p, 0);
  k.sub = 16;
  unpack_2bit(b.qs, k.lv);
  for (int i = 0; i < 256; ++i)
    if (!((b.hmask[i % 32] >> (i / 32)) & 1)) k.lv[i] = (int8_t)(k.lv[i] - 4);
  for (int s = 0; s < 16; ++s) {
    const int low = s < 8 ? b.scales[s] & 0x0F : b.scales[s - 8] >> 4;
    const int high = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    k.sc[s] = (low | high << 4) - 32;
    k.m[s] = 0;
  }
  k.d = fp16_to_fp32(b.d);
  k.dmin = 0.0f;
}
void decode_q4_k(const uint8_t* p, DecodedK& k) {
  const auto b = load_block<BlockQ4_K>(p, 0);
  k.sub = 32;
  unpack_nibbles_k(b.qs, k.lv);
  for (int s = 0; s < 8; ++s) scale_min_k4(s, b.scales, &k.sc[s], &k.m[s]);
  k.d = fp16_to_fp32(b.d);
  k.dmin = fp16_to_fp32(b.dmin);
}
void decode_q5_k(const uint8_t* p, DecodedK& k) {
  const auto b = load_block<BlockQ5_K>(p, 0);
  k.sub = 32;
  unpack_nibbles_k(b.qs, k.lv);
  for (int i = 0; i < 256; ++i)
    if ((b.qh[i % 32] >> (i / 32)) & 1) k.lv[i] = (int8_t)(k.lv[i] + 16);
  for (int s = 0; s < 8; ++s) scale_min_k4(s, b.scales, &k.sc[s], &k.m[s]);
  k.d = fp16_to_fp32(b.d);
  k.dmin = fp16_to_fp32(b.dmin);
}
void decode_q6_k(const uint8_t* p, DecodedK& k) {
  const auto b = load_block<BlockQ6_K>(p, 0);
  k.sub = 16;
  for (int h = 0; h < 2; ++h)
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) {
        const uint8_t low_byte = b.ql[64 * h + 32 * (g & 1) + l];
        const int low = g < 2 ? low_byte & 0x0F : low_byte >> 4;
        const int high = (b.qh[32 * h + l] >> (2 * g)) & 3;
        k.lv[128 * h + 32 * g + l] = (int8_t)((low | high << 4) - 32);
      }
  for (int s = 0; s < 16; ++s) {
    k.sc[s] = b.scales[s];
    k.m[s] = 0;
  }
  k.d = fp16_to_fp32(b.d);
  k.dmin = 0.0f;
}

template <int kBlockBytes>
void rows_k(const MatmulArgs& a, int64_t r0, int64_t r1, void (*decode)(const uint8_t*, DecodedK&)) {
  const int64_t nb = a.n_in / 256;
  for_tiles(a, r0, r1, [&](const uint8_t* row, int64_t r, int64_t t0, int n) {
    float acc[kTile] = {};
    DecodedK k;
    for (int64_t ib = 0; ib < nb; ++ib) {
      decode(row + ib * kBlockBytes, k);
      const int n_sub = 256 / k.sub;
      for (int t = 0; t < n; ++t) {
        const ActQ8_K act = view_q8_k(a.act + (t0 + t) * a.act_stride, a.n_in);
        const int8_t* q = act.qs + ib * 256;
        const int16_t* bs = act.bsums + ib * 16;
        int32_t sum_scaled = 0, sum_min = 0;
        for (int s = 0; s < n_sub; ++s) {
          int32_t dot = 0;
          for (int i = s * k.sub; i < (s + 1) * k.sub; ++i) dot += k.lv[i] * q[i];
          sum_scaled += k.sc[s] * dot;
          const int32_t xsum = k.sub == 16 ? bs[s] : bs[2 * s] + bs[2 * s + 1];
          sum_min += k.m[s] * xsum;
        }
        acc[t] += act.d[ib] * (k.d * (float)sum_scaled - k.dmin * (float)sum_min);
      }
    }
    for (int t = 0; t < n; ++t) a.y[(t0 + t) * a.ldy + r] = acc[t];
  });
}

}  // namespace

RowsKernel scalar_rows_kernel(DType type) {
  switch (type) {
    case DType::F32:
      return [](const MatmulArgs& a, int64_t r0, int64_t r1) {
        rows_plain(a, r0, r1, [](const uint8_t* row, int64_t i) {
          float v;
          std::memcpy(&v, row + 4 * i, 4);
          return v;
        });
      };
    case DType::F16:
      return [](const MatmulArgs& a, int64_t r0, int64_t r1) {
        rows_plain(a, r0, r1, [](const uint8_t* row, int64_t i) { return fp16_to_fp32(load_u16(row + 2 * i)); });
      };
    case DType::BF16:
      return [](const MatmulArgs& a, int64_t r0, int64_t r1) {
        rows_plain(a, r0, r1, [](const uint8_t* row, int64_t i) { return bf16_to_fp32(load_u16(row + 2 * i)); });
      };
    case DType::Q8_0: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_q32<34>(a, r0, r1, decode_q8_0); };
    case DType::Q4_0: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_q32<18>(a, r0, r1, decode_q4_0); };
    case DType::Q4_1: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_q32<20>(a, r0, r1, decode_q4_1); };
    case DType::Q5_0: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_q32<22>(a, r0, r1, decode_q5_0); };
    case DType::Q5_1: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_q32<24>(a, r0, r1, decode_q5_1); };
    case DType::MXFP4: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_q32<17>(a, r0, r1, decode_mxfp4); };
    case DType::Q2_K: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_k<84>(a, r0, r1, decode_q2_k); };
    case DType::Q3_K: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_k<110>(a, r0, r1, decode_q3_k); };
    case DType::Q4_K: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_k<144>(a, r0, r1, decode_q4_k); };
    case DType::Q5_K: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_k<176>(a, r0, r1, decode_q5_k); };
    case DType::Q6_K: return [](const MatmulArgs& a, int64_t r0, int64_t r1) { rows_k<210>(a, r0, r1, decode_q6_k); };
    default: return nullptr;
  }
}

// Packed weights (matmul_packed.h), one row and token at a time: the same exact integers per
// block as the SIMD kernels, float accumulation across blocks.
template <DType kType>
void rows_packed(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.n_in / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* tile = a.w + (r / kPackRows) * kPackRows * a.row_bytes;
    const int lane = (int)(r % kPackRows);
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const ActQ8_32 act = view_q8_32(a.act + t * a.act_stride, a.n_in);
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t sum = 0;
        for (int e = 0; e < 32; ++e) sum += packed_weight(kType, tile, b, lane, e) * act.qs[32 * b + e];
        acc += (float)sum * (packed_scale(kType, tile, nb, b, lane) * act.d[b]);
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

void rows_q4_k_packed(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nsb = a.n_in / 256;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* tile = a.w + (r / kPackRows) * kPackRows * a.row_bytes;
    const int lane = (int)(r % kPackRows);
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const ActQ8_K act = view_q8_k(a.act + t * a.act_stride, a.n_in);
      float acc = 0.0f;
      for (int64_t b = 0; b < nsb; ++b) {
        int32_t isum = 0, msum = 0;
        for (int s = 0; s < 8; ++s) {
          int sc, m;
          packed_q4_k_scale_min(tile, b, lane, s, sc, m);
          int32_t p = 0;
          for (int e = 0; e < 32; ++e) p += packed_q4_k_quant(tile, b, lane, s, e) * act.qs[256 * b + 32 * s + e];
          isum += sc * p;
          msum += m * (act.bsums[16 * b + 2 * s] + act.bsums[16 * b + 2 * s + 1]);
        }
        acc += (float)isum * (packed_q4_k_fp16(tile, b, lane, 0) * act.d[b]) - (float)msum * (packed_q4_k_fp16(tile, b, lane, 1) * act.d[b]);
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

void rows_q6_k_packed(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t nsb = a.n_in / 256;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* tile = a.w + (r / kPackRows) * kPackRows * a.row_bytes;
    const int lane = (int)(r % kPackRows);
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const ActQ8_K act = view_q8_k(a.act + t * a.act_stride, a.n_in);
      float acc = 0.0f;
      for (int64_t b = 0; b < nsb; ++b) {
        const float d = fp16_to_fp32(load_u16(tile + kPackedQ6KBytes * b + 3328 + 2 * lane));
        int32_t isum = 0;
        for (int s = 0; s < 16; ++s) {
          int32_t p = 0;
          for (int e = 16 * s; e < 16 * s + 16; ++e) p += packed_q6_k_weight(tile, b, lane, e) * act.qs[256 * b + e];
          isum += (int8_t)tile[kPackedQ6KBytes * b + 3072 + 16 * s + lane] * p;
        }
        acc += (float)isum * (d * act.d[b]);
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

RowsKernel scalar_packed_rows_kernel(DType type) {
  switch (type) {
    case DType::Q6_K: return rows_q6_k_packed;
    case DType::Q4_K: return rows_q4_k_packed;
    case DType::Q8_0: return rows_packed<DType::Q8_0>;
    case DType::Q4_0: return rows_packed<DType::Q4_0>;
    case DType::MXFP4: return rows_packed<DType::MXFP4>;
    default: return nullptr;
  }
}

QuantizeActFn scalar_quantizer(ActKind kind) {
  switch (kind) {
    case ActKind::Q8_32: return quantize_q8_32;
    case ActKind::Q8_K: return quantize_q8_k;
    case ActKind::F32: return nullptr;
  }
  return nullptr;
}

}  // namespace velocity::engine::cpu
