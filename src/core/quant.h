// Reference quantise / dequantise / dot for every weight format velocity computes with
// (dtype_info(t).has_reference). These are the scalar definitions other backends are tested
// against: byte layouts exactly as GGUF stores them (ggml-common.h block structs).
//
// All functions work on one row of n elements, n a multiple of the type's block size; `dst` /
// `src` of the quantised side hold dtype_row_bytes(type, n) bytes. Unaligned pointers are fine.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace velocity {

// x (n,) float -> q (row bytes of `type`). For the K-quants this is the reference algorithm with
// its scale/min search. `type` must have a reference.
void quantize_row(DType type, const float* x, void* q, int64_t n);

// q (row bytes of `type`) -> y (n,) float.
void dequantize_row(DType type, const void* q, float* y, int64_t n);

// sum_i w[i] * x[i] where w is a quantised row of `type` and x (n,) float activations, computed
// block by block without dequantising the whole row. Accumulates in float per block, double
// across blocks.
float dot_row(DType type, const void* w, const float* x, int64_t n);

}  // namespace velocity
