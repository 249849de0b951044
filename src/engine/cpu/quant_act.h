// Quantised activations: the F32 activations of one Matmul::run, quantised once per call to
// 8-bit so that quantised weights can be multiplied with integer dot products (ggml's pairing:
// Q8_0/Q8_1 for the 32-element formats and MXFP4, Q8_K for the K-quants).
//
// These are velocity's own scratch layouts, never stored in a file, laid out for SIMD loads
// (a plane of int8 values, then planes of per-block scalars) rather than as ggml's block structs.
// Per token, n_in elements:
//   Q8_32: qs (n_in,) int8 | d (n_in/32,) float | s (n_in/32,) float | bias (n_in/32,) int32
//          x ~ d * qs; s = d * sum of the block's qs (the "sum" term of Q4_1/Q5_1's minimum);
//          bias = -128 * sum of the block's qs, exact: the offset that the packed kernels'
//          unsigned weights (w + 128) add to a block's dot product (matmul_packed.h)
//   Q8_K:  qs (n_in,) int8 | d (n_in/256,) float | bsums (n_in/16,) int16   x ~ d * qs
//          bsums = sum of each 16 qs (mins of Q2_K/Q4_K/Q5_K, the -32 of Q6_K)
// Rounding is the same in every ISA's quantiser: d = amax/127, q = nearbyint(x * (127/amax)),
// so a token quantises to the same bytes whichever kernels run.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace velocity::engine::cpu {

enum class ActKind { F32, Q8_32, Q8_K };

// Which activations a weight type multiplies with.
inline ActKind act_kind(DType type) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: return ActKind::F32;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return ActKind::Q8_K;
    default: return ActKind::Q8_32;
  }
}

inline int64_t act_block_size(ActKind kind) { return kind == ActKind::Q8_K ? 256 : 32; }

inline int64_t round_up64(int64_t n) { return (n + 63) / 64 * 64; }

// Bytes of one token's quantised activations (a multiple of 64, so every token starts aligned).
inline int64_t act_token_bytes(ActKind kind, int64_t n_in) {
  switch (kind) {
    case ActKind::F32: return 0;
    case ActKind::Q8_32: return round_up64(n_in) + round_up64(n_in / 32 * 12);
    case ActKind::Q8_K: return round_up64(n_in) + round_up64(n_in / 256 * 4 + n_in / 16 * 2);
  }
  return 0;
}

struct ActQ8_32 {
  const int8_t* qs;
  const float* d;
  const float* s;
  const int32_t* bias;
};
struct ActQ8_K {
  const int8_t* qs;
  const float* d;
  const int16_t* bsums;
};

inline ActQ8_32 view_q8_32(const uint8_t* token, int64_t n_in) {
  const float* d = reinterpret_cast<const float*>(token + round_up64(n_in));
  return {reinterpret_cast<const int8_t*>(token), d, d + n_in / 32, reinterpret_cast<const int32_t*>(d + 2 * (n_in / 32))};
}
inline ActQ8_K view_q8_k(const uint8_t* token, int64_t n_in) {
  const float* d = reinterpret_cast<const float*>(token + round_up64(n_in));
  return {reinterpret_cast<const int8_t*>(token), d, reinterpret_cast<const int16_t*>(d + n_in / 256)};
}

// Quantises elements [begin, end) of one token (x: n_in floats) into its activation bytes;
// begin and end are multiples of the kind's block size, so threads can split a token.
using QuantizeActFn = void (*)(const float* x, uint8_t* token, int64_t n_in, int64_t begin, int64_t end);

}  // namespace velocity::engine::cpu
