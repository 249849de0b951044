// Byte layouts of the reference formats: hand-built blocks with known bytes must dequantise to
// values worked out by hand from the GGUF / ggml-common.h definitions, and random blocks must
// agree with the independent per-element reader in quant_test_util.h.
#include <gtest/gtest.h>

#include <array>
#include <cfloat>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/quant.h"
#include "core/quant_blocks.h"
#include "quant_test_util.h"

namespace velocity {
namespace {

using quant_test::ElementSpec;
using quant_test::reference_types;
using quant_test::spec_element;

std::vector<float> dequantize_block(DType t, const std::vector<uint8_t>& block) {
  const int64_t n = dtype_block_size(t);
  EXPECT_EQ((int64_t)block.size(), dtype_block_bytes(t));
  std::vector<float> y((size_t)n);
  dequantize_row(t, block.data(), y.data(), n);
  return y;
}

// Copies `bytes` into `block` at `offset`.
void put(std::vector<uint8_t>& block, size_t offset, std::initializer_list<uint8_t> bytes) {
  for (uint8_t b : bytes) block.at(offset++) = b;
}

// (k * mul + add) mod 256: a fixed, varied byte pattern whose bytes the spot checks below work out
// by hand.
void fill_pattern(std::vector<uint8_t>& block, size_t offset, size_t count, int mul, int add) {
  for (size_t k = 0; k < count; ++k) block.at(offset + k) = (uint8_t)((int)k * mul + add);
}

// Every element equals the spec reader's value (exact: all hand-built values are exact in float).
void expect_matches_spec(DType t, const std::vector<uint8_t>& block, const std::vector<float>& y) {
  for (int i = 0; i < (int)y.size(); ++i) {
    const ElementSpec e = spec_element(t, block.data(), i);
    EXPECT_EQ(y[i], (float)e.value()) << dtype_name(t) << " element " << i;
  }
}

TEST(QuantLayout, BlockStructsMatchDtypeTable) {
  EXPECT_EQ(sizeof(quant::BlockQ4_0), (size_t)dtype_block_bytes(DType::Q4_0));
  EXPECT_EQ(sizeof(quant::BlockQ4_1), (size_t)dtype_block_bytes(DType::Q4_1));
  EXPECT_EQ(sizeof(quant::BlockQ5_0), (size_t)dtype_block_bytes(DType::Q5_0));
  EXPECT_EQ(sizeof(quant::BlockQ5_1), (size_t)dtype_block_bytes(DType::Q5_1));
  EXPECT_EQ(sizeof(quant::BlockQ8_0), (size_t)dtype_block_bytes(DType::Q8_0));
  EXPECT_EQ(sizeof(quant::BlockMxfp4), (size_t)dtype_block_bytes(DType::MXFP4));
  EXPECT_EQ(sizeof(quant::BlockQ2_K), (size_t)dtype_block_bytes(DType::Q2_K));
  EXPECT_EQ(sizeof(quant::BlockQ3_K), (size_t)dtype_block_bytes(DType::Q3_K));
  EXPECT_EQ(sizeof(quant::BlockQ4_K), (size_t)dtype_block_bytes(DType::Q4_K));
  EXPECT_EQ(sizeof(quant::BlockQ5_K), (size_t)dtype_block_bytes(DType::Q5_K));
  EXPECT_EQ(sizeof(quant::BlockQ6_K), (size_t)dtype_block_bytes(DType::Q6_K));
  for (DType t : reference_types()) EXPECT_TRUE(dtype_info(t).has_reference) << dtype_name(t);
  // ids fixed by GGUF
  EXPECT_EQ((uint32_t)DType::Q2_K, 10u);
  EXPECT_EQ((uint32_t)DType::Q6_K, 14u);
  EXPECT_EQ((uint32_t)DType::BF16, 30u);
  EXPECT_EQ((uint32_t)DType::MXFP4, 39u);
}

TEST(QuantLayout, RejectsPartialBlocksAndTypesWithoutReference) {
  std::vector<float> x(300, 1.0f), y(300);
  std::vector<uint8_t> q(1024);
  // A partial block is the caller's bug (callers check shapes at load): a failed VELOCITY_CHECK.
  EXPECT_THROW(quantize_row(DType::Q4_K, x.data(), q.data(), 100), InternalError);
  EXPECT_THROW(dequantize_row(DType::Q8_0, q.data(), y.data(), 33), InternalError);
  EXPECT_THROW(dot_row(DType::MXFP4, q.data(), x.data(), 48), InternalError);
  EXPECT_THROW(quantize_row(DType::Q8_K, x.data(), q.data(), 256), Error);
  EXPECT_THROW(dequantize_row(DType::IQ4_NL, q.data(), y.data(), 32), Error);
  EXPECT_THROW(dot_row(DType::I8, q.data(), x.data(), 32), Error);
}

TEST(QuantLayout, PlainFloats) {
  // F32: little-endian IEEE single
  std::vector<uint8_t> f32 = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC1};
  std::vector<float> y(2);
  dequantize_row(DType::F32, f32.data(), y.data(), 2);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -10.0f);

