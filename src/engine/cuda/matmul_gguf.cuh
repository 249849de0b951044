// GGUF rows read in place, 32 elements at a time, with the reference's float operations (so
// the values are bitwise those of core/quant*.cpp): the generic f32 product (F32 weights,
// odd-length F16/BF16 rows) and get_rows on weights in the GGUF layout. Host and device (tested
// on the host by tests/gpu/matmul_test.cpp). Byte-wise reads: GGUF rows may sit at any address.
#pragma once

#include <cstdint>

#include "engine/cuda/quant_device.cuh"

namespace velocity::engine::cuda::mm {

// ---- GGUF rows: 32 consecutive elements, reference-exact (the generic kernel, get_rows) --------

VELOCITY_HD uint32_t u16_at(const uint8_t* p) { return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8; }
VELOCITY_HD uint32_t u32_at(const uint8_t* p) { return u16_at(p) | u16_at(p + 2) << 16; }

// v[i] = element 32 * item + i of a GGUF row of `type` for i < n (n = 32 except at the end of
// an F32/F16/BF16 row). Byte-wise reads: GGUF rows may sit at any address.
VELOCITY_HD void dequant32_gguf(DType type, const uint8_t* row, int64_t item, int n, float* v) {
  switch (type) {
    case DType::F32:
      for (int i = 0; i < n; ++i) v[i] = bits_to_float(u32_at(row + 4 * (32 * item + i)));
      return;
    case DType::F16:
      for (int i = 0; i < n; ++i) v[i] = h2f(u16_at(row + 2 * (32 * item + i)));
      return;
    case DType::BF16:
      for (int i = 0; i < n; ++i) v[i] = bits_to_float(u16_at(row + 2 * (32 * item + i)) << 16);
      return;
    case DType::Q8_0: {
      const uint8_t* b = row + 34 * item;
      const float d = h2f(u16_at(b));
      for (int i = 0; i < 32; ++i) v[i] = fmul_rn(static_cast<float>(static_cast<int8_t>(b[2 + i])), d);
      return;
    }
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1: {
      const bool high = type == DType::Q5_0 || type == DType::Q5_1, min = type == DType::Q4_1 || type == DType::Q5_1;
      const int bytes = 18 + (high ? 4 : 0) + (min ? 2 : 0);
      const uint8_t* b = row + bytes * item;
      const float d = h2f(u16_at(b));
      const float m = min ? h2f(u16_at(b + 2)) : 0.0f;
      const uint32_t qh = high ? u32_at(b + (min ? 4 : 2)) : 0;
      const uint8_t* qs = b + 2 + (min ? 2 : 0) + (high ? 4 : 0);
      for (int i = 0; i < 32; ++i) {
        int q = i < 16 ? qs[i] & 0x0F : qs[i - 16] >> 4;
        if (high) q |= static_cast<int>((qh >> i) & 1) << 4;
        if (min)
          v[i] = fadd_rn(fmul_rn(static_cast<float>(q), d), m);
        else
          v[i] = fmul_rn(static_cast<float>(q - (high ? 16 : 8)), d);
      }
      return;
    }
    case DType::MXFP4: {
      constexpr int8_t kDoubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
      const uint8_t* b = row + 17 * item;
      const float s = e8m0_half(b[0]);
      for (int i = 0; i < 32; ++i)
        v[i] = fmul_rn(static_cast<float>(kDoubled[i < 16 ? b[1 + i] & 0x0F : b[1 + i - 16] >> 4]), s);
      return;
    }
    case DType::Q2_K: {
      const uint8_t* b = row + 84 * (item >> 3);
      const float d = h2f(u16_at(b + 80)), dmin = h2f(u16_at(b + 82));
      for (int t = 0; t < 32; ++t) {
        const int i = 32 * static_cast<int>(item & 7) + t, h = i >> 7, r = i & 127;
        const int q = (b[16 + 32 * h + (r & 31)] >> (2 * (r >> 5))) & 3;
        const uint8_t s = b[i >> 4];
        v[t] = fadd_rn(fmul_rn(fmul_rn(d, static_cast<float>(s & 0xF)), static_cast<float>(q)),
                       -fmul_rn(dmin, static_cast<float>(s >> 4)));
      }
      return;
    }
    case DType::Q3_K: {
      const uint8_t* b = row + 110 * (item >> 3);
      const float d = h2f(u16_at(b + 108));
      const uint8_t* sc = b + 96;
      for (int t = 0; t < 32; ++t) {
        const int i = 32 * static_cast<int>(item & 7) + t, h = i >> 7, r = i & 127, j = i >> 4;
        int q = (b[32 + 32 * h + (r & 31)] >> (2 * (r >> 5))) & 3;
        if (!((b[i & 31] >> (i >> 5)) & 1)) q -= 4;
        const int low = j < 8 ? sc[j] & 0x0F : sc[j - 8] >> 4;
        const int high = (sc[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        v[t] = fmul_rn(fmul_rn(d, static_cast<float>((low | high << 4) - 32)), static_cast<float>(q));
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool high = type == DType::Q5_K;
      const uint8_t* b = row + (high ? 176 : 144) * (item >> 3);
      const float d = h2f(u16_at(b)), dmin = h2f(u16_at(b + 2));
      const uint8_t* packed = b + 4;
      const int j = static_cast<int>(item & 7);  // sub-block of 32
      int sc, m;
      if (j < 4) {
        sc = packed[j] & 63;
        m = packed[j + 4] & 63;
      } else {
        sc = (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4);
        m = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
      }
      const float scale = fmul_rn(d, static_cast<float>(sc)), min = fmul_rn(dmin, static_cast<float>(m));
      const uint8_t* qs = b + (high ? 48 : 16);
      for (int t = 0; t < 32; ++t) {
        const int i = 32 * j + t, c = i >> 6;
        int q = (i & 63) < 32 ? qs[32 * c + (i & 31)] & 0x0F : qs[32 * c + (i & 31)] >> 4;
        if (high && ((b[16 + (i & 31)] >> (i >> 5)) & 1)) q += 16;
        v[t] = fadd_rn(fmul_rn(scale, static_cast<float>(q)), -min);
      }
      return;
    }
    case DType::Q6_K: {
      const uint8_t* b = row + 210 * (item >> 3);
      const float d = h2f(u16_at(b + 208));
      for (int t = 0; t < 32; ++t) {
        const int i = 32 * static_cast<int>(item & 7) + t, h = i >> 7, g = (i & 127) >> 5, l = i & 31;
        const uint8_t low_byte = b[64 * h + 32 * (g & 1) + l];
        const int low = g < 2 ? low_byte & 0x0F : low_byte >> 4;
        const int hi = (b[128 + 32 * h + l] >> (2 * g)) & 3;
        const int q = (low | hi << 4) - 32;
        v[t] = fmul_rn(fmul_rn(d, static_cast<float>(static_cast<int8_t>(b[192 + (i >> 4)]))), static_cast<float>(q));
      }
      return;
    }
    default:
      for (int i = 0; i < n; ++i) v[i] = 0.0f;
      return;
  }
}

}  // namespace velocity::engine::cuda::mm
