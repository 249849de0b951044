// Shared by the quant_*_test.cpp files: random rows of several distributions, and an
// independent per-element reading of every GGUF block layout ("spec decoder"), written from the
// byte offsets of the ggml-common.h structs rather than from velocity's structs, so that the
// implementation's layout is checked against it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/quant.h"

namespace velocity::quant_test {

// Every type with a reference implementation.
inline const std::vector<DType>& reference_types() {
  static const std::vector<DType> types = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                                           DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K,
                                           DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4};
  return types;
}

inline bool is_kquant(DType t) {
  return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

enum class Dist {
  Gaussian,  // N(0, 1)
  Uniform,   // U(-1, 1)
  Outliers,  // N(0, 1), 1% of elements times 30
  Laplace,   // heavy tails: exponential magnitude, random sign
  Positive,  // |N(0, 1)|: all of one sign
  ConstPos,  // every element 0.7
  ConstNeg,  // every element -2.3
  Zeros,
  Tiny,  // N(0, 1) * 1e-3: small, but every fp16 scale stays representable
};

inline const char* dist_name(Dist d) {
  switch (d) {
    case Dist::Gaussian: return "gaussian";
    case Dist::Uniform: return "uniform";
    case Dist::Outliers: return "outliers";
    case Dist::Laplace: return "laplace";
    case Dist::Positive: return "positive";
    case Dist::ConstPos: return "const+";
    case Dist::ConstNeg: return "const-";
    case Dist::Zeros: return "zeros";
    case Dist::Tiny: return "tiny";
  }
  return "?";
}

inline const std::vector<Dist>& all_dists() {
  static const std::vector<Dist> dists = {Dist::Gaussian, Dist::Uniform,  Dist::Outliers, Dist::Laplace, Dist::Positive,
                                          Dist::ConstPos, Dist::ConstNeg, Dist::Zeros,    Dist::Tiny};
  return dists;
}

inline std::vector<float> random_row(Dist dist, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::exponential_distribution<float> expo(1.0f);
  std::vector<float> x((size_t)n);
  for (auto& v : x) {
    switch (dist) {
      case Dist::Gaussian: v = gauss(rng); break;
      case Dist::Uniform: v = uniform(rng); break;
      case Dist::Outliers: v = gauss(rng) * (rng() % 100 == 0 ? 30.0f : 1.0f); break;
      case Dist::Laplace: v = expo(rng) * (rng() & 1 ? 1.0f : -1.0f); break;
      case Dist::Positive: v = std::fabs(gauss(rng)); break;
      case Dist::ConstPos: v = 0.7f; break;
      case Dist::ConstNeg: v = -2.3f; break;
      case Dist::Zeros: v = 0.0f; break;
      case Dist::Tiny: v = gauss(rng) * 1e-3f; break;
    }
  }
  return x;
}

inline std::vector<uint8_t> quantize(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> q((size_t)dtype_row_bytes(t, (int64_t)x.size()));
  quantize_row(t, x.data(), q.data(), (int64_t)x.size());
  return q;
}

inline std::vector<float> dequantize(DType t, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> y((size_t)n);
  dequantize_row(t, q.data(), y.data(), n);
  return y;
}

// sqrt(sum (x-y)^2 / sum x^2)
inline double relative_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double e2 = 0.0, x2 = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    e2 += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    x2 += (double)x[i] * x[i];
  }
  return x2 > 0.0 ? std::sqrt(e2 / x2) : std::sqrt(e2);
}

inline std::string label(DType t, Dist d) { return std::string(dtype_name(t)) + " / " + dist_name(d); }

// --- spec decoder ------------------------------------------------------------------------------

inline float half_at(const uint8_t* p) {
  _Float16 h;
  std::memcpy(&h, p, 2);
  return (float)h;
}

// What one element of a block means: value = scale * q - min, and the range of levels q the
// format can store for it (so that a test can find the nearest representable value).
struct ElementSpec {
  double scale = 0.0;
  double min = 0.0;
  int q = 0;
  int q_lo = 0, q_hi = 0;
  double value() const { return scale * q - min; }
};

