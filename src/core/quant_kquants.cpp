// K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): super-blocks of 256 elements split into sub-blocks
// of 16 or 32, each with its own small integer scale (and for Q2_K/Q4_K/Q5_K a min), and those
// sub-block scales quantised again against one fp16 super-block scale d (and dmin):
//
//   format  sub-block  level q        element value                   sub-block scale bits
//   Q2_K    16         0..3           d*sc*q - dmin*m                 4 + 4 (sc, m)
//   Q3_K    16         -4..3          d*sc*q                          6 (signed, biased by 32)
//   Q4_K    32         0..15          d*sc*q - dmin*m                 6 + 6 (12-byte packing)
//   Q5_K    32         0..31          d*sc*q - dmin*m                 6 + 6
//   Q6_K    16         -32..31        d*sc*q                          8 (signed)
//
// Quantisation is the reference algorithm of ggml-quants.c (quantize_row_q*_K_ref, no importance
// matrix), kept step for step and with the same float expression order, so that a row
// quantises to the same bytes as in ggml:
//   1. per sub-block, search a float scale (and min) with make_qkx2_quants (Q2_K, Q4_K, Q5_K:
//      asymmetric, scan of candidate scales, least-squares refit), make_q3_quants (Q3_K) or
//      make_qx_quants (Q6_K: symmetric, scan of candidate scales, least-squares refit);
//   2. quantise the sub-block scales (and mins) against the largest one, with nearest_int;
//   3. round the super-block scale to fp16;
//   4. re-quantise every element to the nearest level of the *stored* scales, so the levels
//      match what dequantisation will use (sub-blocks whose stored scale is 0 keep the levels
//      from step 1; they decode to -dmin*m or 0 whatever the levels are).
//
// Inputs must be finite. dot: per super-block, float sums of q*x per sub-block, scaled and
// summed in float; super-blocks summed in double.
#include <algorithm>
#include <cmath>

