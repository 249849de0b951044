// Internal to matmul*.cpp: the CPU's packed weight layout, made once at load (pack_weight in
// matmul.h) for Q8_0, Q4_0, MXFP4, Q4_K and Q6_K on CPUs with AVX-512 VNNI.
//
// Why: in GGUF's layout a Q8_0 row is 34-byte blocks (fp16 scale, 32 int8), so a kernel that
// walks one row per step needs unaligned loads, a sign trick for signed x signed products, and a
// horizontal sum per row and token. Packed, 16 rows are interleaved 4 bytes at a time: one
// 64-byte vector holds elements 4g..4g+3 of a block for all 16 rows, so vpdpbusd against the
// token's 4 activation bytes broadcast to every lane gives each row's block dot product in its
// own int32 lane, fully reduced after the block's 8 groups; the float work (convert, scale, fma)
// is then one vector op per 16 rows per block per token, and the 16 outputs are one store.
// Weights enter vpdpbusd unsigned, u = w + offset (Q8_0: w + 128 stored; Q4_0: the nibble,
// w + 8; MXFP4: the E2M1 table entry + 128, looked up per load); the extra offset * sum(a) is
// taken off exactly by starting the block's integer sum at the activations' bias plane
// (quant_act.h, -128 * sum of the block's qs; shifted right by 4 for Q4_0's offset of 8).
//
// Layout of one matrix, n_out rows of n_in = 32 * nb elements, P = packed_row_bytes bytes a row:
//   tile k (rows 16k .. 16k+15) at 16 k P, for k < n_out / 16:
//     quants  Q8_0: nb x 8 x 16 x 4 bytes: block b, group g (elements 4g..4g+3), row i: w + 128
//             Q4_0, MXFP4: nb x 4 x 16 x 4 bytes: block b, c < 4, row i, j < 4: GGUF's byte
//             qs[4c + j], whose low nibble is element 4c + j and high nibble element 16 + 4c + j
//     scales  nb x 16: block b, row i; fp16 d (Q8_0, Q4_0) or the E8M0 byte (MXFP4)
//     zeros up to 16 P
//   Q4_K instead, per super-block b of 256 elements, 2304 bytes (16 GGUF blocks) at 2304 b:
//     quants  4 x 8 x 16 x 4 bytes: chunk c, group k, row i, j < 4: GGUF's qs[32c + 4k + j]
//             (low nibble: sub-block 2c, element 4k + j; high nibble: sub-block 2c + 1)
//     d, dmin 16 fp16 each (row i)
//     low     8 x 16 bytes: sub-block s, row i: (sc_s & 15) | (m_s & 15) << 4
//     high    16 uint32 (row i): bits 2s, 2s+1: sc_s >> 4; bits 16 + 2s, 17 + 2s: m_s >> 4
//   Q6_K, per super-block b, 3360 bytes (16 GGUF blocks) at 3360 b:
//     ql      4 x 8 x 16 x 4 bytes: chunk c, group k, row i, j < 4: GGUF's ql[32c + 4k + j]
//     qh      2 x 8 x 16 x 4 bytes: half h, group k, row i, j < 4: GGUF's qh[32h + 4k + j]
//     scales  16 x 16 int8: sub-block s, row i
//     d       16 fp16 (row i)
//   (element 128h + 32g + 4k + j: low 4 bits from ql chunk 2h + (g & 1), low nibble for g < 2,
//   high 2 bits from bits 2g, 2g+1 of the qh byte of half h; q - 32 is the weight)
//   rows 16 (n_out / 16) .. n_out - 1 (the tail): GGUF rows, each at the start of a P-byte slot.
// P = GGUF's row bytes rounded up past the next multiple of 4 (1 to 4 bytes more), so that
// Weight::row_bytes tells the layouts apart, a matrix of a 3-D weight still starts at
// n_out * row_bytes (Weight::matrix), and a tile is a multiple of 64 bytes.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/fp16.h"

