// Quantise -> dequantise error of every reference format, on fresh random rows of several
// distributions, against bounds derived from each format's definition (stated per test), plus
// exact reproduction of representable values and idempotence where the algorithm guarantees it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "core/fp16.h"
#include "core/quant.h"
#include "quant_test_util.h"

namespace velocity {
namespace {

using namespace quant_test;

constexpr int64_t kRow = 256 * 8;  // a multiple of every block size
constexpr uint32_t kSeeds = 3;

float to_half(float v) { return (float)(_Float16)v; }  // the compiler's fp16 rounding (RNE)

// --- plain float formats ----------------------------------------------------------------------

TEST(QuantRoundTrip, F32IsExact) {
  for (Dist dist : all_dists()) {
    const auto x = random_row(dist, 1000, 1);
    EXPECT_EQ(dequantize(DType::F32, quantize(DType::F32, x), 1000), x) << dist_name(dist);
  }
}

// F16: round to nearest even, so |x - y| <= half an ulp: 2^-11 |x| for normal halves, 2^-25 in the
// subnormal range; and y is exactly the compiler's _Float16 rounding of x.
TEST(QuantRoundTrip, F16RoundsToNearestEven) {
  for (Dist dist : all_dists()) {
    auto x = random_row(dist, 1000, 2);
    x.push_back(1e-6f);     // subnormal half
    x.push_back(65519.0f);  // rounds to the largest half, 65504
    const auto y = dequantize(DType::F16, quantize(DType::F16, x), (int64_t)x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(y[i], to_half(x[i])) << i;
      EXPECT_LE(std::fabs(x[i] - y[i]), std::max(std::ldexp(std::fabs(x[i]), -11), std::ldexp(1.0f, -25))) << x[i];
    }
  }
}

// BF16: round to nearest even with 8 significant bits, so |x - y| <= 2^-8 |x|, and no other bf16
// value is closer (ties: the even one).
TEST(QuantRoundTrip, Bf16RoundsToNearestEven) {
  for (Dist dist : all_dists()) {
    const auto x = random_row(dist, 1000, 3);
    const auto q = quantize(DType::BF16, x);
    const auto y = dequantize(DType::BF16, q, (int64_t)x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_LE(std::fabs(x[i] - y[i]), std::ldexp(std::fabs(x[i]), -8)) << x[i];
      const uint32_t bits = float_bits(y[i]);
      EXPECT_EQ(bits & 0xFFFFu, 0u);
      for (uint32_t neighbour : {bits - 0x10000u, bits + 0x10000u}) {
        const float other = bits_float(neighbour);
        if (!std::isfinite(other)) continue;  // stepping below +-0 wraps to NaN
        const float err = std::fabs(x[i] - y[i]), other_err = std::fabs(x[i] - other);
        EXPECT_TRUE(err < other_err || (err == other_err && ((bits >> 16) & 1) == 0)) << x[i];
      }
    }
  }
}

// --- 32-element block formats ------------------------------------------------------------------

// Per element bound for the block formats, from the quantiser's definition: with the float block
// scale d the spec computes and the stored d16 = fp16(d) that dequantisation uses,
//   y = d16 * level  =>  |x - y| <= |x - d*level| + |level| * |d - d16|,
// and |x - d*level| is at most d/2 for the rounded levels, or d for the one value the
// symmetric formats clamp (x/d in (7.5, 8] for Q4_0, (15.5, 16] for Q5_0). Q4_1/Q5_1 add the
// fp16 rounding of the min. A 2^-20 relative slack covers float rounding in the quantiser.
struct BlockBound {
  float scale_spec;  // d as the spec computes it in float
  float bound;       // for this element
};

void check_block_format(DType t, Dist dist, uint32_t seed) {
  const auto x = random_row(dist, kRow, seed);
  const auto q = quantize(t, x);
  const auto y = dequantize(t, q, kRow);
  for (int64_t ib = 0; ib < kRow / 32; ++ib) {
    const float* xb = x.data() + ib * 32;
    const uint8_t* block = q.data() + ib * dtype_block_bytes(t);
    float amax = 0.0f, signed_max = 0.0f, lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(xb[j]) > amax) amax = std::fabs(xb[j]), signed_max = xb[j];
      lo = std::min(lo, xb[j]);
      hi = std::max(hi, xb[j]);
    }
    const float d16 = half_at(block);
    const float slack = std::ldexp(amax, -20);
    float d = 0.0f, fixed_error = 0.0f;
    int max_level = 0;
    switch (t) {
      case DType::Q8_0: d = amax / 127.0f, max_level = 127; break;
      case DType::Q4_0: d = signed_max / -8.0f, max_level = 8; break;
      case DType::Q5_0: d = signed_max / -16.0f, max_level = 16; break;
      case DType::Q4_1: d = (hi - lo) / 15.0f, max_level = 15; break;
      case DType::Q5_1: d = (hi - lo) / 31.0f, max_level = 31; break;
      default: FAIL();
    }
    if (t == DType::Q4_1 || t == DType::Q5_1) {
      const float m16 = half_at(block + 2);
      EXPECT_EQ(m16, to_half(lo)) << label(t, dist);
      fixed_error = std::fabs(lo - m16);
    }
    ASSERT_EQ(d16, to_half(d)) << label(t, dist) << " block " << ib << ": stored scale";
    const float clamp_from = t == DType::Q4_0 ? 7.5f : 15.5f;  // symmetric formats only
    for (int j = 0; j < 32; ++j) {
      const bool clamped = (t == DType::Q4_0 || t == DType::Q5_0) && d != 0.0f && xb[j] / d > clamp_from;
      const float rounding = std::fabs(d) * (clamped ? 1.0f : 0.5f);
      const float bound = rounding + (float)max_level * std::fabs(d - d16) + fixed_error + slack;
      ASSERT_LE(std::fabs(xb[j] - y[ib * 32 + j]), bound)
          << label(t, dist) << " block " << ib << " element " << j << " x " << xb[j] << " y " << y[ib * 32 + j];
    }
  }
}