#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace velocity::quant {
namespace {

// A sub-block whose largest magnitude is below this is treated as all zeros (ggml GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// --- scale searches (ggml-quants.c) -----------------------------------------------------------

// Symmetric search for Q6_K (ggml make_qx_quants with rmse_type 1, no importance weights).
// x (n,) -> levels L (n,) in 0..2*nmax-1 (level - nmax is the signed quant) and returns the scale
// s such that x ~ s * (L - nmax). Weights w_i = x_i^2 favour the large elements. For each of 19
// candidate inverse scales -(nmax + 0.1k)/max (k = -9..9; max: the signed value of largest
// magnitude, so that it maps to -nmax, the end of the range with no positive twin), the levels are
// rounded and the least-squares scale for them is sum(w x l) / sum(w l^2); the weighted error
// is sum(w x^2) - sum(w x l)^2 / sum(w l^2), so the candidate with the largest
// sum(w x l)^2 / sum(w l^2) wins.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  auto level = [nmax](float v) { return std::clamp(nearest_int(v), -nmax, nmax - 1); };
  float iscale = (float)(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = level(iscale * x[i]);
    L[i] = (int8_t)(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * (float)l;
    suml2 += w * (float)l * (float)l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -((float)nmax + 0.1f * (float)is) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = level(iscale * x[i]);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * (float)l;
      suml2 += w * (float)l * (float)l;
    }
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = (int8_t)(nmax + level(iscale * x[i]));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Symmetric search for Q3_K (ggml make_q3_quants with do_rmse): start from the levels of
// -nmax/max, then up to 5 passes of coordinate descent: move one level at a time to the value
// that is optimal for it given the others (x_i * sum(w l^2) / sum(w x l) with element i left
// out), keep the move if the weighted error goes down. Weights w = x^2. Levels returned in
// L (n,) as l + nmax (0..2*nmax-1); returns the scale. As in ggml the descent only runs while
// sum(w x l) > 0, which happens when the largest-magnitude element is negative.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  auto clamp_level = [nmax](int l) { return std::clamp(l, -nmax, nmax - 1); };
  const float iscale = (float)(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_level(nearest_int(iscale * x[i]));
    L[i] = (int8_t)l;
    const float w = x[i] * x[i];
    sumlx += w * x[i] * (float)l;
    suml2 += w * (float)l * (float)l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * (float)L[i];
      if (slx > 0.0f) {
        float sl2 = suml2 - w * (float)L[i] * (float)L[i];
        const int new_l = clamp_level(nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * (float)new_l;
          sl2 += w * (float)new_l * (float)new_l;
          // error goes down iff slx^2/sl2 > sumlx^2/suml2 (cross-multiplied, sl2 > 0)
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = (int8_t)new_l;
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric search for Q2_K/Q4_K/Q5_K (ggml make_qkx2_quants): x ~ scale * L + min with L in
// 0..nmax and min <= 0. Starts from the min/max grid (min clamped to <= 0), then tries the
// inverse scales (nmax + rmin + rdelta*k) / (max - min), k = 0..nstep; for each, rounds the
// levels and solves the weighted least-squares fit of (scale, min) for them (min forced to 0 if
// the fit wants it positive), keeping the fit with the smallest weighted error (squared, or
// absolute with use_mad). Note that min is updated as better fits are found and the later
// candidates are measured from it, as in ggml. Writes the levels to L (n,) and -min (>= 0) to
// *neg_min; returns the scale.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* neg_min, uint8_t* Laux,
                       float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    std::fill(L, L + n, uint8_t{0});
    *neg_min = -min;
    return 0.0f;
  }
  auto level = [nmax](float v) { return std::clamp(nearest_int(v), 0, nmax); };
  auto error_of = [use_mad](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };

  float iscale = (float)nmax / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    L[i] = (uint8_t)level(iscale * (x[i] - min));
    best_error += weights[i] * error_of(scale * (float)L[i] + min - x[i]);
  }
  if (nstep < 1) {
    *neg_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = level(iscale * (x[i] - min));
      Laux[i] = (uint8_t)l;
      const float w = weights[i];
      sum_l += w * (float)l;
      sum_l2 += w * (float)l * (float)l;
      sum_xl += w * (float)l * x[i];
    }
    // normal equations of min_{s,m} sum w (s l + m - x)^2
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) cur_error += weights[i] * error_of(this_scale * (float)Laux[i] + this_min - x[i]);
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

// --- 6-bit scale packing shared by Q4_K and Q5_K -----------------------------------------------

// 8 (scale, min) pairs of 6 bits in 12 bytes. Pairs 0..3: low 6 bits of bytes j (scale) and
// j+4 (min). Pairs 4..7: low nibbles in byte j+4 (scale low, min high), top 2 bits in the top
// 2 bits of bytes j-4 (scale) and j (min). (ggml get_scale_min_k4.)
void scale_min_k4(int j, const uint8_t* packed, int* scale, int* min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4);
    *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

// Inverse of scale_min_k4 for 8 pairs of values in 0..63.
void pack_scale_min_k4(const uint8_t* scales, const uint8_t* mins, uint8_t* packed) {
  for (int j = 0; j < 4; ++j) {
    packed[j] = scales[j];
    packed[j + 4] = mins[j];
  }
  for (int j = 4; j < 8; ++j) {
    packed[j + 4] = (uint8_t)((scales[j] & 0x0F) | (mins[j] & 0x0F) << 4);
    packed[j - 4] |= (uint8_t)((scales[j] >> 4) << 6);
    packed[j] |= (uint8_t)((mins[j] >> 4) << 6);
  }
}

// Q3_K's 16 signed 6-bit scales (stored biased by 32) in 12 bytes: low nibbles in bytes 0..7
// (sub-blocks 0..7 low nibble, 8..15 high nibble), top 2 bits in bytes 8..11: sub-block s at
// bits 2*(s/4) of byte 8 + s%4.
int q3_scale(int s, const uint8_t* packed) {
  const int low = s < 8 ? packed[s] & 0x0F : packed[s - 8] >> 4;
  const int high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low | high << 4) - 32;
}

// --- one decoded super-block: integer levels and per-sub-block scale / min ----------------------

// y[i] = scale[i / sub] * q[i] - min[i / sub], computed in float in that order (as ggml does).
struct Decoded {
  int sub = 16;             // elements per sub-block
  int8_t q[kQK_K];          // signed or unsigned level per element
  float scale[kQK_K / 16];  // d * sc per sub-block
  float min[kQK_K / 16];    // dmin * m per sub-block (0 for the symmetric formats)
};

// Low 2-bit fields of Q2_K/Q3_K: 128-element halves; byte l of a 32-byte group holds elements
// l, l+32, l+64, l+96 of its half in bit pairs 0, 2, 4, 6.
void unpack_2bit(const uint8_t* qs, int8_t* q) {
  for (int h = 0; h < 2; ++h)
    for (int shift = 0; shift < 4; ++shift)
      for (int l = 0; l < 32; ++l) q[128 * h + 32 * shift + l] = (int8_t)((qs[32 * h + l] >> (2 * shift)) & 3);
}

void decode(const BlockQ2_K& b, Decoded& out) {
  out.sub = 16;
  unpack_2bit(b.qs, out.q);
  const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
  for (int s = 0; s < 16; ++s) {
    out.scale[s] = d * (float)(b.scales[s] & 0x0F);
    out.min[s] = dmin * (float)(b.scales[s] >> 4);
  }
}

void decode(const BlockQ3_K& b, Decoded& out) {
  out.sub = 16;
  unpack_2bit(b.qs, out.q);
  // high bit of element i: bit i/32 of hmask[i%32]; a clear bit means "subtract 4"
  for (int i = 0; i < kQK_K; ++i)
    if (!((b.hmask[i % 32] >> (i / 32)) & 1)) out.q[i] = (int8_t)(out.q[i] - 4);
  const float d = fp16_to_fp32(b.d);
  for (int s = 0; s < 16; ++s) {
    out.scale[s] = d * (float)q3_scale(s, b.scales);
    out.min[s] = 0.0f;
  }
}

// Q4_K/Q5_K low nibbles: 64-element chunks c; byte l of chunk c holds element 64c+l (low nibble)
// and 64c+32+l (high nibble).
void unpack_nibbles_k(const uint8_t* qs, int8_t* q) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = (int8_t)(qs[32 * c + l] & 0x0F);
      q[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
    }
}