  // F16: 0x3C00 = 1, 0xC000 = -2, 0x7BFF = 65504 (largest), 0x0001 = 2^-24 (smallest subnormal),
  // 0x3555 = 0.333251953125
  const std::vector<uint8_t> f16 = {0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00, 0x55, 0x35};
  const std::vector<float> f16_values = {1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24), 0.333251953125f};
  y.resize(5);
  dequantize_row(DType::F16, f16.data(), y.data(), 5);
  EXPECT_EQ(y, f16_values);
  std::vector<uint8_t> back(10);
  quantize_row(DType::F16, f16_values.data(), back.data(), 5);
  EXPECT_EQ(back, f16);
  const float third = 1.0f / 3.0f;  // rounds to 0x3555
  quantize_row(DType::F16, &third, back.data(), 1);
  EXPECT_EQ(back[0], 0x55);
  EXPECT_EQ(back[1], 0x35);

  // BF16: the top half of the F32 bits. 0x3F80 = 1, 0xC0A0 = -5, 0x4049 = 3.140625
  const std::vector<uint8_t> bf16 = {0x80, 0x3F, 0xA0, 0xC0, 0x49, 0x40};
  const std::vector<float> bf16_values = {1.0f, -5.0f, 3.140625f};
  y.resize(3);
  dequantize_row(DType::BF16, bf16.data(), y.data(), 3);
  EXPECT_EQ(y, bf16_values);
  back.assign(6, 0);
  quantize_row(DType::BF16, bf16_values.data(), back.data(), 3);
  EXPECT_EQ(back, bf16);
  const float pi = 3.14159265f;  // 0x40490FDB -> rounds down to 0x4049
  quantize_row(DType::BF16, &pi, back.data(), 1);
  EXPECT_EQ(back[0], 0x49);
  EXPECT_EQ(back[1], 0x40);
}

TEST(QuantLayout, Q8_0) {
  // d = 0.5 (fp16 0x3800), qs int8
  std::vector<uint8_t> b(34);
  put(b, 0, {0x00, 0x38});
  const int8_t qs[7] = {-128, -127, -1, 0, 1, 2, 127};
  for (int j = 0; j < 32; ++j) b[2 + j] = (uint8_t)(j < 7 ? qs[j] : (int8_t)(j * 7 - 100));
  const auto y = dequantize_block(DType::Q8_0, b);
  const float expected[7] = {-64.0f, -63.5f, -0.5f, 0.0f, 0.5f, 1.0f, 63.5f};
  for (int j = 0; j < 7; ++j) EXPECT_EQ(y[j], expected[j]) << j;
  for (int j = 7; j < 32; ++j) EXPECT_EQ(y[j], (j * 7 - 100) * 0.5f) << j;
}

TEST(QuantLayout, Q4_0) {
  // d = 0.25 (0x3400); qs[j] = j | (15-j) << 4: element j = (j-8)/4, element j+16 = (7-j)/4
  std::vector<uint8_t> b(18);
  put(b, 0, {0x00, 0x34});
  for (int j = 0; j < 16; ++j) b[2 + j] = (uint8_t)(j | (15 - j) << 4);
  const auto y = dequantize_block(DType::Q4_0, b);
  EXPECT_EQ(y[0], -2.0f);
  EXPECT_EQ(y[15], 1.75f);
  EXPECT_EQ(y[16], 1.75f);
  EXPECT_EQ(y[31], -2.0f);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.25f) << j;
    EXPECT_EQ(y[j + 16], (7 - j) * 0.25f) << j;
  }
}