TEST(QuantRoundTrip, BlockFormatsWithinScaleBound) {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q4_1, DType::Q5_1})
    for (Dist dist : all_dists())
      for (uint32_t seed = 1; seed <= kSeeds; ++seed) check_block_format(t, dist, seed);
}

// MXFP4: the shared exponent is floor(log2(amax)) - 2, so with s = 2^(e-127) the block max
// satisfies 4 <= amax/s < 8, and each element gets the E2M1 value nearest x/s: the error is at
// most half the local code spacing (0.25 s below 2, 0.5 s below 4, s below 6) and x - 6s beyond 6
// (the clipped range (6, 8)), i.e. at most 2s. Checked here as "no code is closer".
TEST(QuantRoundTrip, Mxfp4PicksNearestCode) {
  for (Dist dist : all_dists()) {
    for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
      const auto x = random_row(dist, kRow, seed);
      const auto q = quantize(DType::MXFP4, x);
      const auto y = dequantize(DType::MXFP4, q, kRow);
      for (int64_t ib = 0; ib < kRow / 32; ++ib) {
        const float* xb = x.data() + ib * 32;
        const uint8_t e = q[ib * 17];
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        if (amax == 0.0f) {
          EXPECT_EQ(e, 0) << label(DType::MXFP4, dist);
          continue;
        }
        const float s = std::ldexp(1.0f, e - 127);
        EXPECT_GE(amax / s, 4.0f * (1.0f - 1e-6f)) << label(DType::MXFP4, dist) << " block " << ib;
        EXPECT_LT(amax / s, 8.0f) << label(DType::MXFP4, dist) << " block " << ib;
        for (int j = 0; j < 32; ++j) {
          const float err = std::fabs(xb[j] - y[ib * 32 + j]);
          ASSERT_LE(err, 2.0f * s);
          for (float v : {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f})
            for (float sign : {1.0f, -1.0f})
              ASSERT_LE(err, std::fabs(xb[j] - sign * v * s) + std::ldexp(amax, -22))
                  << label(DType::MXFP4, dist) << " block " << ib << " element " << j;
        }
      }
    }
  }
}

