// Internal to the reference quantisers (quant*.cpp) and their tests: the GGUF block structs,
// byte for byte as ggml-common.h lays them out, and the per-format entry points that quant.cpp
// dispatches to.
//
// Half-precision fields are the raw IEEE binary16 bits (little-endian, as in the file). Rows may
// sit at any address, so blocks are never accessed in place through a cast pointer: they are
// copied in and out with load_block / store_block (memcpy), which is alignment- and
// aliasing-safe and costs nothing next to the arithmetic.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace velocity::quant {

static_assert(std::endian::native == std::endian::little,
              "GGUF blocks are little-endian; the reference code copies them as-is");

inline constexpr int kQK = 32;     // elements per block of Q4_0 .. Q8_0 and MXFP4
inline constexpr int kQK_K = 256;  // elements per super-block of the K-quants

// --- 32-element blocks ------------------------------------------------------------------------

// y[j] = d * (q[j] - 8); q[j] in 0..15. Element j < 16 is the low nibble of qs[j], element
// j + 16 the high nibble of qs[j].
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
// y[j] = d * q[j] + m; q[j] in 0..15, nibbles as Q4_0.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
// y[j] = d * (q[j] - 16); q[j] in 0..31: low 4 bits as Q4_0's nibble, bit 4 is bit j of the
// little-endian 32-bit word qh.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// y[j] = d * q[j] + m; q[j] in 0..31, bits as Q5_0.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// y[j] = d * qs[j].
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// y[j] = 2^(e-127) * E2M1(q[j]); e is an E8M0 exponent byte, q[j] 4-bit codes with nibbles as
// Q4_0.
struct BlockMxfp4 {
  uint8_t e;
  uint8_t qs[kQK / 2];
};

// --- 256-element super-blocks (K-quants) ------------------------------------------------------

// 16 sub-blocks of 16: y = d * sc * q - dmin * m, q in 0..3; scales[s] = sc | m << 4.
// Element i (i in 0..255): h = i/128, r = i%128; q = (qs[32h + r%32] >> 2*(r/32)) & 3.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
// 16 sub-blocks of 16: y = d * (sc - 32) * (q - 4), q in 0..7; sc 6-bit packed in 12 bytes:
// low nibble of scales[s] (s < 8) or high nibble of scales[s-8] (s >= 8), high 2 bits at
// scales[8 + s%4] >> 2*(s/4). Low 2 bits of q as Q2_K's qs; bit 2 of q is bit (i/32) of
// hmask[i%32].
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 8 sub-blocks of 32: y = d * sc * q - dmin * m, q in 0..15; sc, m 6-bit packed in 12 bytes
// (see scale_min_k4). Element i: c = i/64; q is the low (i%64 < 32) or high nibble of
// qs[32c + i%32].
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
// As Q4_K with q in 0..31: bit 4 of q is bit (i/32) of qh[i%32].
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// 16 sub-blocks of 16: y = d * scales[s] * (q - 32), q in 0..63. Element i: h = i/128,
// g = (i%128)/32, l = i%32; low 4 bits: nibble (g >= 2 ? high : low) of ql[64h + 32(g&1) + l];
// high 2 bits: (qh[32h + l] >> 2g) & 3.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};

// Byte sizes fixed by GGUF (dtype.cpp's table; the tests also compare against dtype_info).
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockMxfp4) == 17);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

template <class Block>
Block load_block(const void* row, int64_t ib) {
  Block b;
  std::memcpy(&b, static_cast<const uint8_t*>(row) + ib * (int64_t)sizeof(Block), sizeof(Block));
  return b;
}

template <class Block>
void store_block(void* row, int64_t ib, const Block& b) {
  std::memcpy(static_cast<uint8_t*>(row) + ib * (int64_t)sizeof(Block), &b, sizeof(Block));
}

// Round to nearest, ties to even (the default FP rounding mode), as ggml's nearest_int does
// with its 1.5*2^23 trick. Its domain is |v| <= 2^22; callers only pass values within a few
// thousand, the clamp keeps the conversion defined for any input (NaN -> 0).
inline int nearest_int(float v) {
  constexpr float kLimit = 4194303.0f;
  if (!(v == v)) return 0;
  v = v > kLimit ? kLimit : (v < -kLimit ? -kLimit : v);
  return (int)std::nearbyint(v);
}

// Per-format entry points; x, y: n floats; q: the row's blocks; n a multiple of the block size
// (checked by quant.cpp).
#define VELOCITY_QUANT_FORMAT(name)                           \
  void quantize_##name(const float* x, void* q, int64_t n);   \
  void dequantize_##name(const void* q, float* y, int64_t n); \
  float dot_##name(const void* w, const float* x, int64_t n);
VELOCITY_QUANT_FORMAT(f32)
VELOCITY_QUANT_FORMAT(f16)
VELOCITY_QUANT_FORMAT(bf16)
VELOCITY_QUANT_FORMAT(q4_0)
VELOCITY_QUANT_FORMAT(q4_1)
VELOCITY_QUANT_FORMAT(q5_0)
VELOCITY_QUANT_FORMAT(q5_1)
VELOCITY_QUANT_FORMAT(q8_0)
VELOCITY_QUANT_FORMAT(q2_K)
VELOCITY_QUANT_FORMAT(q3_K)
VELOCITY_QUANT_FORMAT(q4_K)
VELOCITY_QUANT_FORMAT(q5_K)
VELOCITY_QUANT_FORMAT(q6_K)
VELOCITY_QUANT_FORMAT(mxfp4)
#undef VELOCITY_QUANT_FORMAT

}  // namespace velocity::quant
