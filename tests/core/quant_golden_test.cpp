// Golden bytes: a fixed row quantised by every reference format must hash to the recorded value.
// The recorded hashes were checked, when written, to be those of the same row quantised by
// ggml's reference quantisers (ggml-quants.c quantize_row_*_ref, built separately): they pin
// byte-compatibility with GGUF files that ggml tools produce, which the error-bound tests alone
// cannot (a different scale search would still meet the bounds). A change here is a format
// change: check it against ggml again before updating a hash.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/quant.h"

namespace velocity {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 8 super-blocks, portable across standard libraries (integer generator, exact float division):
// values k/4096 for k in -10000..10000, 1/64 of them x16 (outliers), 7/64 x1/8; super-block 5 all
// zeros, 6 constant -1.25, 7 all positive.
std::vector<float> golden_row() {
  constexpr int64_t n = 256 * 8;
  std::vector<float> x(n);
  uint64_t state = 42;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = splitmix64(state);
    float v = (float)((int64_t)(r % 20001) - 10000) / 4096.0f;
    const uint64_t kind = (r >> 32) % 64;
    if (kind == 0) {
      v *= 16.0f;
    } else if (kind < 8) {
      v *= 0.125f;
    }
    if (i / 256 == 5) v = 0.0f;
    if (i / 256 == 6) v = -1.25f;
    if (i / 256 == 7) v = std::abs(v);
    x[i] = v;
  }
  return x;
}

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

TEST(QuantGolden, BytesMatchGgmlReference) {
  const struct {
    DType type;
    uint64_t hash;
  } golden[] = {
      {DType::F16, 0x1eee3dea3d751499ull},   {DType::BF16, 0x99a57bb28a14a1ecull}, {DType::Q8_0, 0x273306b0c5be8dcdull},
      {DType::Q4_0, 0xe423045769333cc5ull},  {DType::Q4_1, 0x1c13b8f8eb99f174ull}, {DType::Q5_0, 0x81c202710c7db148ull},
      {DType::Q5_1, 0x4c0f36ac57b53fa4ull},  {DType::Q2_K, 0xfb7c412b278e3372ull}, {DType::Q3_K, 0x5959f2a6466da558ull},
      {DType::Q4_K, 0xdd36c3f2b2b3171bull},  {DType::Q5_K, 0xcd0e87a680efdb62ull}, {DType::Q6_K, 0x36aeb33c02712c12ull},
      {DType::MXFP4, 0x878d9d80f7f743ceull},
  };
  const auto x = golden_row();
  const int64_t n = (int64_t)x.size();
  for (const auto& g : golden) {
    std::vector<uint8_t> q((size_t)dtype_row_bytes(g.type, n));
    quantize_row(g.type, x.data(), q.data(), n);
    EXPECT_EQ(fnv1a(q), g.hash) << dtype_name(g.type) << ": quantised bytes changed";
  }
}

}  // namespace
}  // namespace velocity