// --- K-quants ----------------------------------------------------------------------------------

// Step 4 of every K-quant: once the sub-block scales are stored, each element is re-quantised to
// the nearest level of the stored grid scale*q - min, q in the format's range. So no level of
// that grid may be closer to x than y is (up to float rounding of (x + min)/scale). Sub-blocks
// whose stored scale is 0 have no grid to round to and are covered by the error bounds below.
void check_nearest_level(DType t, const std::vector<float>& x, const std::vector<uint8_t>& q,
                         const std::vector<float>& y, Dist dist) {
  for (int64_t ib = 0; ib < (int64_t)x.size() / 256; ++ib) {
    const uint8_t* block = q.data() + ib * dtype_block_bytes(t);
    for (int i = 0; i < 256; ++i) {
      const ElementSpec e = spec_element(t, block, i);
      if (e.scale == 0.0) continue;
      const double xi = x[ib * 256 + i], err = std::fabs(xi - y[ib * 256 + i]);
      double nearest = INFINITY;
      for (int level = e.q_lo; level <= e.q_hi; ++level)
        nearest = std::min(nearest, std::fabs(xi - (e.scale * level - e.min)));
      const double slack = 1e-5 * (std::fabs(e.scale) * 32.0 + std::fabs(e.min) + std::fabs(xi));
      ASSERT_LE(err, nearest + slack) << label(t, dist) << " block " << ib << " element " << i << " x " << xi;
    }
  }
}

// Relative RMSE ||x - y|| / ||x|| bounds. Derivation: a uniform grid of step D has RMSE D/sqrt(12).
// For N(0,1) data the grid spans about the sub-block range: max-min of 32 samples ~ 4.1, of 16
// ~ 3.5; |max| of 16 ~ 1.8 for the symmetric formats.
//   Q6_K  D = 1.8/32 (levels -32..31)  -> 0.016   bound 0.025
//   Q5_K  D = 4.1/31                   -> 0.038   bound 0.050
//   Q4_K  D = 4.1/15                   -> 0.079   bound 0.10
//   Q3_K  D = 1.8/4  (levels -4..3)    -> 0.13    bound 0.19 (the positive side stops at 3D)
//   Q2_K  D = 3.5/3                    -> 0.34    bound 0.40 (the search shrinks the grid and
//                                                              clips the tails)
// The scale search lands at or below these estimates; the bounds leave ~30% for the quantised
// sub-block scales. Heavy-tailed rows (Laplace, 1% outliers at 30 sigma) widen every sub-block's
// range relative to its rms and coarsen the other sub-blocks' quantised scales: 1.6x.
// Measured worst over 20 seeds (gaussian / laplace): Q6_K 0.018 / 0.022, Q5_K 0.036 / 0.043,
// Q4_K 0.072 / 0.086, Q3_K 0.152 / 0.178, Q2_K 0.301 / 0.349.
double rmse_bound(DType t, Dist dist) {
  double base = 0.0;
  switch (t) {
    case DType::Q6_K: base = 0.025; break;
    case DType::Q5_K: base = 0.05; break;
    case DType::Q4_K: base = 0.10; break;
    case DType::Q3_K: base = 0.19; break;
    case DType::Q2_K: base = 0.40; break;
    default: break;
  }
  const bool heavy = dist == Dist::Laplace || dist == Dist::Outliers;
  return heavy ? 1.6 * base : base;
}

