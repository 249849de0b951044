// Conversions between float and the 16-bit float formats stored in GGUF (IEEE half, bfloat16),
// and the E8M0 / E2M1 pieces of MXFP4. Exact, portable, no hardware intrinsics required.
#pragma once

#include <cstdint>
#include <cstring>

namespace velocity {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE 754 binary16 -> binary32, exact for every input (subnormals, inf, NaN).
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    mant &= 0x3ffu;
    return bits_float(sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13));
  }
  return bits_float(sign | ((exp + (127 - 15)) << 23) | (mant << 13));
}

// binary32 -> binary16 with round-to-nearest-even; overflow goes to inf, NaN stays NaN.
inline uint16_t fp32_to_fp16(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to >= 65520 -> inf
  if (abs < 0x38800000u) {                                     // result is subnormal or zero
    if (abs < 0x33000000u) return (uint16_t)sign;              // < 2^-25 rounds to 0
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24 -> position of the half subnormal lsb
    uint32_t h = m >> (shift);
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return (uint16_t)(sign | h);
}

inline float bf16_to_fp32(uint16_t b) { return bits_float((uint32_t)b << 16); }

// binary32 -> bfloat16 with round-to-nearest-even; NaN stays a (quiet) NaN.
inline uint16_t fp32_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// MXFP4 pieces (OCP Microscaling). An E8M0 byte e is a pure power of two 2^(e-127); an E2M1 code
// (sign bit 3, then 2 exponent and 1 mantissa bits) is one of {0, 0.5, 1, 1.5, 2, 3, 4, 6} with a
// sign. As in ggml, the E2M1 values are kept doubled so that they are small integers, and the
// scale is halved to match: value = kE2M1Doubled[code] * e8m0_to_fp32_half(e), a small integer
// times a power of two, so exact whenever it is within float range.
inline constexpr int8_t kE2M1Doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// 2^(e-128) for every byte e: subnormal for e = 0 and 1, 2^127 for e = 255 (which the OCP
// specification reserves for NaN; ggml decodes it as a number and so do we).
inline float e8m0_to_fp32_half(uint8_t e) {
  return bits_float(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

// The E2M1 value of a 4-bit code (bits above the low 4 are ignored); code 8 is -0 read as 0.
inline float e2m1_to_fp32(uint8_t code) { return kE2M1Doubled[code & 0x0F] * 0.5f; }

}  // namespace velocity