void decode_scale_min_k4(uint16_t d16, uint16_t dmin16, const uint8_t* packed, Decoded& out) {
  out.sub = 32;
  const float d = fp16_to_fp32(d16), dmin = fp16_to_fp32(dmin16);
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    scale_min_k4(s, packed, &sc, &m);
    out.scale[s] = d * (float)sc;
    out.min[s] = dmin * (float)m;
  }
}

void decode(const BlockQ4_K& b, Decoded& out) {
  unpack_nibbles_k(b.qs, out.q);
  decode_scale_min_k4(b.d, b.dmin, b.scales, out);
}

void decode(const BlockQ5_K& b, Decoded& out) {
  unpack_nibbles_k(b.qs, out.q);
  // bit 4 of element i: bit i/32 of qh[i%32]
  for (int i = 0; i < kQK_K; ++i)
    if ((b.qh[i % 32] >> (i / 32)) & 1) out.q[i] = (int8_t)(out.q[i] + 16);
  decode_scale_min_k4(b.d, b.dmin, b.scales, out);
}

void decode(const BlockQ6_K& b, Decoded& out) {
  out.sub = 16;
  // 128-element halves h; within a half, groups g = 0..3 of 32. Low 4 bits: ql byte
  // 64h + 32*(g&1) + l, low nibble for g < 2, high nibble for g >= 2. High 2 bits: bit pair g of
  // qh byte 32h + l.
  for (int h = 0; h < 2; ++h)
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) {
        const uint8_t low_byte = b.ql[64 * h + 32 * (g & 1) + l];
        const int low = g < 2 ? low_byte & 0x0F : low_byte >> 4;
        const int high = (b.qh[32 * h + l] >> (2 * g)) & 3;
        out.q[128 * h + 32 * g + l] = (int8_t)((low | high << 4) - 32);
      }
  const float d = fp16_to_fp32(b.d);
  for (int s = 0; s < 16; ++s) {
    out.scale[s] = d * (float)b.scales[s];
    out.min[s] = 0.0f;
  }
}

template <class Block>
void dequantize_k(const void* q, float* y, int64_t n) {
  Decoded dec;
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    decode(load_block<Block>(q, ib), dec);
    float* yb = y + ib * kQK_K;
    for (int i = 0; i < kQK_K; ++i) yb[i] = dec.scale[i / dec.sub] * (float)dec.q[i] - dec.min[i / dec.sub];
  }
}

template <class Block>
float dot_k(const void* w, const float* x, int64_t n) {
  Decoded dec;
  double total = 0.0;
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    decode(load_block<Block>(w, ib), dec);
    const float* xb = x + ib * kQK_K;
    float block_sum = 0.0f;
    for (int s0 = 0; s0 < kQK_K; s0 += dec.sub) {
      // sum_i (scale q_i - min) x_i = scale * sum q_i x_i - min * sum x_i
      float sum_qx = 0.0f, sum_x = 0.0f;
      for (int i = s0; i < s0 + dec.sub; ++i) {
        sum_qx += (float)dec.q[i] * xb[i];
        sum_x += xb[i];
      }
      block_sum += dec.scale[s0 / dec.sub] * sum_qx - dec.min[s0 / dec.sub] * sum_x;
    }
    total += block_sum;
  }
  return (float)total;
}

// Pack Q2_K/Q3_K 2-bit levels (L in 0..3) into qs, the inverse of unpack_2bit.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* Lh = L + 128 * h;
      qs[32 * h + l] = (uint8_t)(Lh[l] | Lh[l + 32] << 2 | Lh[l + 64] << 4 | Lh[l + 96] << 6);
    }
}

