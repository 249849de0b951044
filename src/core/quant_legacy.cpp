// Reference formats with one scale per 32 elements (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the plain
// float formats (F32, F16, BF16).
//
// Quantisation follows ggml's *_ref functions step for step, so that a row quantised here is
// byte-identical to one quantised by ggml (same rounding rule per format, same float expression
// order, block scale computed in float and only then rounded to fp16):
//   Q8_0  d = amax/127,           q = round-half-away(x/d)                 in -127..127
//   Q4_0  d = max/-8  (max: the signed value of largest magnitude),
//         q = min(15, trunc(x/d + 8.5))                                    in 0..15, y = d(q-8)
//   Q5_0  d = max/-16, q = min(31, trunc(x/d + 16.5)),                        y = d(q-16)
//   Q4_1  d = (max-min)/15, m = min, q = min(15, trunc((x-m)/d + 0.5)),       y = d q + m
//   Q5_1  d = (max-min)/31, m = min, q = trunc((x-m)/d + 0.5) (<= 31),        y = d q + m
// The sign trick of Q4_0/Q5_0 makes the element of largest magnitude land exactly on the
// extreme level -8 (resp. -16), which has no positive counterpart; the opposite extreme +8d
// clamps to 7d.
//
// Inputs must be finite (as in ggml, a NaN or inf makes the float -> int conversions undefined).
// dot: float accumulation inside a block (32 elements), double across blocks.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace velocity::quant {
namespace {

// Plain formats have no blocks; their dots still accumulate float over runs of this many
// elements and double across runs, like the block formats.
constexpr int64_t kPlainRun = 32;

template <class Load>
float dot_plain(const Load& load, const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t i0 = 0; i0 < n; i0 += kPlainRun) {
    const int64_t i1 = std::min(n, i0 + kPlainRun);
    float run = 0.0f;
    for (int64_t i = i0; i < i1; ++i) run += load(i) * x[i];
    total += run;
  }
  return (float)total;
}

uint16_t load_u16(const void* row, int64_t i) {
  uint16_t h;
  std::memcpy(&h, static_cast<const uint8_t*>(row) + 2 * i, 2);
  return h;
}
void store_u16(void* row, int64_t i, uint16_t h) { std::memcpy(static_cast<uint8_t*>(row) + 2 * i, &h, 2); }

// The signed value of largest magnitude in x[0..kQK) (the first one on ties), and that magnitude.
struct SignedMax {
  float value = 0.0f;
  float magnitude = 0.0f;
};
SignedMax signed_max(const float* x) {
  SignedMax m;
  for (int j = 0; j < kQK; ++j) {
    if (m.magnitude < std::fabs(x[j])) {
      m.magnitude = std::fabs(x[j]);
      m.value = x[j];
    }
  }
  return m;
}

struct MinMax {
  float min = FLT_MAX;
  float max = -FLT_MAX;
};
MinMax min_max(const float* x) {
  MinMax r;
  for (int j = 0; j < kQK; ++j) {
    r.min = std::min(r.min, x[j]);
    r.max = std::max(r.max, x[j]);
  }
  return r;
}

// Truncation toward zero of a value the callers keep >= 0, clamped to [0, hi].
int trunc_level(float v, int hi) { return std::clamp((int)v, 0, hi); }

uint32_t load_qh(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return bits;
}

}  // namespace

// --- F32 --------------------------------------------------------------------------------------

void quantize_f32(const float* x, void* q, int64_t n) { std::memcpy(q, x, (size_t)n * 4); }
void dequantize_f32(const void* q, float* y, int64_t n) { std::memcpy(y, q, (size_t)n * 4); }
float dot_f32(const void* w, const float* x, int64_t n) {
  return dot_plain(
      [w](int64_t i) {
        float v;
        std::memcpy(&v, static_cast<const uint8_t*>(w) + 4 * i, 4);
        return v;
      },
      x, n);
}

// --- F16 / BF16: round to nearest even ----------------------------------------------------------

