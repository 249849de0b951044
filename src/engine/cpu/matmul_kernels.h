// Internal to matmul*.cpp: what one ISA's kernel file provides to the driver in matmul.cpp.
//
// A rows kernel computes y[t * ldy + r] for rows r in [row_begin, row_end) and all n_tokens
// tokens. Kernels walk one weight row (or a few) against a tile of tokens at a time, so a row
// comes from memory once per call and from L1 for the other tiles. Every (row, token) result
// is computed by the same sequence of operations whatever the tile, the row range or the thread,
// so results do not depend on n_tokens or on the thread count (bitwise).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "engine/cpu/quant_act.h"

namespace velocity::engine::cpu {

struct MatmulArgs {
  const uint8_t* w = nullptr;   // row r at w + r * row_bytes
  int64_t row_bytes = 0;
  int64_t n_in = 0;
  const float* x = nullptr;     // F32 activations (for F32/F16/BF16 weights): token t at x + t * ldx
  int64_t ldx = 0;
  const uint8_t* act = nullptr;  // quantised activations (quant_act.h): token t at act + t * act_stride
  int64_t act_stride = 0;
  int64_t n_tokens = 0;
  float* y = nullptr;
  int64_t ldy = 0;
};

using RowsKernel = void (*)(const MatmulArgs& args, int64_t row_begin, int64_t row_end);

// Packed kernels (matmul_packed.h) take the same arguments, with w the matrix's first tile,
// row_bytes its packed_row_bytes, and row_begin, row_end multiples of kPackRows inside the tiles.
//
// Per ISA: the kernel for a weight type, nullptr where this ISA has none (the driver then uses
// the next smaller ISA's). The scalar set is complete for every type matmul_supports.
RowsKernel scalar_rows_kernel(DType type);
RowsKernel scalar_packed_rows_kernel(DType type);
QuantizeActFn scalar_quantizer(ActKind kind);
#if defined(__x86_64__)
RowsKernel avx2_rows_kernel(DType type);
QuantizeActFn avx2_quantizer(ActKind kind);
RowsKernel avx512_rows_kernel(DType type);
RowsKernel avx512_packed_rows_kernel(DType type);
QuantizeActFn avx512_quantizer(ActKind kind);
#endif

}  // namespace velocity::engine::cpu