// Weights of the Q4_K/Q5_K searches: rms of the sub-block plus |x| (ggml's choice without an
// importance matrix), so large elements count more without the small ones being ignored.
void rms_plus_abs_weights(const float* x, float* weights) {
  float sum_x2 = 0.0f;
  for (int l = 0; l < 32; ++l) sum_x2 += x[l] * x[l];
  const float av_x = std::sqrt(sum_x2 / 32.0f);
  for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[l]);
}

// Steps 1-4 of the header for Q4_K (nmax 15) and Q5_K (nmax 31): per-sub-block scales and
// mins as 6-bit integers against d = max_scale/63, dmin = max_min/63; levels L (256,) out.
template <class Block>
void quantize_scales_k4(const float* x, int nmax, float rmin, float rdelta, int nstep, Block& b, uint8_t* L) {
  float scales[8], mins[8], weights[32];
  uint8_t Laux[32];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    rms_plus_abs_weights(x + 32 * j, weights);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  uint8_t ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    // ggml stores nearest_int into a uint8_t before the clamp; kept for identical bytes.
    ls[j] = std::min<uint8_t>(63, (uint8_t)nearest_int(inv_scale * scales[j]));
    lm[j] = std::min<uint8_t>(63, (uint8_t)nearest_int(inv_min * mins[j]));
  }
  pack_scale_min_k4(ls, lm, b.scales);
  b.d = fp32_to_fp16(max_scale / 63.0f);
  b.dmin = fp32_to_fp16(max_min / 63.0f);

  // step 4: nearest level for the stored scales
  const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    scale_min_k4(j, b.scales, &sc, &m);
    const float dl = d * (float)sc;
    if (dl == 0.0f) continue;
    const float ml = dmin * (float)m;
    for (int i = 32 * j; i < 32 * j + 32; ++i) L[i] = (uint8_t)std::clamp(nearest_int((x[i] + ml) / dl), 0, nmax);
  }
}

}  // namespace

// --- Q2_K -------------------------------------------------------------------------------------

void quantize_q2_K(const float* x, void* q, int64_t n) {
  constexpr float kScaleLevels = 15.0f;  // 4-bit sub-block scales and mins
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    const float* xb = x + ib * kQK_K;
    BlockQ2_K b{};
    uint8_t L[kQK_K], Laux[16];
    float weights[16], scales[16], mins[16];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(xb[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, xb + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    if (max_scale > 0.0f) {
      const float iscale = kScaleLevels / max_scale;
      for (int j = 0; j < 16; ++j) b.scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
      b.d = fp32_to_fp16(max_scale / kScaleLevels);
    }
    if (max_min > 0.0f) {
      const float iscale = kScaleLevels / max_min;
      for (int j = 0; j < 16; ++j) b.scales[j] = (uint8_t)(b.scales[j] | nearest_int(iscale * mins[j]) << 4);
      b.dmin = fp32_to_fp16(max_min / kScaleLevels);
    }
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * (float)(b.scales[j] & 0x0F);
      if (dl == 0.0f) continue;
      const float ml = dmin * (float)(b.scales[j] >> 4);
      for (int i = 16 * j; i < 16 * j + 16; ++i) L[i] = (uint8_t)std::clamp(nearest_int((xb[i] + ml) / dl), 0, 3);
    }
    pack_2bit(L, b.qs);
    store_block(q, ib, b);
  }
}

void dequantize_q2_K(const void* q, float* y, int64_t n) { dequantize_k<BlockQ2_K>(q, y, n); }
float dot_q2_K(const void* w, const float* x, int64_t n) { return dot_k<BlockQ2_K>(w, x, n); }

// --- Q3_K -------------------------------------------------------------------------------------

