// Dispatch of the reference quantise / dequantise / dot to the per-format code:
// quant_legacy.cpp (F32, F16, BF16, Q4_0 .. Q8_0), quant_kquants.cpp (Q2_K .. Q6_K),
// quant_mxfp4.cpp (MXFP4).
#include "core/quant.h"

#include "core/error.h"
#include "core/quant_blocks.h"

namespace velocity {
namespace {

struct FormatOps {
  void (*quantize)(const float* x, void* q, int64_t n);
  void (*dequantize)(const void* q, float* y, int64_t n);
  float (*dot)(const void* w, const float* x, int64_t n);
};

#define VELOCITY_OPS(name) \
  FormatOps { quant::quantize_##name, quant::dequantize_##name, quant::dot_##name }

// Also checks the row length, so that the per-format code can assume whole blocks.
FormatOps ops_for(DType type, int64_t n) {
  const DTypeInfo& info = dtype_info(type);
  VELOCITY_CHECK(n >= 0 && n % info.block_size == 0, "row of {} elements is not a multiple of {}'s block size {}", n,
                 info.name, info.block_size);
  switch (type) {
    case DType::F32: return VELOCITY_OPS(f32);
    case DType::F16: return VELOCITY_OPS(f16);
    case DType::BF16: return VELOCITY_OPS(bf16);
    case DType::Q4_0: return VELOCITY_OPS(q4_0);
    case DType::Q4_1: return VELOCITY_OPS(q4_1);
    case DType::Q5_0: return VELOCITY_OPS(q5_0);
    case DType::Q5_1: return VELOCITY_OPS(q5_1);
    case DType::Q8_0: return VELOCITY_OPS(q8_0);
    case DType::Q2_K: return VELOCITY_OPS(q2_K);
    case DType::Q3_K: return VELOCITY_OPS(q3_K);
    case DType::Q4_K: return VELOCITY_OPS(q4_K);
    case DType::Q5_K: return VELOCITY_OPS(q5_K);
    case DType::Q6_K: return VELOCITY_OPS(q6_K);
    case DType::MXFP4: return VELOCITY_OPS(mxfp4);
    default: break;
  }
  fail("{} has no reference quantisation in velocity", info.name);
}

#undef VELOCITY_OPS

}  // namespace

void quantize_row(DType type, const float* x, void* q, int64_t n) { ops_for(type, n).quantize(x, q, n); }

void dequantize_row(DType type, const void* q, float* y, int64_t n) { ops_for(type, n).dequantize(q, y, n); }

float dot_row(DType type, const void* w, const float* x, int64_t n) { return ops_for(type, n).dot(w, x, n); }

}  // namespace velocity