// Element i (0 <= i < block size) of the block starting at `b`, read straight from the GGUF
// byte layout. Not for F32/F16/BF16.
inline ElementSpec spec_element(DType t, const uint8_t* b, int i) {
  ElementSpec e;
  // 32-element blocks: element i < 16 is the low nibble of qs[i], i >= 16 the high nibble of qs[i-16]
  auto nibble = [i](const uint8_t* qs) { return i < 16 ? qs[i] & 0x0F : qs[i - 16] >> 4; };
  auto bit5 = [i](const uint8_t* qh) {  // bit i of the little-endian 32-bit word
    return (qh[i / 8] >> (i % 8)) & 1;
  };
  switch (t) {
    case DType::Q8_0:
      e.scale = half_at(b);
      e.q = (int8_t)b[2 + i];
      e.q_lo = -128, e.q_hi = 127;
      break;
    case DType::Q4_0:
      e.scale = half_at(b);
      e.q = nibble(b + 2) - 8;
      e.q_lo = -8, e.q_hi = 7;
      break;
    case DType::Q4_1:
      e.scale = half_at(b);
      e.min = -(double)half_at(b + 2);
      e.q = nibble(b + 4);
      e.q_lo = 0, e.q_hi = 15;
      break;
    case DType::Q5_0:
      e.scale = half_at(b);
      e.q = (nibble(b + 6) | bit5(b + 2) << 4) - 16;
      e.q_lo = -16, e.q_hi = 15;
      break;
    case DType::Q5_1:
      e.scale = half_at(b);
      e.min = -(double)half_at(b + 2);
      e.q = nibble(b + 8) | bit5(b + 4) << 4;
      e.q_lo = 0, e.q_hi = 31;
      break;
    case DType::MXFP4: {
      // E2M1 code: sign bit 3, exponent bits 2-1, mantissa bit 0 -> value in half-units
      static constexpr int kHalfUnits[8] = {0, 1, 2, 3, 4, 6, 8, 12};  // 0, .5, 1, 1.5, 2, 3, 4, 6
      const int code = nibble(b + 1);
      e.scale = std::ldexp(1.0, (int)b[0] - 127 - 1);  // half-units times 2^(e-127)
      e.q = (code & 8 ? -1 : 1) * kHalfUnits[code & 7];
      e.q_lo = -12, e.q_hi = 12;  // not every integer in between is a code; see mxfp4 tests
      break;
    }
    case DType::Q2_K: {
      // scales[0..16) qs[16..80) d[80] dmin[82]; sub-block of 16, scale byte = sc | m << 4
      const int s = i / 16, half = i / 128, r = i % 128;
      e.scale = (double)half_at(b + 80) * (b[s] & 0x0F);
      e.min = (double)half_at(b + 82) * (b[s] >> 4);
      e.q = (b[16 + 32 * half + r % 32] >> (2 * (r / 32))) & 3;
      e.q_hi = 3;
      break;
    }
    case DType::Q3_K: {
      // hmask[0..32) qs[32..96) scales[96..108) d[108]
      const int s = i / 16, half = i / 128, r = i % 128;
      const uint8_t* sc = b + 96;
      const int low4 = s < 8 ? sc[s] & 0x0F : sc[s - 8] >> 4;
      const int high2 = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
      e.scale = (double)half_at(b + 108) * ((low4 | high2 << 4) - 32);
      const int low = (b[32 + 32 * half + r % 32] >> (2 * (r / 32))) & 3;
      const int high = (b[i % 32] >> (i / 32)) & 1;
      e.q = low + 4 * high - 4;
      e.q_lo = -4, e.q_hi = 3;
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      // d[0] dmin[2] scales[4..16) then (Q5_K) qh[16..48), then qs
      const uint8_t* sc = b + 4;
      const int s = i / 32;
      int scale6, min6;
      if (s < 4) {
        scale6 = sc[s] & 63;
        min6 = sc[s + 4] & 63;
      } else {
        scale6 = (sc[s + 4] & 0x0F) | (sc[s - 4] >> 6) << 4;
        min6 = (sc[s + 4] >> 4) | (sc[s] >> 6) << 4;
      }
      e.scale = (double)half_at(b) * scale6;
      e.min = (double)half_at(b + 2) * min6;
      const bool is5 = t == DType::Q5_K;
      const uint8_t* qs = b + (is5 ? 48 : 16);
      const uint8_t byte = qs[32 * (i / 64) + i % 32];
      e.q = (i % 64) < 32 ? byte & 0x0F : byte >> 4;
      if (is5) e.q += ((b[16 + i % 32] >> (i / 32)) & 1) << 4;
      e.q_hi = is5 ? 31 : 15;
      break;
    }
    case DType::Q6_K: {
      // ql[0..128) qh[128..192) scales[192..208) (int8) d[208]
      const int half = i / 128, g = (i % 128) / 32, l = i % 32;
      const uint8_t lbyte = b[64 * half + 32 * (g % 2) + l];
      const int low = g < 2 ? lbyte & 0x0F : lbyte >> 4;
      const int high = (b[128 + 32 * half + l] >> (2 * g)) & 3;
      e.scale = (double)half_at(b + 208) * (int8_t)b[192 + i / 16];
      e.q = (low | high << 4) - 32;
      e.q_lo = -32, e.q_hi = 31;
      break;
    }
    default: break;
  }
  return e;
}

// Byte offsets of the fp16 fields of a block, so tests can keep random blocks finite.
inline std::vector<int> half_offsets(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q5_0: return {0};
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q4_K:
    case DType::Q5_K: return {0, 2};
    case DType::Q2_K: return {80, 82};
    case DType::Q3_K: return {108};
    case DType::Q6_K: return {208};
    default: return {};
  }
}

}  // namespace velocity::quant_test