void quantize_q3_K(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    const float* xb = x + ib * kQK_K;
    BlockQ3_K b{};
    int8_t L[kQK_K];
    float scales[16];
    float max_scale = 0.0f, amax = 0.0f;  // max_scale: the signed scale of largest magnitude
    for (int j = 0; j < 16; ++j) {
      scales[j] = make_q3_quants(16, 4, xb + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_scale != 0.0f) {
      // 6-bit signed sub-block scales in -32..31; the largest maps to -32 (sign folded into d)
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int l = std::clamp(nearest_int(iscale * scales[j]), -32, 31) + 32;
        if (j < 8)
          b.scales[j] = (uint8_t)(l & 0x0F);
        else
          b.scales[j - 8] = (uint8_t)(b.scales[j - 8] | (l & 0x0F) << 4);
        b.scales[8 + j % 4] = (uint8_t)(b.scales[8 + j % 4] | (l >> 4) << (2 * (j / 4)));
      }
      b.d = fp32_to_fp16(1.0f / iscale);
    }
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * (float)q3_scale(j, b.scales);
      if (dl == 0.0f) continue;
      for (int i = 16 * j; i < 16 * j + 16; ++i) L[i] = (int8_t)(std::clamp(nearest_int(xb[i] / dl), -4, 3) + 4);
    }
    // levels 0..7: bit 2 to hmask (element i: bit i/32 of byte i%32), low 2 bits to qs
    uint8_t low[kQK_K];
    for (int i = 0; i < kQK_K; ++i) {
      if (L[i] > 3) b.hmask[i % 32] = (uint8_t)(b.hmask[i % 32] | 1u << (i / 32));
      low[i] = (uint8_t)(L[i] & 3);
    }
    pack_2bit(low, b.qs);
    store_block(q, ib, b);
  }
}

void dequantize_q3_K(const void* q, float* y, int64_t n) { dequantize_k<BlockQ3_K>(q, y, n); }
float dot_q3_K(const void* w, const float* x, int64_t n) { return dot_k<BlockQ3_K>(w, x, n); }

// --- Q4_K -------------------------------------------------------------------------------------

void quantize_q4_K(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    BlockQ4_K b{};
    uint8_t L[kQK_K];
    quantize_scales_k4(x + ib * kQK_K, 15, -1.0f, 0.1f, 20, b, L);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) b.qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    store_block(q, ib, b);
  }
}

void dequantize_q4_K(const void* q, float* y, int64_t n) { dequantize_k<BlockQ4_K>(q, y, n); }
float dot_q4_K(const void* w, const float* x, int64_t n) { return dot_k<BlockQ4_K>(w, x, n); }

// --- Q5_K -------------------------------------------------------------------------------------

void quantize_q5_K(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    BlockQ5_K b{};
    uint8_t L[kQK_K];
    quantize_scales_k4(x + ib * kQK_K, 31, -0.5f, 0.1f, 15, b, L);
    for (int i = 0; i < kQK_K; ++i)
      if (L[i] > 15) b.qh[i % 32] = (uint8_t)(b.qh[i % 32] | 1u << (i / 32));  // bit 4 of element i
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b.qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 0x0F) | (L[64 * c + 32 + l] & 0x0F) << 4);
    store_block(q, ib, b);
  }
}

void dequantize_q5_K(const void* q, float* y, int64_t n) { dequantize_k<BlockQ5_K>(q, y, n); }
float dot_q5_K(const void* w, const float* x, int64_t n) { return dot_k<BlockQ5_K>(w, x, n); }

// --- Q6_K -------------------------------------------------------------------------------------

void quantize_q6_K(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    const float* xb = x + ib * kQK_K;
    BlockQ6_K b{};  // an all-zero block is the encoding of a zero super-block
    int8_t L[kQK_K];
    float scales[16];
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int j = 0; j < 16; ++j) {
      scales[j] = make_qx_quants(16, 32, xb + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      store_block(q, ib, b);
      continue;
    }
    // 8-bit signed sub-block scales; the largest maps to -128 (sign folded into d)
    const float iscale = -128.0f / max_scale;
    b.d = fp32_to_fp16(1.0f / iscale);
    for (int j = 0; j < 16; ++j) b.scales[j] = (int8_t)std::min(127, nearest_int(iscale * scales[j]));
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * (float)b.scales[j];
      if (dl == 0.0f) continue;
      for (int i = 16 * j; i < 16 * j + 16; ++i) L[i] = (int8_t)(std::clamp(nearest_int(xb[i] / dl), -32, 31) + 32);
    }
    // levels 0..63, layout as in decode(BlockQ6_K)
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const int8_t* Lh = L + 128 * h;
        b.ql[64 * h + l] = (uint8_t)((Lh[l] & 0x0F) | (Lh[l + 64] & 0x0F) << 4);
        b.ql[64 * h + 32 + l] = (uint8_t)((Lh[l + 32] & 0x0F) | (Lh[l + 96] & 0x0F) << 4);
        b.qh[32 * h + l] =
            (uint8_t)(Lh[l] >> 4 | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
      }
    store_block(q, ib, b);
  }
}

void dequantize_q6_K(const void* q, float* y, int64_t n) { dequantize_k<BlockQ6_K>(q, y, n); }
float dot_q6_K(const void* w, const float* x, int64_t n) { return dot_k<BlockQ6_K>(w, x, n); }

}  // namespace velocity::quant
