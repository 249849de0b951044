// Internal to attention*.cpp: the per-ISA kernel that attends one query-head group to one slot's
// cached K/V rows, and the rows writer for this step's K/V.
//
// A group is the query heads that share one KV head (GQA: n_head / n_head_kv of them; their rows
// are adjacent in q and out). The kernel loads each K row once (converted to float in a small
// buffer, or read in place for F32) and dots it with every query of the group; takes a
// max-subtracted softmax of each query's scores; then loads each V row once and adds it, weighted,
// into every query's output; and divides by the softmax sums at the end. All in float, with
// vectorised loads/dots/exps in the AVX2 and AVX-512 builds. The order of operations for one
// (token, head) depends only on its own inputs, so results do not depend on the batch, the thread
// count or the thread that computes them.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace velocity::engine::cpu {

// Positions whose K or V rows a kernel converts to float at a time (the size of AttendArgs::row).
inline constexpr int64_t kAttendBlock = 32;

struct AttendArgs {
  const uint8_t* k = nullptr;  // K row of position j at k + j * k_stride (cache type tk, dk elements)
  int64_t k_stride = 0;
  const uint8_t* v = nullptr;  // V row of position j at v + j * v_stride (cache type tv, dv elements)
  int64_t v_stride = 0;
  DType tk = DType::F32, tv = DType::F32;
  int64_t n_pos = 0;  // positions [0, n_pos)
  int64_t dk = 0, dv = 0;
  int64_t group = 1;     // query heads
  const float* q = nullptr;  // group rows of dk, adjacent
  float* out = nullptr;      // group rows of dv, adjacent
  float scale = 1;
  // Per-head sink logits of the group (gpt-oss), or nullptr: each query's softmax gets one more
  // logit, which takes probability mass and adds no value.
  const float* sinks = nullptr;
  // Scratch: scores [group * n_pos], row [kAttendBlock * max(dk, dv)], sums [group].
  float* scores = nullptr;
  float* row = nullptr;
  float* sums = nullptr;
};

using AttendFn = void (*)(const AttendArgs& args);
// Writes n floats as one cache row of type t (F32, F16, Q8_0, Q4_0, Q4_1, Q5_1; n whole
// blocks).
using StoreRowFn = void (*)(DType t, const float* x, uint8_t* dst, int64_t n);

struct AttentionKernels {
  AttendFn attend = nullptr;
  StoreRowFn store_row = nullptr;
};

AttentionKernels scalar_attention_kernels();
#if defined(__x86_64__)
AttentionKernels avx2_attention_kernels();
AttentionKernels avx512_attention_kernels();
#endif

}  // namespace velocity::engine::cpu
