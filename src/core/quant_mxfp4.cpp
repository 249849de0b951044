// MXFP4 (OCP Microscaling FP4), as GGUF stores it: blocks of 32 elements, one E8M0 exponent byte
// e (scale 2^(e-127)) and 32 E2M1 codes, element j in the low nibble of qs[j] and element j+16
// in the high nibble (the Q4_0 order).
//
// Quantisation is ggml's quantize_row_mxfp4_ref, which is the OCP rule:
//   shared exponent  E = floor(log2(amax)) - 2      (2 = the largest E2M1 exponent; 6 = 1.5*2^2)
//   e = E + 127, code = the E2M1 value nearest x / 2^E (first code on ties)
// so amax / 2^E lies in [4, 8): the largest element lands on 4 or 6, or is clipped to 6 when it
// exceeds 6 (values in (6, 8) * 2^E lose up to 2 * 2^E). The exponent comes from log2f like
// ggml's, so a row quantises to the same bytes as ggml on the same libm. Exponents below the
// E8M0 range (amax < 2^-125) clamp to e = 0 instead of wrapping. An all-zero block gets e = 0
// and codes 0.
//
// Inputs must be finite. dot: float accumulation inside a block, double across blocks.
#include <algorithm>
#include <cmath>

#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace velocity::quant {
namespace {

// The code whose value (doubled table * half scale) is nearest x; the first one on ties, as in
// ggml. Each half of the table grows in magnitude, so a tie goes to the smaller magnitude, and
// zero is always code 0 (+0), never code 8 (-0).
uint8_t nearest_e2m1(float x, float half_scale) {
  uint8_t best = 0;
  float best_err = std::fabs(kE2M1Doubled[0] * half_scale - x);
  for (uint8_t code = 1; code < 16; ++code) {
    const float err = std::fabs(kE2M1Doubled[code] * half_scale - x);
    if (err < best_err) {
      best = code;
      best_err = err;
    }
  }
  return best;
}

uint8_t shared_exponent(float amax) {
  if (!(amax > 0.0f)) return 0;
  const float e = std::floor(std::log2(amax)) - 2.0f + 127.0f;
  return (uint8_t)std::clamp(e, 0.0f, 254.0f);  // amax <= FLT_MAX keeps e <= 252
}

}  // namespace

void quantize_mxfp4(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + ib * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    BlockMxfp4 b;
    b.e = shared_exponent(amax);
    const float half_scale = e8m0_to_fp32_half(b.e);
    for (int j = 0; j < kQK / 2; ++j)
      b.qs[j] = (uint8_t)(nearest_e2m1(xb[j], half_scale) | nearest_e2m1(xb[j + kQK / 2], half_scale) << 4);
    store_block(q, ib, b);
  }
}

void dequantize_mxfp4(const void* q, float* y, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockMxfp4>(q, ib);
    const float half_scale = e8m0_to_fp32_half(b.e);
    float* yb = y + ib * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      yb[j] = kE2M1Doubled[b.qs[j] & 0x0F] * half_scale;
      yb[j + kQK / 2] = kE2M1Doubled[b.qs[j] >> 4] * half_scale;
    }
  }
}

float dot_mxfp4(const void* w, const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockMxfp4>(w, ib);
    const float* xb = x + ib * kQK;
    float sum = 0.0f;  // sum_j (2 * E2M1_j) x_j; the half scale is applied once
    for (int j = 0; j < kQK / 2; ++j)
      sum += kE2M1Doubled[b.qs[j] & 0x0F] * xb[j] + kE2M1Doubled[b.qs[j] >> 4] * xb[j + kQK / 2];
    // in double: the half scale can be 2^127, and sum * 2^127 must not overflow float early
    total += (double)sum * e8m0_to_fp32_half(b.e);
  }
  return (float)total;
}

}  // namespace velocity::quant