TEST(QuantLayout, Q4_1) {
  // d = 0.5 (0x3800), m = -1 (0xBC00): y = q/2 - 1
  std::vector<uint8_t> b(20);
  put(b, 0, {0x00, 0x38, 0x00, 0xBC});
  for (int j = 0; j < 16; ++j) b[4 + j] = (uint8_t)(j | (15 - j) << 4);
  const auto y = dequantize_block(DType::Q4_1, b);
  EXPECT_EQ(y[0], -1.0f);
  EXPECT_EQ(y[15], 6.5f);
  EXPECT_EQ(y[16], 6.5f);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j * 0.5f - 1.0f) << j;
    EXPECT_EQ(y[j + 16], (15 - j) * 0.5f - 1.0f) << j;
  }
}

// qh bytes 0F F0 01 80: the 32-bit word 0x8001F00F, bits 0-3, 12-15, 16 and 31 set
constexpr std::array<uint8_t, 4> kQh = {0x0F, 0xF0, 0x01, 0x80};
bool qh_bit(int j) { return (0x8001F00Fu >> j) & 1; }

TEST(QuantLayout, Q5_0) {
  // d = 1 (0x3C00); q = nibble | qh bit << 4, y = q - 16
  std::vector<uint8_t> b(22);
  put(b, 0, {0x00, 0x3C, kQh[0], kQh[1], kQh[2], kQh[3]});
  for (int j = 0; j < 16; ++j) b[6 + j] = (uint8_t)(j | (15 - j) << 4);
  const auto y = dequantize_block(DType::Q5_0, b);
  EXPECT_EQ(y[0], 0.0f);    // 0 | 16
  EXPECT_EQ(y[4], -12.0f);  // 4, bit clear
  EXPECT_EQ(y[12], 12.0f);  // 12 | 16
  EXPECT_EQ(y[16], 15.0f);  // 15 | 16 (bit 16)
  EXPECT_EQ(y[17], -2.0f);  // 14
  EXPECT_EQ(y[31], 0.0f);   // 0 | 16 (bit 31)
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (float)((j | qh_bit(j) << 4) - 16)) << j;
    EXPECT_EQ(y[j + 16], (float)(((15 - j) | qh_bit(j + 16) << 4) - 16)) << j;
  }
}

TEST(QuantLayout, Q5_1) {
  // d = 0.5 (0x3800), m = 2 (0x4000): y = q/2 + 2
  std::vector<uint8_t> b(24);
  put(b, 0, {0x00, 0x38, 0x00, 0x40, kQh[0], kQh[1], kQh[2], kQh[3]});
  for (int j = 0; j < 16; ++j) b[8 + j] = (uint8_t)(j | (15 - j) << 4);
  const auto y = dequantize_block(DType::Q5_1, b);
  EXPECT_EQ(y[0], 10.0f);
  EXPECT_EQ(y[4], 4.0f);
  EXPECT_EQ(y[16], 17.5f);
  EXPECT_EQ(y[17], 9.0f);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j | qh_bit(j) << 4) * 0.5f + 2.0f) << j;
    EXPECT_EQ(y[j + 16], ((15 - j) | qh_bit(j + 16) << 4) * 0.5f + 2.0f) << j;
  }
}

TEST(QuantLayout, Q2_K) {
  // scales[s] = sc | m << 4 with sc = s%15 + 1, m = s; d = 0.5 (0x3800), dmin = 0.25 (0x3400)
  std::vector<uint8_t> b(84);
  for (int s = 0; s < 16; ++s) b[s] = (uint8_t)((s % 15 + 1) | s << 4);
  put(b, 80, {0x00, 0x38, 0x00, 0x34});

  // all q = 1 (every bit pair 01): y = 0.5*sc - 0.25*m per sub-block
  fill_pattern(b, 16, 64, 0, 0x55);
  auto y = dequantize_block(DType::Q2_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.5f * (i / 16 % 15 + 1) - 0.25f * (i / 16)) << i;

  // qs[k] = 37k + 11: element i reads bit pair (i%128)/32 of qs[32*(i/128) + i%32]
  fill_pattern(b, 16, 64, 37, 11);
  y = dequantize_block(DType::Q2_K, b);
  EXPECT_EQ(y[0], 1.5f);      // qs[0] = 0x0B, pair 0 = 3; sc 1, m 0
  EXPECT_EQ(y[33], -0.5f);    // qs[1] = 0x30, pair 1 = 0; sc 3, m 2
  EXPECT_EQ(y[200], 3.5f);    // qs[40] = 0xD3, pair 2 = 1; sc 13, m 12
  EXPECT_EQ(y[255], -3.75f);  // qs[63] = 0x26, pair 3 = 0; sc 1, m 15
  expect_matches_spec(DType::Q2_K, b, y);
}