TEST(QuantRoundTrip, KQuantsRoundToNearestStoredLevelAndMeetRmseBound) {
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    for (Dist dist : {Dist::Gaussian, Dist::Uniform, Dist::Outliers, Dist::Laplace, Dist::Positive, Dist::Tiny}) {
      for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
        const auto x = random_row(dist, kRow, seed);
        const auto q = quantize(t, x);
        const auto y = dequantize(t, q, kRow);
        check_nearest_level(t, x, q, y, dist);
        EXPECT_LE(relative_rmse(x, y), rmse_bound(t, dist)) << label(t, dist) << " seed " << seed;
      }
    }
  }
}

// A constant row is one level times one scale in every format except MXFP4 (whose grid is fixed
// relative to the power-of-two scale): only the fp16 rounding of the (super-)block scale or min
// remains, 2^-11 relative, checked with 2^-10 (BF16: its own rounding, 2^-8).
TEST(QuantRoundTrip, ConstantRowsReproduceToFp16Precision) {
  for (DType t : reference_types()) {
    if (t == DType::MXFP4) continue;
    for (Dist dist : {Dist::ConstPos, Dist::ConstNeg}) {
      const auto x = random_row(dist, kRow, 1);
      const auto y = dequantize(t, quantize(t, x), kRow);
      for (int64_t i = 0; i < kRow; ++i)
        ASSERT_NEAR(y[i], x[i], std::ldexp(std::fabs(x[i]), t == DType::BF16 ? -8 : -10))
            << label(t, dist) << " element " << i;
    }
  }
}

TEST(QuantRoundTrip, ZeroRowsGiveZerosAndEveryOutputIsFinite) {
  for (DType t : reference_types()) {
    for (Dist dist : all_dists()) {
      const auto x = random_row(dist, kRow, 5);
      const auto q = quantize(t, x);
      const auto y = dequantize(t, q, kRow);
      for (int64_t i = 0; i < kRow; ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << label(t, dist) << " element " << i;
        if (dist == Dist::Zeros) {
          ASSERT_EQ(y[i], 0.0f) << label(t, dist);
        }
      }
      if (dist == Dist::Zeros) {
        EXPECT_EQ(dot_row(t, q.data(), x.data(), kRow), 0.0f) << label(t, dist);
      }
    }
  }
}

// Rows so small that the fp16 (super-)block scales underflow or become subnormal (|x| ~ 1e-7:
// Q8_0's d = amax/127 is below the smallest half, 2^-24). The formats lose most of the row but
// must stay finite, and no output may exceed 2 amax by more than the largest level (31) times
// the largest 6-bit scale (63) times the subnormal half step 2^-24: the stored scales can round
// up to that step (as in ggml, the K-quants with a min can then give outputs larger than the row).
TEST(QuantRoundTrip, UnderflowingScalesStayFinite) {
  auto x = random_row(Dist::Gaussian, kRow, 6);
  for (auto& v : x) v *= 1e-7f;
  float amax = 0.0f;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  const float bound = 2.0f * amax + 31.0f * 63.0f * std::ldexp(1.0f, -24);
  for (DType t : reference_types()) {
    const auto y = dequantize(t, quantize(t, x), kRow);
    for (int64_t i = 0; i < kRow; ++i) {
      ASSERT_TRUE(std::isfinite(y[i])) << dtype_name(t);
      ASSERT_LE(std::fabs(y[i]), bound) << dtype_name(t) << " element " << i;
    }
  }
}

// --- exact reproduction and idempotence ---------------------------------------------------------

