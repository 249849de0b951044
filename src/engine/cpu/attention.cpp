// Causal attention over the KV cache. One (token, KV head) pair per task: the query heads that
// share the KV head attend together to the token's slot up to its position (attention_kernels.h),
// with the kernel of the ISA the CPU backend uses. Tasks are dealt to threads round-robin, so a
// prefill chunk's short early rows and long late rows spread evenly.
#include "engine/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/quant.h"
#include "engine/cpu/attention_kernels.h"

namespace velocity::engine::cpu {

bool kv_cache_supports(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1 ||
         t == DType::Q5_1;
}

namespace {

AttentionKernels pick_kernels() {
#if defined(__x86_64__)
  const CpuIsa isa = best_cpu_isa();
  if (isa >= CpuIsa::Avx512) return avx512_attention_kernels();
  if (isa >= CpuIsa::Avx2) return avx2_attention_kernels();
#endif
  return scalar_attention_kernels();
}
}  // namespace

KvCache::KvCache(const StepShape& shape, int n_threads) : shape_(shape), kernels_(pick_kernels()) {
  if (shape.kv_shared_v) {
    // V is the leading head_dim_v values of each K row (MLA's latent), in K's type.
    VELOCITY_CHECK(shape.head_dim_v <= shape.head_dim_k && shape.n_head_kv == 1);
    shape_.cache_type_v = shape.cache_type_k;
  }
  for (auto [type, dim, which] : {std::tuple{shape_.cache_type_k, shape.head_dim_k, "K"},
                                  std::tuple{shape_.cache_type_v, shape.head_dim_v, "V"}}) {
    if (!kv_cache_supports(type))
      fail("KV cache: type {} for {} is not supported (use f32, f16, q8_0, q4_0, q4_1 or q5_1)", dtype_name(type),
           which);
    if (dim % dtype_block_size(type) != 0)
      fail("KV cache: {} head dim {} is not a multiple of the {} block size {}", which, dim, dtype_name(type),
           dtype_block_size(type));
  }
  VELOCITY_CHECK(shape.n_ctx > 0 && shape.n_slots > 0);
  local_.assign(static_cast<size_t>(shape.n_layer), -1);
  if (shape.kv_layers.empty()) {
    for (int64_t il = 0; il < shape.n_layer; ++il) local_[il] = static_cast<int32_t>(n_held_++);
  } else {
    for (int32_t il : shape.kv_layers) {
      VELOCITY_CHECK(il >= 0 && il < shape.n_layer && local_[il] < 0, "KV layer {} of {}", il, shape.n_layer);
      local_[il] = static_cast<int32_t>(n_held_++);
    }
  }
  k_row_bytes_ = dtype_row_bytes(shape.cache_type_k, shape.head_dim_k);
  v_row_bytes_ = dtype_row_bytes(shape_.cache_type_v, shape.head_dim_v);
  const int64_t rows = n_held_ * shape.n_slots * shape.n_ctx * shape.n_head_kv;
  k_.resize(static_cast<size_t>(rows * k_row_bytes_));
  if (!shape.kv_shared_v) v_.resize(static_cast<size_t>(rows * v_row_bytes_));
  VELOCITY_CHECK(shape.n_head > 0 && shape.n_head_kv > 0 && shape.n_head % shape.n_head_kv == 0);
  const int64_t group = shape.n_head / shape.n_head_kv;
  scratch_.assign(n_threads, std::vector<float>(group * shape.n_ctx + kAttendBlock * std::max(shape.head_dim_k, shape.head_dim_v) + group));
}

int64_t KvCache::local_layer(int64_t layer) const {
  VELOCITY_CHECK(layer >= 0 && layer < shape_.n_layer && local_[layer] >= 0, "layer {} has no KV cache on this backend",
                 layer);
  return local_[layer];
}

void KvCache::copy_sequence(int32_t src, int32_t dst, int64_t n_positions) {
  VELOCITY_CHECK(src >= 0 && src < shape_.n_slots && dst >= 0 && dst < shape_.n_slots && n_positions >= 0 &&
                 n_positions <= shape_.n_ctx);
  if (src == dst || n_positions == 0) return;
  for (int64_t l = 0; l < n_held_; ++l)
    for (int64_t h = 0; h < shape_.n_head_kv; ++h) {
      std::memcpy(k_row(l, dst, 0, h), k_row(l, src, 0, h), static_cast<size_t>(n_positions * k_row_bytes_));
      if (!shape_.kv_shared_v)
        std::memcpy(v_row(l, dst, 0, h), v_row(l, src, 0, h), static_cast<size_t>(n_positions * v_row_bytes_));
    }
}

uint8_t* KvCache::k_row(int64_t layer, int64_t slot, int64_t pos, int64_t head) {
  const int64_t r = ((layer * shape_.n_slots + slot) * shape_.n_head_kv + head) * shape_.n_ctx + pos;
  return k_.data() + r * k_row_bytes_;
}

uint8_t* KvCache::v_row(int64_t layer, int64_t slot, int64_t pos, int64_t head) {
  if (shape_.kv_shared_v) return k_row(layer, slot, pos, head);
  const int64_t r = ((layer * shape_.n_slots + slot) * shape_.n_head_kv + head) * shape_.n_ctx + pos;
  return v_.data() + r * v_row_bytes_;
}

void KvCache::attend(ThreadPool& pool, const AttentionParams& p, const int32_t* positions, const int32_t* seq_ids,
                     const Act& q, const Act& k, const Act& v, Act& out) {
  const int64_t n_tokens = q.n_rows;
  const int64_t dk = p.head_dim_k, dv = p.head_dim_v;
  const int64_t n_kv = p.n_head_kv, n_head = p.n_head;
  VELOCITY_CHECK(n_head % n_kv == 0 && dk == shape_.head_dim_k && dv == shape_.head_dim_v);
  const int64_t layer = local_layer(p.layer);
  const DType tk = shape_.cache_type_k, tv = shape_.cache_type_v;

  const AttentionKernels& kernels = kernels_;
  VELOCITY_CHECK(n_head == shape_.n_head && n_kv == shape_.n_head_kv && p.window >= 0);
  VELOCITY_CHECK(!p.sinks.present() || (p.sinks.type == DType::F32 && p.sinks.n_in == n_head && p.sinks.n_out == 1),
                 "attention sinks {}: expected F32 [{}]", p.sinks.name, n_head);
  const auto* sinks = reinterpret_cast<const float*>(p.sinks.data);

  // 1. Store this step's K and V rows (every token's before any token reads).
  pool.parallel_for(n_tokens * n_kv, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = i / n_kv, h = i % n_kv;
      kernels.store_row(tk, k.row(t) + h * dk, k_row(layer, seq_ids[t], positions[t], h), dk);
      if (!shape_.kv_shared_v) kernels.store_row(tv, v.row(t) + h * dv, v_row(layer, seq_ids[t], positions[t], h), dv);
    }
  });

  // 2. out[t, h] = sum_j softmax_j(scale * q . k_j) v_j over j in [first, position], a KV head's
  // query group at a time; first = 0, or position - window + 1 with a sliding window. The
  // kernel walks positions [0, n_pos) of the rows it is given, so a window is a later start.
  const float scale = p.scale != 0 ? p.scale : 1.0f / std::sqrt(static_cast<float>(dk));
  const int64_t group = n_head / n_kv;
  pool.run([&](int ith, int nth) {
    std::vector<float>& scratch = scratch_[ith];
    AttendArgs a;
    a.tk = tk;
    a.tv = tv;
    a.dk = dk;
    a.dv = dv;
    a.group = group;
    a.scale = scale;
    a.k_stride = k_row_bytes_;
    a.v_stride = shape_.kv_shared_v ? k_row_bytes_ : v_row_bytes_;
    a.scores = scratch.data();
    a.row = a.scores + group * shape_.n_ctx;
    a.sums = a.row + kAttendBlock * std::max(dk, dv);
    for (int64_t i = ith; i < n_tokens * n_kv; i += nth) {
      const int64_t t = i / n_kv, hk = i % n_kv;
      const int64_t first = p.window > 0 ? std::max<int64_t>(0, positions[t] - p.window + 1) : 0;
      a.n_pos = positions[t] + 1 - first;
      a.k = k_row(layer, seq_ids[t], first, hk);
      a.v = v_row(layer, seq_ids[t], first, hk);
      a.sinks = sinks ? sinks + hk * group : nullptr;
      a.q = q.row(t) + hk * group * dk;
      a.out = out.row(t) + hk * group * dv;
      kernels.attend(a);
    }
  });
}

}  // namespace velocity::engine::cpu