TEST(QuantLayout, Q3_K) {
  // 16 biased 6-bit scales v = {0,1,31,32,33,63,10,20,40,50,5,60,15,25,35,45}, packed by hand:
  // bytes 0..7 = low nibble of v[s] | low nibble of v[s+8] << 4; byte 8+k = high 2 bits of
  // v[k], v[k+4], v[k+8], v[k+12] at bits 0, 2, 4, 6.
  std::vector<uint8_t> b(110);
  put(b, 96, {0x80, 0x21, 0x5F, 0xC0, 0xF1, 0x9F, 0x3A, 0xD4, 0x28, 0x7C, 0x81, 0xB6});
  const int sc[16] = {-32, -31, -1, 0, 1, 31, -22, -12, 8, 18, -27, 28, -17, -7, 3, 13};  // v - 32
  // d = 0.25
  put(b, 108, {0x00, 0x34});

  // q = 1 everywhere (low bits 01, high bit set): y = d * sc
  fill_pattern(b, 0, 32, 0, 0xFF);
  fill_pattern(b, 32, 64, 0, 0x55);
  auto y = dequantize_block(DType::Q3_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.25f * sc[i / 16]) << i;

  // q = -4 everywhere (low bits 00, high bit clear)
  fill_pattern(b, 0, 32, 0, 0x00);
  fill_pattern(b, 32, 64, 0, 0x00);
  y = dequantize_block(DType::Q3_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.25f * sc[i / 16] * -4.0f) << i;

  // hmask[k] = 53k + 7, qs[k] = 37k + 11: q = low + 4*high - 4 with high = bit i/32 of hmask[i%32]
  fill_pattern(b, 0, 32, 53, 7);
  fill_pattern(b, 32, 64, 37, 11);
  y = dequantize_block(DType::Q3_K, b);
  EXPECT_EQ(y[0], -24.0f);    // low 3 (qs[0] 0x0B), high 1 (hmask[0] 0x07 bit 0): q 3, sc -32
  EXPECT_EQ(y[100], -11.0f);  // low 2 (qs[4] 0x9F pair 3), high 1 (hmask[4] 0xDB bit 3): q 2, sc -22
  EXPECT_EQ(y[130], 2.0f);    // low 1 (qs[34] 0xF5 pair 0), high 1 (hmask[2] 0x71 bit 4): q 1, sc 8
  EXPECT_EQ(y[255], -13.0f);  // low 0 (qs[63] 0x26 pair 3), high 0 (hmask[31] 0x72 bit 7): q -4, sc 13
  expect_matches_spec(DType::Q3_K, b, y);
}

// 8 (scale, min) pairs of 6 bits, packed by hand as get_scale_min_k4 reads them:
// sc = {1,2,3,4,33,50,63,17}, m = {5,6,7,8,40,0,63,21}
// bytes 0..3: sc[j] | (sc[j+4] >> 4) << 6;  bytes 4..7: m[j] | (m[j+4] >> 4) << 6;
// bytes 8..11: (sc[j+4] & 15) | (m[j+4] & 15) << 4
constexpr std::array<uint8_t, 12> kScalesK4 = {0x81, 0xC2, 0xC3, 0x44, 0x85, 0x06, 0xC7, 0x48, 0x81, 0x02, 0xFF, 0x51};
constexpr int kSc4[8] = {1, 2, 3, 4, 33, 50, 63, 17};
constexpr int kMin4[8] = {5, 6, 7, 8, 40, 0, 63, 21};

TEST(QuantLayout, Q4_K) {
  std::vector<uint8_t> b(144);
  put(b, 0, {0x00, 0x3C, 0x00, 0x38});  // d = 1, dmin = 0.5
  for (int k = 0; k < 12; ++k) b[4 + k] = kScalesK4[k];

  fill_pattern(b, 16, 128, 0, 0x00);  // q = 0: y = -dmin*m
  auto y = dequantize_block(DType::Q4_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], -0.5f * kMin4[i / 32]) << i;
  fill_pattern(b, 16, 128, 0, 0x11);  // q = 1: y = d*sc - dmin*m
  y = dequantize_block(DType::Q4_K, b);
  const float expected_q1[8] = {-1.5f, -1.0f, -0.5f, 0.0f, 13.0f, 50.0f, 31.5f, 6.5f};
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], expected_q1[i / 32]) << i;

  // qs[k] = 37k + 11: element i is the low (i%64 < 32) or high nibble of qs[32*(i/64) + i%32]
  fill_pattern(b, 16, 128, 37, 11);
  y = dequantize_block(DType::Q4_K, b);
  EXPECT_EQ(y[0], 8.5f);      // low nibble of qs[0] 0x0B = 11: 1*11 - 2.5
  EXPECT_EQ(y[40], 3.0f);     // high nibble of qs[8] 0x33 = 3: 2*3 - 3
  EXPECT_EQ(y[200], 157.5f);  // low nibble of qs[104] 0x13 = 3: 63*3 - 31.5
  EXPECT_EQ(y[255], 91.5f);   // high nibble of qs[127] 0x66 = 6: 17*6 - 10.5
  expect_matches_spec(DType::Q4_K, b, y);
}

