#include "tools/synth_random.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace velocity::tools::synthetic {
namespace {

constexpr float kWeightRms = 0.02f;

void put_f16(uint8_t* p, float v) {
  const uint16_t h = fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

void random_bytes(Rng& rng, uint8_t* p, size_t n) {
  while (n >= 8) {
    const uint64_t w = rng.next();
    std::memcpy(p, &w, 8);
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    const uint64_t w = rng.next();
    std::memcpy(p, &w, n);
  }
}

// A block scale for a target RMS given the RMS of (code * sub-scale), jittered by ±25%.
float block_scale(Rng& rng, float unit_rms) {
  return kWeightRms / unit_rms * (0.75f + 0.5f * rng.uniform_f());
}
// The same with a random sign, for formats whose codes are not centred on zero without a min
// (q - 8 has mean -0.5): the sign flip makes the weights zero-mean over blocks.
float signed_block_scale(Rng& rng, float unit_rms) {
  const float d = block_scale(rng, unit_rms);
  return (rng.next() & 1) ? d : -d;
}

// Packs eight 6-bit scales and mins the way Q4_K / Q5_K store them (ggml's get_scale_min_k4).
void pack_scale_min_k4(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

// --- 32-element blocks. Code RMS values below are exact for uniform codes. -------------------

// Q8_0: d, int8 qs[32]; y = d * q. Uniform q in [-127, 127] has RMS 73.6.
void block_q8_0(Rng& rng, uint8_t* b) {
  put_f16(b, block_scale(rng, 73.6f));
  random_bytes(rng, b + 2, 32);
  for (int i = 0; i < 32; ++i)
    if (b[2 + i] == 0x80) b[2 + i] = 0x81;  // -128 -> -127, as ggml's quantiser never emits -128
}
// Q4_0: d, qs[16]; y = d * (q - 8). RMS of q - 8 is 4.64.
void block_q4_0(Rng& rng, uint8_t* b) {
  put_f16(b, signed_block_scale(rng, 4.64f));
  random_bytes(rng, b + 2, 16);
}
// Q4_1: d, m, qs[16]; y = d * q + m with m = -7.5 d (centred). RMS of q - 7.5 is 4.61.
void block_q4_1(Rng& rng, uint8_t* b) {
  const float d = block_scale(rng, 4.61f);
  put_f16(b, d);
  put_f16(b + 2, -7.5f * d);
  random_bytes(rng, b + 4, 16);
}
// Q5_0: d, qh[4], qs[16]; y = d * (q - 16). RMS of q - 16 is 9.25.
void block_q5_0(Rng& rng, uint8_t* b) {
  put_f16(b, signed_block_scale(rng, 9.25f));
  random_bytes(rng, b + 2, 20);
}
// Q5_1: d, m, qh[4], qs[16]; y = d * q + m with m = -15.5 d. RMS of q - 15.5 is 9.23.
void block_q5_1(Rng& rng, uint8_t* b) {
  const float d = block_scale(rng, 9.23f);
  put_f16(b, d);
  put_f16(b + 2, -15.5f * d);
  random_bytes(rng, b + 4, 20);
}
// MXFP4: e (E8M0), qs[16]; y = 2^(e-127) * E2M1(q). RMS of E2M1 over all 16 codes is 2.93, so
// e = 119..120 (2^-8 .. 2^-7) gives RMS 0.011 .. 0.023.
void block_mxfp4(Rng& rng, uint8_t* b) {
  b[0] = static_cast<uint8_t>(119 + (rng.next() & 1));
  random_bytes(rng, b + 1, 16);
}

// --- 256-element super-blocks -----------------------------------------------------------------

// Q2_K: scales[16] (sc | m << 4), qs[64], d, dmin; y = d * sc * q - dmin * m, q in 0..3.
// sc in 8..15, dmin = 2 d, m = round(0.75 sc) centres q on 1.5 (RMS 1.118); mean sc 11.5.
void block_q2_k(Rng& rng, uint8_t* b) {
  const float d = block_scale(rng, 11.5f * 1.118f);
  for (int s = 0; s < 16; ++s) {
    const int sc = 8 + static_cast<int>(rng.below(8));
    const int m = static_cast<int>(std::lround(0.75 * sc));
    b[s] = static_cast<uint8_t>(sc | (m << 4));
  }
  random_bytes(rng, b + 16, 64);
  put_f16(b + 80, d);
  put_f16(b + 82, 2.0f * d);
}
// Q3_K: hmask[32], qs[64], scales[12] (16 x 6 bits), d; y = d * (sc - 32) * (q - 4), q in 0..7
// (RMS of q - 4 is 2.345). sc - 32 in 8..15, mean 11.5.
void block_q3_k(Rng& rng, uint8_t* b) {
  random_bytes(rng, b, 96);  // hmask, qs
  uint8_t sc[16];
  for (auto& s : sc) s = static_cast<uint8_t>(32 + 8 + rng.below(8));
  uint8_t* scales = b + 96;
  std::memset(scales, 0, 12);
  for (int s = 0; s < 16; ++s) {
    const uint8_t low = sc[s] & 0xF;
    const uint8_t high = sc[s] >> 4;
    if (s < 8) scales[s] |= low;
    else scales[s - 8] |= static_cast<uint8_t>(low << 4);
    scales[8 + s % 4] |= static_cast<uint8_t>(high << (2 * (s / 4)));
  }
  put_f16(b + 108, signed_block_scale(rng, 11.5f * 2.345f));
}
// Q4_K: d, dmin, scales[12], qs[128]; y = d * sc * q - dmin * m, q in 0..15. sc in 16..31,
// dmin = 8 d, m = round(sc * 7.5 / 8) centres q on 7.5 (RMS 4.61); mean sc 23.5.
void block_q4_k(Rng& rng, uint8_t* b) {
  const float d = block_scale(rng, 23.5f * 4.61f);
  put_f16(b, d);
  put_f16(b + 2, 8.0f * d);
  uint8_t sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>(16 + rng.below(16));
    m[j] = static_cast<uint8_t>(std::lround(sc[j] * 7.5 / 8.0));
  }
  pack_scale_min_k4(sc, m, b + 4);
  random_bytes(rng, b + 16, 128);
}
// Q5_K: d, dmin, scales[12], qh[32], qs[128]; as Q4_K with q in 0..31: dmin = 16 d,
// m = round(sc * 15.5 / 16) (RMS of q - 15.5 is 9.23).
void block_q5_k(Rng& rng, uint8_t* b) {
  const float d = block_scale(rng, 23.5f * 9.23f);
  put_f16(b, d);
  put_f16(b + 2, 16.0f * d);
  uint8_t sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>(16 + rng.below(16));
    m[j] = static_cast<uint8_t>(std::lround(sc[j] * 15.5 / 16.0));
  }
  pack_scale_min_k4(sc, m, b + 4);
  random_bytes(rng, b + 16, 160);
}
// Q6_K: ql[128], qh[64], int8 scales[16], d; y = d * sc * (q - 32), q in 0..63 (RMS 18.5).
// sc in 8..15 keeps d a normal fp16 number.
void block_q6_k(Rng& rng, uint8_t* b) {
  random_bytes(rng, b, 192);
  for (int s = 0; s < 16; ++s) b[192 + s] = static_cast<uint8_t>(8 + rng.below(8));
  put_f16(b + 208, signed_block_scale(rng, 11.5f * 18.5f));
}

using BlockFn = void (*)(Rng&, uint8_t*);

BlockFn block_fn(DType type) {
  switch (type) {
    case DType::Q8_0: return block_q8_0;
    case DType::Q4_0: return block_q4_0;
    case DType::Q4_1: return block_q4_1;
    case DType::Q5_0: return block_q5_0;
    case DType::Q5_1: return block_q5_1;
    case DType::MXFP4: return block_mxfp4;
    case DType::Q2_K: return block_q2_k;
    case DType::Q3_K: return block_q3_k;
    case DType::Q4_K: return block_q4_k;
    case DType::Q5_K: return block_q5_k;
    case DType::Q6_K: return block_q6_k;
    default: return nullptr;
  }
}

float plain_value(Rng& rng, ValueKind kind) {
  const float u = rng.uniform_f();
  switch (kind) {
    case ValueKind::Weight: return (2.0f * u - 1.0f) * (kWeightRms * 1.7320508f);  // uniform, RMS 0.02
    case ValueKind::Norm: return 0.95f + 0.1f * u;
    case ValueKind::Bias: return (2.0f * u - 1.0f) * 0.02f;
    case ValueKind::Sinks: return u - 0.5f;
  }
  return 0.0f;
}

uint64_t unit_seed(uint64_t key, int64_t unit) {
  return mix64(key + 0xd1b54a32d192ed03ull * static_cast<uint64_t>(unit + 1));
}

}  // namespace