void quantize_f16(const float* x, void* q, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_u16(q, i, fp32_to_fp16(x[i]));
}
void dequantize_f16(const void* q, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(load_u16(q, i));
}
float dot_f16(const void* w, const float* x, int64_t n) {
  return dot_plain([w](int64_t i) { return fp16_to_fp32(load_u16(w, i)); }, x, n);
}

void quantize_bf16(const float* x, void* q, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_u16(q, i, fp32_to_bf16(x[i]));
}
void dequantize_bf16(const void* q, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(load_u16(q, i));
}
float dot_bf16(const void* w, const float* x, int64_t n) {
  return dot_plain([w](int64_t i) { return bf16_to_fp32(load_u16(w, i)); }, x, n);
}

// --- Q8_0 -------------------------------------------------------------------------------------

void quantize_q8_0(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + ib * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 b;
    b.d = fp32_to_fp16(d);
    for (int j = 0; j < kQK; ++j) b.qs[j] = (int8_t)std::round(xb[j] * id);  // |x*id| <= 127
    store_block(q, ib, b);
  }
}

void dequantize_q8_0(const void* q, float* y, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ8_0>(q, ib);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK; ++j) y[ib * kQK + j] = b.qs[j] * d;
  }
}

float dot_q8_0(const void* w, const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ8_0>(w, ib);
    const float* xb = x + ib * kQK;
    float sum = 0.0f;  // sum_j q_j x_j; the block scale is applied once
    for (int j = 0; j < kQK; ++j) sum += b.qs[j] * xb[j];
    total += sum * fp16_to_fp32(b.d);
  }
  return (float)total;
}

// --- Q4_0 -------------------------------------------------------------------------------------

void quantize_q4_0(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + ib * kQK;
    const float d = signed_max(xb).value / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 b;
    b.d = fp32_to_fp16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = trunc_level(xb[j] * id + 8.5f, 15);
      const int hi = trunc_level(xb[j + kQK / 2] * id + 8.5f, 15);
      b.qs[j] = (uint8_t)(lo | hi << 4);
    }
    store_block(q, ib, b);
  }
}

void dequantize_q4_0(const void* q, float* y, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ4_0>(q, ib);
    const float d = fp16_to_fp32(b.d);
    float* yb = y + ib * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      yb[j] = ((b.qs[j] & 0x0F) - 8) * d;
      yb[j + kQK / 2] = ((b.qs[j] >> 4) - 8) * d;
    }
  }
}

float dot_q4_0(const void* w, const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ4_0>(w, ib);
    const float* xb = x + ib * kQK;
    float sum = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) sum += ((b.qs[j] & 0x0F) - 8) * xb[j] + ((b.qs[j] >> 4) - 8) * xb[j + kQK / 2];
    total += sum * fp16_to_fp32(b.d);
  }
  return (float)total;
}

// --- Q4_1 -------------------------------------------------------------------------------------

void quantize_q4_1(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + ib * kQK;
    const MinMax r = min_max(xb);
    const float d = (r.max - r.min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(r.min);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = trunc_level((xb[j] - r.min) * id + 0.5f, 15);
      const int hi = trunc_level((xb[j + kQK / 2] - r.min) * id + 0.5f, 15);
      b.qs[j] = (uint8_t)(lo | hi << 4);
    }
    store_block(q, ib, b);
  }
}

void dequantize_q4_1(const void* q, float* y, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ4_1>(q, ib);
    const float d = fp16_to_fp32(b.d);
    const float m = fp16_to_fp32(b.m);
    float* yb = y + ib * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      yb[j] = (b.qs[j] & 0x0F) * d + m;
      yb[j + kQK / 2] = (b.qs[j] >> 4) * d + m;
    }
  }
}

float dot_q4_1(const void* w, const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ4_1>(w, ib);
    const float* xb = x + ib * kQK;
    // sum_j (d q_j + m) x_j = d * sum_j q_j x_j + m * sum_j x_j
    float sum_qx = 0.0f, sum_x = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) {
      sum_qx += (b.qs[j] & 0x0F) * xb[j] + (b.qs[j] >> 4) * xb[j + kQK / 2];
      sum_x += xb[j] + xb[j + kQK / 2];
    }
    total += fp16_to_fp32(b.d) * sum_qx + fp16_to_fp32(b.m) * sum_x;
  }
  return (float)total;
}