TEST(QuantLayout, Q5_K) {
  std::vector<uint8_t> b(176);
  put(b, 0, {0x00, 0x3C, 0x00, 0x38});
  for (int k = 0; k < 12; ++k) b[4 + k] = kScalesK4[k];

  fill_pattern(b, 16, 32, 0, 0xFF);   // every high bit set
  fill_pattern(b, 48, 128, 0, 0x00);  // low nibbles 0: q = 16
  auto y = dequantize_block(DType::Q5_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 16.0f * kSc4[i / 32] - 0.5f * kMin4[i / 32]) << i;

  // qh[k] = 53k + 7 (bit 4 of element i: bit i/32 of qh[i%32]), qs as for Q4_K
  fill_pattern(b, 16, 32, 53, 7);
  fill_pattern(b, 48, 128, 37, 11);
  y = dequantize_block(DType::Q5_K, b);
  EXPECT_EQ(y[0], 24.5f);     // 11 + 16 (qh[0] 0x07 bit 0): 27 - 2.5
  EXPECT_EQ(y[40], 35.0f);    // 3 + 16 (qh[8] 0xAF bit 1): 2*19 - 3
  EXPECT_EQ(y[200], 157.5f);  // 3, qh[8] bit 6 clear
  EXPECT_EQ(y[255], 91.5f);   // 6, qh[31] 0x72 bit 7 clear
  expect_matches_spec(DType::Q5_K, b, y);
}

TEST(QuantLayout, Q6_K) {
  std::vector<uint8_t> b(210);
  const int8_t sc[16] = {-128, 127, 1, -1, 2, -3, 64, -64, 10, -10, 0, 5, 100, -100, 7, -7};
  for (int s = 0; s < 16; ++s) b[192 + s] = (uint8_t)sc[s];
  put(b, 208, {0x00, 0x30});  // d = 0.125

  // q = 1 everywhere: low nibble 1 (ql 0x11), high 2 bits 2 (qh 0xAA): 33 - 32
  fill_pattern(b, 0, 128, 0, 0x11);
  fill_pattern(b, 128, 64, 0, 0xAA);
  auto y = dequantize_block(DType::Q6_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.125f * sc[i / 16]) << i;

  // ql[k] = 37k + 11, qh[k] = 53k + 7
  fill_pattern(b, 0, 128, 37, 11);
  fill_pattern(b, 128, 64, 53, 7);
  y = dequantize_block(DType::Q6_K, b);
  EXPECT_EQ(y[0], -432.0f);    // ql[0] low 11, qh[0] pair 0 = 3: q 27, sc -128
  EXPECT_EQ(y[100], 152.0f);   // ql[36] 0x3F high 3, qh[4] 0xDB pair 3 = 3: q 19, sc 64
  EXPECT_EQ(y[130], -13.75f);  // ql[66] 0x95 low 5, qh[34] 0x11 pair 0 = 1: q -11, sc 10
  EXPECT_EQ(y[255], 22.75f);   // ql[127] 0x66 high 6, qh[63] 0x12 pair 3 = 0: q -26, sc -7
  expect_matches_spec(DType::Q6_K, b, y);
}

// E2M1 codes 0..15 written out: sign bit 3, then {0, 0.5, 1, 1.5, 2, 3, 4, 6}.
constexpr float kE2M1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                             -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// E2M1 value times 2^(e-127), in double; past the float range it reads as inf (e >= 254 with the
// larger codes), as in ggml. e = 255 (NaN in the OCP specification) is read as a number too.
float mxfp4_value(float e2m1, int e) {
  const double v = e2m1 * std::ldexp(1.0, e - 127);
  if (std::fabs(v) > FLT_MAX) return v > 0 ? INFINITY : -INFINITY;
  return (float)v;  // exact: a small dyadic number, subnormal at e = 0
}