namespace velocity::engine::cpu {

constexpr int kPackRows = 16;

// Whether `type` has a packed layout at all (whichever ISA later runs it).
inline bool has_packed_layout(DType type) {
  return type == DType::Q8_0 || type == DType::Q4_0 || type == DType::MXFP4 || type == DType::Q4_K || type == DType::Q6_K;
}

constexpr int64_t kPackedQ6KBytes = 3360;  // a super-block of a Q6_K tile
// Q6_K: the signed weight integer (q - 32) of element e < 256 of super-block b, tile row i.
inline int packed_q6_k_weight(const uint8_t* tile, int64_t b, int i, int e) {
  const uint8_t* sb = tile + kPackedQ6KBytes * b;
  const int h = e / 128, g = (e / 32) % 4, k = (e % 32) / 4, j = e % 4;
  const uint8_t low_byte = sb[512 * (2 * h + (g & 1)) + 64 * k + 4 * i + j];
  const int low = g < 2 ? low_byte & 15 : low_byte >> 4;
  const int high = (sb[2048 + 512 * h + 64 * k + 4 * i + j] >> (2 * g)) & 3;
  return (low | high << 4) - 32;
}
// Q6_K: d * scale of sub-block s < 16 of super-block b, tile row i (GGUF's float steps).
inline float packed_q6_k_scale(const uint8_t* tile, int64_t b, int i, int s) {
  const uint8_t* sb = tile + kPackedQ6KBytes * b;
  const float d = fp16_to_fp32((uint16_t)(sb[3328 + 2 * i] | sb[3329 + 2 * i] << 8));
  return d * (float)(int8_t)sb[3072 + 16 * s + i];
}

constexpr int64_t kPackedQ4KBytes = 2304;  // a super-block of a Q4_K tile
// Q4_K: the 6-bit scale and min of sub-block s < 8 of super-block b, tile row i.
inline void packed_q4_k_scale_min(const uint8_t* tile, int64_t b, int i, int s, int& sc, int& m) {
  const uint8_t* meta = tile + kPackedQ4KBytes * b + 2048;
  const uint8_t low = meta[64 + 16 * s + i];
  uint32_t high;
  std::memcpy(&high, meta + 192 + 4 * i, 4);
  sc = (low & 15) | (int)((high >> (2 * s)) & 3) << 4;
  m = (low >> 4) | (int)((high >> (16 + 2 * s)) & 3) << 4;
}
inline float packed_q4_k_fp16(const uint8_t* tile, int64_t b, int i, int which) {  // which 0: d, 1: dmin
  const uint8_t* p = tile + kPackedQ4KBytes * b + 2048 + 32 * which + 2 * i;
  return fp16_to_fp32((uint16_t)(p[0] | p[1] << 8));
}
// Q4_K: the 4-bit quant of element e < 32 of sub-block s, super-block b, tile row i.
inline int packed_q4_k_quant(const uint8_t* tile, int64_t b, int i, int s, int e) {
  const uint8_t byte = tile[kPackedQ4KBytes * b + 512 * (s / 2) + 64 * (e / 4) + 4 * i + e % 4];
  return s % 2 == 0 ? byte & 15 : byte >> 4;
}

// Bytes of one block of a tile: its quants, then (at nb * quant bytes into the tile) its scales.
inline int64_t packed_quant_bytes(DType type) { return type == DType::Q8_0 ? 512 : 256; }
inline int64_t packed_scale_bytes(DType type) { return type == DType::MXFP4 ? 16 : 32; }

// Signed weight of element e < 32 of block b, tile row i (the GGUF block's integer).
inline int packed_weight(DType type, const uint8_t* tile, int64_t b, int i, int e) {
  if (type == DType::Q8_0) return (int)tile[512 * b + 64 * (e / 4) + 4 * i + e % 4] - 128;
  const uint8_t byte = tile[256 * b + 64 * ((e % 16) / 4) + 4 * i + e % 4];
  const int code = e < 16 ? byte & 0x0F : byte >> 4;
  return type == DType::Q4_0 ? code - 8 : kE2M1Doubled[code];
}
// Scale of block b, tile row i: weight = scale * packed_weight.
inline float packed_scale(DType type, const uint8_t* tile, int64_t nb, int64_t b, int i) {
  const uint8_t* scales = tile + nb * packed_quant_bytes(type) + b * packed_scale_bytes(type);
  if (type == DType::MXFP4) return e8m0_to_fp32_half(scales[i]);
  return fp16_to_fp32((uint16_t)(scales[2 * i] | scales[2 * i + 1] << 8));
}

// Bytes of a packed row (see above); 0 for types without a packed layout.
inline int64_t packed_row_bytes(DType type, int64_t n_in) {
  if (!has_packed_layout(type)) return 0;
  return (dtype_row_bytes(type, n_in) + 4) / 4 * 4;
}

}  // namespace velocity::engine::cpu
