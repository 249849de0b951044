// fp16 / bf16 conversions against the compiler's own _Float16 / exhaustive properties.
#include "core/fp16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "core/error.h"

namespace velocity {
namespace {

TEST(Fp16, EveryHalfRoundTripsExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32((uint16_t)h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f)))) << h;
      continue;
    }
    EXPECT_EQ(fp32_to_fp16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(Fp16, MatchesCompilerConversionOnRandomFloats) {
  // _Float16 conversion in GCC rounds to nearest even: an independent reference.
  std::mt19937 rng(1234);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    float f = bits_float(bits(rng));
    if (std::isnan(f)) continue;
    // cover small magnitudes densely too
    if (i % 2) f = std::ldexp(std::fmod(f, 2.0f), -(int)(i % 30));
    const _Float16 ref = (_Float16)f;
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    ASSERT_EQ(fp32_to_fp16(f), ref_bits) << f;
    ASSERT_EQ(float_bits(fp16_to_fp32(ref_bits)), float_bits((float)ref));
  }
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // just above the tie rounds up
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::nanf("")))));
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_to_fp32((uint16_t)b);
    if (!std::isnan(f)) {
      ASSERT_EQ(fp32_to_bf16(f), b);
    }
  }
}

TEST(DType, KnownIdsAndSizes) {
  // ids and block layouts fixed by the GGUF specification
  EXPECT_EQ(dtype_info(DType::Q4_K).block_bytes, 144);
  EXPECT_EQ(dtype_info(DType::Q6_K).block_bytes, 210);
  EXPECT_EQ(dtype_info(39u)->name, "MXFP4");
  EXPECT_EQ(dtype_info(DType::MXFP4).block_bytes, 17);
  EXPECT_FALSE(dtype_info(4u).has_value());   // removed Q4_2
  EXPECT_FALSE(dtype_info(31u).has_value());  // removed Q4_0_4_4
  EXPECT_FALSE(dtype_info(1000u).has_value());
  EXPECT_EQ(dtype_from_name("q8_0"), DType::Q8_0);
  EXPECT_EQ(dtype_row_bytes(DType::Q8_0, 64), 68);
  EXPECT_THROW(dtype_row_bytes(DType::Q8_0, 33), InternalError);  // a partial block: the caller's bug
}

}  // namespace
}  // namespace velocity
