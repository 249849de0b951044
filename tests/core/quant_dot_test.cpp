// dot_row against dequantise-then-dot in double, for every reference format and several row
// lengths, with rows stored at odd addresses (the API allows unaligned rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/quant.h"
#include "quant_test_util.h"

namespace velocity {
namespace {

using namespace quant_test;

// Row lengths per block size: one block, a few, and a longer row with a tail run for the plain
// formats (their dot accumulates runs of 32).
std::vector<int64_t> lengths_for(DType t) {
  const int64_t bs = dtype_block_size(t);
  if (bs == 1) return {1, 31, 33, 1000, 4099};
  return {bs, 3 * bs, 4096 / bs * bs + bs};
}

// Tolerance: the float accumulation inside a block (at most 256 products) and of the block
// scales contributes a few float ulps of sum |w_i x_i| per block, and the blocks add in double:
// 2e-6 of sum |w_i x_i| is ~16 float ulps, far below what any layout or scale error would give
// (those are O(1) relative). Relative to sum |w x| rather than to the dot itself, which can
// cancel to near zero.
TEST(QuantDot, MatchesDequantiseThenDotInDouble) {
  uint32_t seed = 100;
  for (DType t : reference_types()) {
    for (int64_t n : lengths_for(t)) {
      for (Dist dist : {Dist::Gaussian, Dist::Outliers, Dist::Positive}) {
        const auto w = random_row(dist, n, ++seed);
        const auto x = random_row(Dist::Gaussian, n, ++seed);
        const auto q = quantize(t, w);
        // copy to an odd address
        std::vector<uint8_t> storage(q.size() + 1);
        std::copy(q.begin(), q.end(), storage.begin() + 1);
        const uint8_t* row = storage.data() + 1;

        const auto wq = dequantize(t, q, n);
        double ref = 0.0, magnitude = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          ref += (double)wq[i] * x[i];
          magnitude += std::fabs((double)wq[i] * x[i]);
        }
        const float got = dot_row(t, row, x.data(), n);
        EXPECT_NEAR(got, ref, 2e-6 * magnitude + 1e-30) << label(t, dist) << " n " << n;

        std::vector<float> y_unaligned((size_t)n);
        dequantize_row(t, row, y_unaligned.data(), n);
        EXPECT_EQ(y_unaligned, wq) << label(t, dist) << " n " << n;
      }
    }
  }
}

// Quantising into an odd address gives the same bytes.
TEST(QuantDot, QuantiseToUnalignedRow) {
  for (DType t : reference_types()) {
    const int64_t n = 2 * 256;
    const auto x = random_row(Dist::Gaussian, n, 7);
    const auto q = quantize(t, x);
    std::vector<uint8_t> storage(q.size() + 3, 0xAB);
    quantize_row(t, x.data(), storage.data() + 1, n);
    EXPECT_EQ(std::vector<uint8_t>(storage.begin() + 1, storage.end() - 2), q) << dtype_name(t);
    EXPECT_EQ(storage[0], 0xAB);
    EXPECT_EQ(storage[storage.size() - 2], 0xAB);  // nothing written past the row
  }
}

}  // namespace
}  // namespace velocity