TEST(QuantLayout, Mxfp4EveryCodeAndExponent) {
  // qs[j] = j | (15-j) << 4: element j holds code j, element j+16 code 15-j
  for (int e : {127, 128, 120, 1, 0, 200, 254, 255}) {
    std::vector<uint8_t> b(17);
    b[0] = (uint8_t)e;
    for (int j = 0; j < 16; ++j) b[1 + j] = (uint8_t)(j | (15 - j) << 4);
    const auto y = dequantize_block(DType::MXFP4, b);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(y[j], mxfp4_value(kE2M1[j], e)) << "e " << e << " code " << j;
      EXPECT_EQ(y[j + 16], mxfp4_value(kE2M1[15 - j], e)) << "e " << e << " code " << 15 - j;
    }
  }
  std::vector<uint8_t> b(17);
  b[0] = 127;
  b[1] = 0x07;   // element 0: code 7 = 6, element 16: code 0
  b[16] = 0xF9;  // element 15: code 9 = -0.5, element 31: code 15 = -6
  const auto y = dequantize_block(DType::MXFP4, b);
  EXPECT_EQ(y[0], 6.0f);
  EXPECT_EQ(y[16], 0.0f);
  EXPECT_EQ(y[15], -0.5f);
  EXPECT_EQ(y[31], -6.0f);
  b[0] = 128;
  EXPECT_EQ(dequantize_block(DType::MXFP4, b)[31], -12.0f);
  b[0] = 120;
  EXPECT_EQ(dequantize_block(DType::MXFP4, b)[0], 6.0f / 128.0f);
}

TEST(QuantLayout, Mxfp4Helpers) {
  EXPECT_EQ(e8m0_to_fp32_half(127), 0.5f);
  EXPECT_EQ(e8m0_to_fp32_half(128), 1.0f);
  EXPECT_EQ(e8m0_to_fp32_half(2), std::ldexp(1.0f, -126));
  EXPECT_EQ(e8m0_to_fp32_half(1), std::ldexp(1.0f, -127));
  EXPECT_EQ(e8m0_to_fp32_half(0), std::ldexp(1.0f, -128));
  EXPECT_EQ(e8m0_to_fp32_half(255), std::ldexp(1.0f, 127));
  for (int code = 0; code < 16; ++code) {
    EXPECT_EQ(e2m1_to_fp32((uint8_t)code), kE2M1[code]) << code;
    EXPECT_EQ(e2m1_to_fp32((uint8_t)(code | 0xF0)), kE2M1[code]) << code;  // high bits ignored
    EXPECT_EQ(kE2M1Doubled[code], 2.0f * kE2M1[code]) << code;
  }
}

// Random bytes in every block (fp16 fields kept to finite values of moderate size) read the same
// through dequantize_row as through the spec reader, to float rounding of d*sc*q - dmin*m.
TEST(QuantLayout, RandomBlocksMatchSpecReader) {
  std::mt19937 rng(20240611);
  for (DType t : reference_types()) {
    if (dtype_block_size(t) == 1) continue;
    const int64_t n_blocks = 64, n = n_blocks * dtype_block_size(t);
    std::vector<uint8_t> q((size_t)dtype_row_bytes(t, n));
    for (auto& byte : q) byte = (uint8_t)rng();
    for (int64_t ib = 0; ib < n_blocks; ++ib) {
      uint8_t* block = q.data() + ib * dtype_block_bytes(t);
      for (int offset : quant_test::half_offsets(t)) {
        // sign random, exponent field 5..24 (about 2^-10 .. 2^9), mantissa random
        const uint16_t h = (uint16_t)((rng() & 0x8000u) | (5 + rng() % 20) << 10 | (rng() & 0x3FFu));
        std::memcpy(block + offset, &h, 2);
      }
      if (t == DType::MXFP4) block[0] = (uint8_t)(100 + rng() % 55);
    }
    std::vector<float> y((size_t)n);
    dequantize_row(t, q.data(), y.data(), n);
    for (int64_t ib = 0; ib < n_blocks; ++ib) {
      for (int i = 0; i < dtype_block_size(t); ++i) {
        const ElementSpec e = spec_element(t, q.data() + ib * dtype_block_bytes(t), i);
        const double magnitude = std::fabs(e.scale * e.q) + std::fabs(e.min);
        ASSERT_NEAR(y[ib * dtype_block_size(t) + i], e.value(), 1e-6 * magnitude)
            << dtype_name(t) << " block " << ib << " element " << i;
      }
    }
  }
}

}  // namespace
}  // namespace velocity
