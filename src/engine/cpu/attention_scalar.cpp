// Portable build of the attention kernel: the reference dequantiser and plain float loops.
#include <cmath>
#include <limits>

#include "core/quant.h"
#include "engine/cpu/attention_impl.h"

namespace velocity::engine::cpu {
namespace {

struct ScalarOps {
  static const float* load(DType t, const uint8_t* src, float* tmp, int64_t n) {
    if (t == DType::F32) return reinterpret_cast<const float*>(src);
    dequantize_row(t, src, tmp, n);
    return tmp;
  }
  static float dot(const float* a, const float* b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
  }
  static float max(const float* x, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
    return m;
  }
  static float exp_sum(float* x, int64_t n, float sub) {
    float s = 0;
    for (int64_t i = 0; i < n; ++i) s += x[i] = std::exp(x[i] - sub);
    return s;
  }
  static void axpy(float a, const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  }
  static void scale(float* y, float s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] *= s;
  }
};

void store_row(DType t, const float* x, uint8_t* dst, int64_t n) { quantize_row(t, x, dst, n); }

}  // namespace

AttentionKernels scalar_attention_kernels() { return {attend_group<ScalarOps>, store_row}; }

}  // namespace velocity::engine::cpu