// Rows built from a format's own grid come back exactly. Each block (sub-block for the K-quants)
// contains the level that defines the scale (the extreme level of the symmetric formats, both ends
// for the ones with a min), and the scales are chosen so that every step of the quantiser is exact
// in float and fp16 up to roundings that the later steps absorb (powers of two; 63/64 and 15/16
// for the 6-bit / 4-bit scale step of the K-quants, so that d = scale/63 or scale/15 is a power of
// two).
std::vector<float> grid_row(DType t, uint32_t seed) {
  std::mt19937 rng(seed);
  auto level = [&rng](int lo, int hi) { return lo + (int)(rng() % (uint32_t)(hi - lo + 1)); };
  std::vector<float> x(kRow);
  const int group = is_kquant(t) ? (t == DType::Q4_K || t == DType::Q5_K ? 32 : 16) : 32;
  for (int64_t g0 = 0; g0 < kRow; g0 += group) {
    float* xg = x.data() + g0;
    const int first = (int)(rng() % (uint32_t)group);  // where the defining level goes
    const int second = (first + 1 + (int)(rng() % (uint32_t)(group - 1))) % group;
    const float sign = rng() & 1 ? 1.0f : -1.0f;
    for (int j = 0; j < group; ++j) {
      switch (t) {
        case DType::Q8_0: xg[j] = 0.125f * (j == first ? sign * 127 : level(-127, 127)); break;
        case DType::Q4_0: xg[j] = sign * 0.25f * (j == first ? -8 : level(-8, 7)); break;
        case DType::Q5_0: xg[j] = sign * 0.5f * (j == first ? -16 : level(-16, 15)); break;
        case DType::Q4_1: xg[j] = -3.0f + 0.5f * (j == first ? 0 : j == second ? 15 : level(0, 15)); break;
        case DType::Q5_1: xg[j] = 1.5f + 0.25f * (j == first ? 0 : j == second ? 31 : level(0, 31)); break;
        case DType::MXFP4: {
          static constexpr float kValues[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
          const float v = j == first ? (rng() & 1 ? 6.0f : 4.0f) : kValues[rng() % 8];
          xg[j] = std::ldexp((rng() & 1 ? 1.0f : -1.0f) * v, (int)(g0 / 32 % 21) - 10);
          break;
        }
        // Q2_K weighs its scale search by |x|, so exact zeros would carry no weight: offset the grid
        // by a min (15/32, so dmin = 1/32) that keeps every value away from 0
        case DType::Q2_K:
          xg[j] = (15.0f / 16.0f) * (j == first ? 0 : j == second ? 3 : level(0, 3)) - 15.0f / 32.0f;
          break;
        case DType::Q3_K: xg[j] = 0.25f * (j == first ? -4 : level(-4, 3)); break;
        case DType::Q4_K: xg[j] = (63.0f / 64.0f) * (j == first ? 0 : j == second ? 15 : level(0, 15)); break;
        case DType::Q5_K: xg[j] = (63.0f / 64.0f) * (j == first ? 0 : j == second ? 31 : level(0, 31)); break;
        case DType::Q6_K: xg[j] = 0.0625f * (j == first ? -32 : level(-32, 31)); break;
        default: break;
      }
    }
  }
  return x;
}

TEST(QuantRoundTrip, RepresentableRowsComeBackExactly) {
  for (DType t : reference_types()) {
    if (dtype_block_size(t) == 1) continue;  // F32 exact, F16/BF16 covered by rounding tests
    for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
      const auto x = grid_row(t, seed);
      const auto y = dequantize(t, quantize(t, x), kRow);
      for (int64_t i = 0; i < kRow; ++i) ASSERT_EQ(y[i], x[i]) << dtype_name(t) << " seed " << seed << " element " << i;
    }
  }
}

// quantize(dequantize(q)) == q for the formats whose grid is fixed by the block maximum: the
// dequantised block max is exactly the extreme level times the stored scale (Q8_0: 127 d16;
// Q4_0/Q5_0: -8 d16 / -16 d16; MXFP4: 4 or 6 times 2^E, same exponent), so the same scale is
// found again and every value sits exactly on a level. (Not for Q4_1/Q5_1, whose d is
// recomputed from a rounded max - min, nor for the K-quants' searched scales.)
TEST(QuantRoundTrip, RequantisingIsIdempotent) {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::MXFP4}) {
    for (Dist dist : all_dists()) {
      for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
        const auto q = quantize(t, random_row(dist, kRow, seed));
        EXPECT_EQ(quantize(t, dequantize(t, q, kRow)), q) << label(t, dist) << " seed " << seed;
      }
    }
  }
}

}  // namespace
}  // namespace velocity