// --- Q5_0 -------------------------------------------------------------------------------------

void quantize_q5_0(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + ib * kQK;
    const float d = signed_max(xb).value / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_0 b;
    b.d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = trunc_level(xb[j] * id + 16.5f, 31);
      const int hi = trunc_level(xb[j + kQK / 2] * id + 16.5f, 31);
      b.qs[j] = (uint8_t)((lo & 0x0F) | (hi & 0x0F) << 4);
      qh |= (uint32_t)(lo >> 4) << j;              // bit 4 of element j -> qh bit j
      qh |= (uint32_t)(hi >> 4) << (j + kQK / 2);  // element j+16 -> qh bit j+16
    }
    std::memcpy(b.qh, &qh, 4);
    store_block(q, ib, b);
  }
}

void dequantize_q5_0(const void* q, float* y, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ5_0>(q, ib);
    const float d = fp16_to_fp32(b.d);
    const uint32_t qh = load_qh(b.qh);
    float* yb = y + ib * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b.qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
      const int hi = (b.qs[j] >> 4) | (int)((qh >> (j + kQK / 2)) & 1) << 4;
      yb[j] = (lo - 16) * d;
      yb[j + kQK / 2] = (hi - 16) * d;
    }
  }
}

float dot_q5_0(const void* w, const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ5_0>(w, ib);
    const uint32_t qh = load_qh(b.qh);
    const float* xb = x + ib * kQK;
    float sum = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b.qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
      const int hi = (b.qs[j] >> 4) | (int)((qh >> (j + kQK / 2)) & 1) << 4;
      sum += (lo - 16) * xb[j] + (hi - 16) * xb[j + kQK / 2];
    }
    total += sum * fp16_to_fp32(b.d);
  }
  return (float)total;
}

// --- Q5_1 -------------------------------------------------------------------------------------

void quantize_q5_1(const float* x, void* q, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + ib * kQK;
    const MinMax r = min_max(xb);
    const float d = (r.max - r.min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(r.min);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = trunc_level((xb[j] - r.min) * id + 0.5f, 31);
      const int hi = trunc_level((xb[j + kQK / 2] - r.min) * id + 0.5f, 31);
      b.qs[j] = (uint8_t)((lo & 0x0F) | (hi & 0x0F) << 4);
      qh |= (uint32_t)(lo >> 4) << j;
      qh |= (uint32_t)(hi >> 4) << (j + kQK / 2);
    }
    std::memcpy(b.qh, &qh, 4);
    store_block(q, ib, b);
  }
}

void dequantize_q5_1(const void* q, float* y, int64_t n) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ5_1>(q, ib);
    const float d = fp16_to_fp32(b.d);
    const float m = fp16_to_fp32(b.m);
    const uint32_t qh = load_qh(b.qh);
    float* yb = y + ib * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b.qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
      const int hi = (b.qs[j] >> 4) | (int)((qh >> (j + kQK / 2)) & 1) << 4;
      yb[j] = lo * d + m;
      yb[j + kQK / 2] = hi * d + m;
    }
  }
}

float dot_q5_1(const void* w, const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const auto b = load_block<BlockQ5_1>(w, ib);
    const uint32_t qh = load_qh(b.qh);
    const float* xb = x + ib * kQK;
    float sum_qx = 0.0f, sum_x = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b.qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
      const int hi = (b.qs[j] >> 4) | (int)((qh >> (j + kQK / 2)) & 1) << 4;
      sum_qx += lo * xb[j] + hi * xb[j + kQK / 2];
      sum_x += xb[j] + xb[j + kQK / 2];
    }
    total += fp16_to_fp32(b.d) * sum_qx + fp16_to_fp32(b.m) * sum_x;
  }
  return (float)total;
}

}  // namespace velocity::quant