uint64_t tensor_key(uint64_t seed, std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return mix64(h ^ mix64(seed));
}

int64_t unit_elements(DType type) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: return 64;
    default: return dtype_block_size(type);
  }
}

uint64_t fill_units(DType type, ValueKind kind, uint64_t key, int64_t n_elements, int64_t first_unit,
                    int64_t n_units, uint8_t* out) {
  const int64_t per_unit = unit_elements(type);
  VELOCITY_CHECK(first_unit >= 0 && n_units >= 0 && (first_unit + n_units) * per_unit < n_elements + per_unit,
                 "units {}+{} of a {}-element tensor", first_unit, n_units, n_elements);
  uint8_t* p = out;
  if (type == DType::F32 || type == DType::F16 || type == DType::BF16) {
    for (int64_t u = first_unit; u < first_unit + n_units; ++u) {
      Rng rng(unit_seed(key, u));
      const int64_t n = std::min(per_unit, n_elements - u * per_unit);
      for (int64_t i = 0; i < n; ++i) {
        const float v = plain_value(rng, kind);
        if (type == DType::F32) {
          std::memcpy(p, &v, 4);
          p += 4;
        } else {
          const uint16_t h = type == DType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
          std::memcpy(p, &h, 2);
          p += 2;
        }
      }
    }
    return static_cast<uint64_t>(p - out);
  }
  const BlockFn fn = block_fn(type);
  VELOCITY_CHECK(fn != nullptr, "synth cannot generate {} data", dtype_name(type));
  VELOCITY_CHECK(kind == ValueKind::Weight, "quantised {} data is generated for weights only", dtype_name(type));
  VELOCITY_CHECK(n_elements % per_unit == 0, "{} elements are not whole {} blocks", n_elements, dtype_name(type));
  const int64_t block_bytes = dtype_block_bytes(type);
  for (int64_t u = first_unit; u < first_unit + n_units; ++u) {
    Rng rng(unit_seed(key, u));
    fn(rng, p);
    p += block_bytes;
  }
  return static_cast<uint64_t>(p - out);
}

}  // namespace velocity::tools::synthetic
