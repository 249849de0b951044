// KV cache storage and causal attention over it, for the CPU backend.
//
// Layout: per layer, per slot, per KV head, per position one row of head_dim elements in the
// cache type (F32, F16, Q8_0, Q4_0, Q4_1 or Q5_1; the same block layouts as weights), K and V with
// their own types:
//   K[layer][slot][kv_head][pos] : row_bytes(type_k, head_dim_k)
// so the rows one head attends to are one contiguous run, read front to back (with positions
// outermost, a head's rows sat a kv-head stride apart and every page boundary stalled the
// prefetcher: attention read the cache at a fifth of the bandwidth).
// With StepShape::kv_shared_v (MLA) there is no V storage: a V row is the first head_dim_v
// elements of the K row, read in K's type (whole blocks: head_dim_v is checked to be a multiple
// of the block size).
// A token at position p of slot s attends to positions [0, p] of s (with a sliding window W:
// (p - W, p]); the cache does not track
// which positions are filled — the batch contract (engine/batch.h) guarantees they were written.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "engine/backend.h"
#include "engine/cpu/attention_kernels.h"

namespace velocity::engine::cpu {

// Cache element types the CPU attention reads: F32, F16, Q8_0, Q4_0, Q4_1, Q5_1 (the CUDA
// backend's set: a user coming from llama.cpp may ask for --cache-type-k q4_1).
bool kv_cache_supports(DType type);

class KvCache {
 public:
  // The layers of shape.kv_layers (all when empty). Throws when a cache type is not supported or
  // does not divide the head dim into whole blocks.
  KvCache(const StepShape& shape, int n_threads);

  uint64_t bytes() const { return k_.size() + v_.size(); }

  // Positions [0, n_positions) of slot src copied to slot dst in every layer held.
  void copy_sequence(int32_t src, int32_t dst, int64_t n_positions);

  // Writes rows of k [T, Hkv*Dh] / v [T, Hkv*Dhv] (v unread with kv_shared_v) at each token's
  // (slot, position), then computes
  // out [T, H*Dhv] = softmax(q k^T * scale) v per head over [0, position] of the token's slot.
  void attend(ThreadPool& pool, const AttentionParams& p, const int32_t* positions, const int32_t* seq_ids,
              const Act& q, const Act& k, const Act& v, Act& out);

 private:
  uint8_t* k_row(int64_t layer, int64_t slot, int64_t pos, int64_t head);
  uint8_t* v_row(int64_t layer, int64_t slot, int64_t pos, int64_t head);

  // Global layer -> index among the layers held (-1: not held here).
  int64_t local_layer(int64_t layer) const;

  StepShape shape_;
  std::vector<int32_t> local_;  // [n_layer]
  int64_t n_held_ = 0;
  AttentionKernels kernels_;  // for the ISA in use when the cache was made
  int64_t k_row_bytes_ = 0, v_row_bytes_ = 0;
  std::vector<uint8_t> k_, v_;
  // Per thread scratch (AttendArgs): scores [group * n_ctx], rows [kAttendBlock * max(Dh, Dhv)],
  // sums [group].
  std::vector<std::vector<float>> scratch_;
};

}  // namespace velocity::engine::cpu
