// Internal to attention_{scalar,avx2,avx512}.cpp: the group-attention walk (attention_kernels.h),
// written once over an Ops type that supplies the vector primitives of one ISA:
//   const float* load(DType t, const uint8_t* src, float* tmp, int64_t n)  row as floats (tmp or src)
//   float dot(const float* a, const float* b, int64_t n)
//   float max(const float* x, int64_t n)
//   float exp_sum(float* x, int64_t n, float sub)   x[i] = exp(x[i] - sub); returns the sum
//   void axpy(float a, const float* x, float* y, int64_t n)   y += a x
//   void scale(float* y, float s, int64_t n)                  y *= s
#pragma once

#include <algorithm>
#include <cmath>

#include "engine/cpu/attention_kernels.h"

namespace velocity::engine::cpu {

// s[j] = exp(s[j] - m) for the n scores of query g, m their max (and the sink's); returns the
// softmax denominator, the sink's exp(sink - m) included.
template <class Ops>
float softmax_sum(const AttendArgs& a, int64_t g, float* s, int64_t n) {
  if (!a.sinks) return Ops::exp_sum(s, n, Ops::max(s, n));
  const float sink = a.sinks[g], m = std::max(Ops::max(s, n), sink);
  return Ops::exp_sum(s, n, m) + std::exp(sink - m);
}

template <class Ops>
void attend_group(const AttendArgs& a) {
  const int64_t n = a.n_pos, dk = a.dk, dv = a.dv, group = a.group;
  for (int64_t j = 0; j < n; ++j) {
    const float* kr = Ops::load(a.tk, a.k + j * a.k_stride, a.row, dk);
    for (int64_t g = 0; g < group; ++g) a.scores[g * n + j] = a.scale * Ops::dot(a.q + g * dk, kr, dk);
  }
  for (int64_t g = 0; g < group; ++g) {
    float* s = a.scores + g * n;
    a.sums[g] = softmax_sum<Ops>(a, g, s, n);
    std::fill(a.out + g * dv, a.out + (g + 1) * dv, 0.0f);
  }
  for (int64_t j = 0; j < n; ++j) {
    const float* vr = Ops::load(a.tv, a.v + j * a.v_stride, a.row, dv);
    for (int64_t g = 0; g < group; ++g) Ops::axpy(a.scores[g * n + j], vr, a.out + g * dv, dv);
  }
  for (int64_t g = 0; g < group; ++g) Ops::scale(a.out + g * dv, 1.0f / a.sums[g], dv);
}

}  // namespace velocity::engine::cpu
