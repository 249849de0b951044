// Causal attention over the KV cache. One (token, head) pair per task: scores against every
// cached K row of the token's slot up to its position (a quantised-K row dotted without
// dequantising it), a max-subtracted softmax in float, then the weighted sum of V rows in double.
#include "engine/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/quant.h"

namespace velocity::engine::cpu {

namespace {
bool cache_type_ok(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::Q8_0 || t == DType::Q4_0;
}
}  // namespace

KvCache::KvCache(const StepShape& shape, int n_threads) : shape_(shape) {
  for (auto [type, dim, which] : {std::tuple{shape.cache_type_k, shape.head_dim_k, "K"},
                                  std::tuple{shape.cache_type_v, shape.head_dim_v, "V"}}) {
    if (!cache_type_ok(type))
      fail("KV cache: type {} for {} is not supported (use f32, f16, q8_0 or q4_0)", dtype_name(type), which);
    if (dim % dtype_block_size(type) != 0)
      fail("KV cache: {} head dim {} is not a multiple of the {} block size {}", which, dim, dtype_name(type),
           dtype_block_size(type));
  }
  VELOCITY_CHECK(shape.n_ctx > 0 && shape.n_slots > 0);
  k_row_bytes_ = dtype_row_bytes(shape.cache_type_k, shape.head_dim_k);
  v_row_bytes_ = dtype_row_bytes(shape.cache_type_v, shape.head_dim_v);
  const int64_t rows = shape.n_layer * shape.n_slots * shape.n_ctx * shape.n_head_kv;
  k_.resize(static_cast<size_t>(rows * k_row_bytes_));
  v_.resize(static_cast<size_t>(rows * v_row_bytes_));
  scores_.assign(n_threads, std::vector<float>(shape.n_ctx));
  v_tmp_.assign(n_threads, std::vector<float>(shape.head_dim_v));
  acc_.assign(n_threads, std::vector<double>(shape.head_dim_v));
}

uint8_t* KvCache::k_row(int64_t layer, int64_t slot, int64_t pos, int64_t head) {
  const int64_t r = ((layer * shape_.n_slots + slot) * shape_.n_ctx + pos) * shape_.n_head_kv + head;
  return k_.data() + r * k_row_bytes_;
}

uint8_t* KvCache::v_row(int64_t layer, int64_t slot, int64_t pos, int64_t head) {
  const int64_t r = ((layer * shape_.n_slots + slot) * shape_.n_ctx + pos) * shape_.n_head_kv + head;
  return v_.data() + r * v_row_bytes_;
}

void KvCache::attend(ThreadPool& pool, const AttentionParams& p, const int32_t* positions, const int32_t* seq_ids,
                     const Act& q, const Act& k, const Act& v, Act& out) {
  const int64_t n_tokens = q.n_rows;
  const int64_t dk = p.head_dim_k, dv = p.head_dim_v;
  const int64_t n_kv = p.n_head_kv, n_head = p.n_head;
  VELOCITY_CHECK(n_head % n_kv == 0 && dk == shape_.head_dim_k && dv == shape_.head_dim_v);
  VELOCITY_CHECK(p.layer >= 0 && p.layer < shape_.n_layer);
  const DType tk = shape_.cache_type_k, tv = shape_.cache_type_v;

  // 1. Store this step's K and V rows (every token's before any token reads).
  pool.parallel_for(n_tokens * n_kv, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = i / n_kv, h = i % n_kv;
      quantize_row(tk, k.row(t) + h * dk, k_row(p.layer, seq_ids[t], positions[t], h), dk);
      quantize_row(tv, v.row(t) + h * dv, v_row(p.layer, seq_ids[t], positions[t], h), dv);
    }
  });

  // 2. out[t, h] = sum_j softmax_j(scale * q . k_j) v_j over j in [0, position].
  const float scale = p.scale != 0 ? p.scale : 1.0f / std::sqrt(static_cast<float>(dk));
  const int64_t group = n_head / n_kv;
  pool.run([&](int ith, int nth) {
    std::vector<float>& scores = scores_[ith];
    std::vector<float>& v_tmp = v_tmp_[ith];
    std::vector<double>& acc = acc_[ith];
    const int64_t n_tasks = n_tokens * n_head;
    for (int64_t i = n_tasks * ith / nth; i < n_tasks * (ith + 1) / nth; ++i) {
      const int64_t t = i / n_head, h = i % n_head, hk = h / group;
      const int64_t n_pos = positions[t] + 1;
      const float* qh = q.row(t) + h * dk;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n_pos; ++j) {
        scores[j] = scale * dot_row(tk, k_row(p.layer, seq_ids[t], j, hk), qh, dk);
        max_score = std::max(max_score, scores[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < n_pos; ++j) {
        scores[j] = std::exp(scores[j] - max_score);
        sum += scores[j];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < n_pos; ++j) {
        dequantize_row(tv, v_row(p.layer, seq_ids[t], j, hk), v_tmp.data(), dv);
        const double w = scores[j];
        for (int64_t d = 0; d < dv; ++d) acc[d] += w * v_tmp[d];
      }
      float* o = out.row(t) + h * dv;
      for (int64_t d = 0; d < dv; ++d) o[d] = static_cast<float>(acc[d] / sum);
    }
  });
}

}  // namespace velocity::engine::cpu
