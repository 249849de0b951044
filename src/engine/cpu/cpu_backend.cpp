// CPU backend: the primitive ops over host memory. Matrix products and attention live in their
// own files; the elementwise ops here are cheap next to them and run on the pool only when large.
#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/quant.h"

namespace velocity::engine::cpu {

namespace {
constexpr size_t kAlignment = 64;
// Elementwise loops below this many elements run on the calling thread.
constexpr int64_t kParallelMin = 1 << 15;

template <class F>
void for_rows(ThreadPool& pool, int64_t n_rows, int64_t n_cols, F&& fn) {
  if (n_rows * n_cols < kParallelMin || n_rows == 1) {
    fn(int64_t{0}, n_rows);
  } else {
    pool.parallel_for(n_rows, fn);
  }
}
}  // namespace

void CpuBackend::FreeDeleter::operator()(void* p) const { std::free(p); }

CpuBackend::CpuBackend(int n_threads, int32_t index)
    : index_(index), pool_(n_threads), silu_mul_(elementwise_kernels().silu_mul) {}
CpuBackend::~CpuBackend() = default;

void* CpuBackend::alloc_bytes(size_t n) {
  n = (std::max<size_t>(n, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, n);
  if (!p) fail("cpu backend: out of memory allocating {} bytes", n);
  std::memset(p, 0, n);
  buffers_.emplace_back(p);
  return p;
}

bool CpuBackend::supports_cache_type(DType type) const { return kv_cache_supports(type); }

Weight CpuBackend::upload(std::string_view name, DType type, std::span<const int64_t> shape, const uint8_t* bytes) {
  if (shape.empty() || shape.size() > 3) fail("{}: {} dimensions; the engine takes 1 to 3", name, shape.size());
  Weight w;
  w.name = name;
  w.type = type;
  w.n_in = shape[0];
  w.n_out = shape.size() > 1 ? shape[1] : 1;
  w.n_mat = shape.size() > 2 ? shape[2] : 1;
  w.device = device();
  if (!dtype_info(type).has_reference)
    fail("{}: weight type {} is not supported by the CPU backend", w.name, dtype_name(type));
  w.row_bytes = w.stride = dtype_row_bytes(type, w.n_in);
  w.data = bytes;
  // Norm weights and biases (also the per-expert bias rows [Fe, E] of gpt-oss) are read as F32
  // rows, never packed for the matmul kernels.
  const bool vector_rows = shape.size() == 1 || name.ends_with(".bias");
  if (vector_rows && type != DType::F32) {
    const int64_t n_rows = w.n_out * w.n_mat;
    auto* f = static_cast<float*>(alloc_bytes(static_cast<size_t>(w.n_in * n_rows) * sizeof(float)));
    for (int64_t r = 0; r < n_rows; ++r) dequantize_row(type, bytes + r * w.row_bytes, f + r * w.n_in, w.n_in);
    w.type = DType::F32;
    w.row_bytes = w.stride = w.n_in * 4;
    w.data = reinterpret_cast<const uint8_t*>(f);
  } else if (vector_rows) {
    // F32 already: zero copy.
  } else if (shape.size() > 1 && !matmul_supports(type)) {
    fail("{}: weight type {} has no CPU matmul kernel", w.name, dtype_name(type));
  } else if (const int64_t packed = shape.size() > 1 ? packed_size(w) : 0; packed > 0) {
    // The kernels' own layout (matmul_packed.h) replaces the file's; the file's bytes are not
    // read again.
    w = pack_weight(w, static_cast<uint8_t*>(alloc_bytes(static_cast<size_t>(packed))));
  }
  return w;
}

Act CpuBackend::alloc(int64_t capacity, int64_t n_cols) {
  Act a;
  a.data = static_cast<float*>(alloc_bytes(static_cast<size_t>(capacity * n_cols) * sizeof(float)));
  a.capacity = capacity;
  a.n_cols = n_cols;
  a.device = device();
  return a;
}

void CpuBackend::write(Act& dst, const float* src, int64_t n_rows) {
  VELOCITY_CHECK(n_rows >= 0 && n_rows <= dst.capacity);
  dst.n_rows = n_rows;
  std::memcpy(dst.data, src, static_cast<size_t>(n_rows * dst.n_cols) * sizeof(float));
}

void CpuBackend::read(const Act& src, float* dst) {
  std::memcpy(dst, src.data, static_cast<size_t>(src.n_rows * src.n_cols) * sizeof(float));
}

void CpuBackend::seq_copy(int32_t src_seq, int32_t dst_seq, int64_t n_positions) {
  VELOCITY_CHECK(kv_ != nullptr);
  kv_->copy_sequence(src_seq, dst_seq, n_positions);
}

MoeRoute CpuBackend::alloc_route(int64_t max_tokens, int64_t k) {
  MoeRoute r;
  r.ids = static_cast<int32_t*>(alloc_bytes(static_cast<size_t>(max_tokens * k) * sizeof(int32_t)));
  r.weights = static_cast<float*>(alloc_bytes(static_cast<size_t>(max_tokens * k) * sizeof(float)));
  r.k = k;
  return r;
}

void CpuBackend::reserve(const StepShape& shape) {
  VELOCITY_CHECK(shape.max_tokens > 0 && shape.max_logits > 0 && shape.max_logits <= shape.max_tokens && shape.n_embd > 0 && shape.n_vocab > 0);
  shape_ = shape;
  const int64_t max_in = std::max({shape.n_embd, shape.n_head * shape.head_dim_v, shape.n_ff, shape.n_ff_expert,
                                   shape.n_ff_shared, shape.mla_q_lora, shape.mla_out_dim});
  matmul_ = std::make_unique<Matmul>(pool_, shape.max_tokens, max_in);
  if (shape.n_layer > 0) kv_ = std::make_unique<KvCache>(shape, pool_.size());
  reserve_blocks();
  tokens_.reserve(shape.max_tokens);
  positions_.reserve(shape.max_tokens);
  seq_ids_.reserve(shape.max_tokens);
  output_rows_.reserve(shape.max_tokens);
  outputs_.reserve(shape.max_tokens);
  output_tokens_.assign(shape.max_logits, -1);
  rope_inv_freq_.reserve(static_cast<size_t>(std::max(shape.head_dim_k, int64_t{2}) / 2));
  if (shape.n_expert > 0) {
    route_probs_.resize(shape.n_expert);
    route_allowed_.resize(shape.n_expert);
    expert_tokens_.resize(shape.max_tokens);
    expert_weights_.resize(shape.max_tokens);
    expert_x_ = alloc(shape.max_tokens, shape.n_embd);
    expert_gate_ = alloc(shape.max_tokens, shape.n_ff_expert);
    expert_up_ = alloc(shape.max_tokens, shape.n_ff_expert);
    expert_out_ = alloc(shape.max_tokens, shape.n_embd);
  }
}

void CpuBackend::begin_step(const Batch& batch) {
  check_batch(batch);
  tokens_.assign(batch.tokens.begin(), batch.tokens.end());
  positions_.assign(batch.positions.begin(), batch.positions.end());
  seq_ids_.assign(batch.seq_ids.begin(), batch.seq_ids.end());
  output_rows_.clear();
  outputs_.clear();
  for (int64_t i = 0; i < batch.size(); ++i) {
    if (batch.outputs[i] == Output::None) continue;
    output_rows_.push_back(static_cast<int32_t>(i));
    outputs_.push_back(batch.outputs[i]);
  }
}

StepOutput CpuBackend::read_output() {
  StepOutput out;
  out.n_rows = step_outputs_;
  out.n_vocab = shape_.n_vocab;
  out.logits = scratch_.logits.data;
  out.tokens = output_tokens_.data();
  for (int64_t j = 0; j < step_outputs_; ++j) {
    if (outputs_[j] != Output::Token) continue;
    const float* row = scratch_.logits.row(j);
    output_tokens_[j] = static_cast<int32_t>(std::max_element(row, row + shape_.n_vocab) - row);
  }
  return out;
}

void CpuBackend::embed(const Weight& table, Act& out) {
  VELOCITY_CHECK(table.n_in == out.n_cols);
  out.n_rows = step_tokens_;
  for_rows(pool_, out.n_rows, out.n_cols, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      dequantize_weight_row(table, tokens_[t], out.row(t));
  });
}

void CpuBackend::rms_norm(const Act& x, const Weight& w, float eps, Act& out) {
  VELOCITY_CHECK(out.n_cols == x.n_cols && out.capacity >= x.n_rows);
  VELOCITY_CHECK(!w.present() || (w.type == DType::F32 && w.n_in == x.n_cols));
  out.n_rows = x.n_rows;
  const auto* wf = reinterpret_cast<const float*>(w.data);
  for_rows(pool_, x.n_rows, x.n_cols, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* xr = x.row(t);
      float* o = out.row(t);
      double ss = 0;
      for (int64_t i = 0; i < x.n_cols; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float s = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(x.n_cols) + eps));
      for (int64_t i = 0; i < x.n_cols; ++i) o[i] = wf ? xr[i] * s * wf[i] : xr[i] * s;
    }
  });
}

void CpuBackend::rms_norm_heads(Act& x, int64_t head_dim, const Weight& w, float eps) {
  VELOCITY_CHECK(x.n_cols % head_dim == 0 && w.type == DType::F32 && w.n_in == head_dim);
  const auto* wf = reinterpret_cast<const float*>(w.data);
  const int64_t n_heads = x.n_cols / head_dim;
  for_rows(pool_, x.n_rows, x.n_cols, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t h = 0; h < n_heads; ++h) {
        float* xr = x.row(t) + h * head_dim;
        double ss = 0;
        for (int64_t i = 0; i < head_dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const float s = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(head_dim) + eps));
        for (int64_t i = 0; i < head_dim; ++i) xr[i] = xr[i] * s * wf[i];
      }
    }
  });
}

void CpuBackend::matmul(const Weight& w, const Act& x, Act& y) {
  if (w.n_in != x.n_cols || w.n_out != y.n_cols || w.n_mat != 1)
    fail("matmul {}: weight [{} -> {}] x{} with activations of {} columns into {} columns", w.name, w.n_in, w.n_out,
         w.n_mat, x.n_cols, y.n_cols);
  VELOCITY_CHECK(y.capacity >= x.n_rows);
  y.n_rows = x.n_rows;
  matmul_->run(w, x.data, x.n_cols, x.n_rows, y.data, y.n_cols);
}

void CpuBackend::add_bias(Act& y, const Weight& b) {
  VELOCITY_CHECK(b.type == DType::F32 && b.n_in == y.n_cols);
  const auto* bf = reinterpret_cast<const float*>(b.data);
  for (int64_t t = 0; t < y.n_rows; ++t) {
    float* r = y.row(t);
    for (int64_t i = 0; i < y.n_cols; ++i) r[i] += bf[i];
  }
}

void CpuBackend::rope(Act& x, int64_t head_dim, const RopeParams& rope) { rope_at(x, head_dim, 0, rope); }

void CpuBackend::rope_at(Act& x, int64_t head_dim, int64_t offset, const RopeParams& rope) {
  VELOCITY_CHECK(x.n_cols % head_dim == 0 && rope.n_rot % 2 == 0 && offset >= 0 && offset + rope.n_rot <= head_dim);
  const int64_t n_heads = x.n_cols / head_dim, half = rope.n_rot / 2;
  VELOCITY_CHECK(!rope.freq_factors.present() ||
                 (rope.freq_factors.type == DType::F32 && rope.freq_factors.n_in == half && rope.freq_factors.device == device()));
  const auto* factors = reinterpret_cast<const float*>(rope.freq_factors.data);
  // theta_i = pos * inv_freq_i / factor_i, in double: positions reach 10^5.
  rope_inv_freq_.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) rope_inv_freq_[i] = rope_inv_freq(rope, i) / (factors ? factors[i] : 1.0);
  const double magnitude = rope.attn_factor;
  for_rows(pool_, x.n_rows, x.n_cols, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const double pos = static_cast<double>(positions_[t]);
      for (int64_t i = 0; i < half; ++i) {
        const double theta = pos * rope_inv_freq_[i];
        const float c = static_cast<float>(std::cos(theta) * magnitude), s = static_cast<float>(std::sin(theta) * magnitude);
        for (int64_t h = 0; h < n_heads; ++h) {
          float* xh = x.row(t) + h * head_dim + offset;
          const int64_t a = rope.type == RopeType::Neox ? i : 2 * i;
          const int64_t b = rope.type == RopeType::Neox ? i + half : 2 * i + 1;
          const float x0 = xh[a], x1 = xh[b];
          xh[a] = x0 * c - x1 * s;
          xh[b] = x0 * s + x1 * c;
        }
      }
    }
  });
}

void CpuBackend::attention(const AttentionParams& p, const Act& q, const Act& k, const Act& v, Act& out) {
  VELOCITY_CHECK(q.n_rows == step_tokens_ && k.n_rows == step_tokens_ && v.n_rows == step_tokens_);
  VELOCITY_CHECK(q.n_cols == p.n_head * p.head_dim_k && k.n_cols == p.n_head_kv * p.head_dim_k &&
                 v.n_cols == p.n_head_kv * p.head_dim_v && out.n_cols == p.n_head * p.head_dim_v);
  out.n_rows = q.n_rows;
  kv_->attend(pool_, p, positions_.data(), seq_ids_.data(), q, k, v, out);
}

void CpuBackend::swiglu(const Act& gate, const Act& up, Act& out) {
  VELOCITY_CHECK(gate.n_cols == up.n_cols && gate.n_rows == up.n_rows && out.n_cols == gate.n_cols);
  out.n_rows = gate.n_rows;
  for_rows(pool_, gate.n_rows, gate.n_cols, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) silu_mul_(gate.row(t), up.row(t), out.row(t), gate.n_cols);
  });
}

void CpuBackend::swiglu_clamped(const Act& gate, const Act& up, const ExpertGlu& glu, Act& out) {
  VELOCITY_CHECK(gate.n_cols == up.n_cols && gate.n_rows == up.n_rows && out.n_cols == gate.n_cols);
  out.n_rows = gate.n_rows;
  const float alpha = glu.alpha, limit = glu.limit;
  for_rows(pool_, gate.n_rows, gate.n_cols, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float *g = gate.row(t), *u = up.row(t);
      float* o = out.row(t);
      for (int64_t i = 0; i < gate.n_cols; ++i) {
        const float gc = std::min(g[i], limit), uc = std::clamp(u[i], -limit, limit);
        o[i] = (uc + 1.0f) * (gc / (1.0f + std::exp(-alpha * gc)));
      }
    }
  });
}

void CpuBackend::add(Act& x, const Act& y) {
  VELOCITY_CHECK(x.n_rows == y.n_rows && x.n_cols == y.n_cols);
  const int64_t n = x.n_rows * x.n_cols;
  for (int64_t i = 0; i < n; ++i) x.data[i] += y.data[i];
}

void CpuBackend::moe_route(const Act& logits, const MoeParams& p, MoeRoute& route) {
  VELOCITY_CHECK(logits.n_cols == p.n_expert && route.k == p.n_expert_used && p.n_expert_used <= p.n_expert);
  VELOCITY_CHECK(p.n_group >= 1 && p.n_group_used >= 1 && p.n_group_used <= p.n_group && p.n_expert % p.n_group == 0);
  VELOCITY_CHECK(!p.selection_bias.present() ||
                     (p.selection_bias.type == DType::F32 && p.selection_bias.n_in == p.n_expert),
                 "{}: expected F32 [{}]", p.selection_bias.name, p.n_expert);
  route.n_tokens = logits.n_rows;
  std::vector<double>& scores = route_probs_;
  const auto* bias = reinterpret_cast<const float*>(p.selection_bias.data);
  const int64_t group_size = p.n_expert / p.n_group;
  auto choice = [&](int64_t e) { return scores[e] + (bias ? bias[e] : 0.0); };
  for (int64_t t = 0; t < logits.n_rows; ++t) {
    const float* l = logits.row(t);
    if (p.scoring == MoeParams::Scoring::Sigmoid) {
      for (int64_t e = 0; e < p.n_expert; ++e) scores[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(l[e])));
    } else {
      const float mx = *std::max_element(l, l + p.n_expert);
      double sum = 0;
      for (int64_t e = 0; e < p.n_expert; ++e) sum += scores[e] = std::exp(static_cast<double>(l[e] - mx));
      for (int64_t e = 0; e < p.n_expert; ++e) scores[e] /= sum;
    }
    // Groups: the n_group_used groups whose two best choice values sum highest (ties: lower group).
    std::fill(route_allowed_.begin(), route_allowed_.end(), uint8_t{p.n_group == 1});
    for (int64_t j = 0; p.n_group > 1 && j < p.n_group_used; ++j) {
      int64_t best = -1;
      double best_sum = 0;
      for (int64_t g = 0; g < p.n_group; ++g) {
        if (route_allowed_[g * group_size]) continue;
        double top1 = -std::numeric_limits<double>::infinity(), top2 = top1;
        for (int64_t e = g * group_size; e < (g + 1) * group_size; ++e) {
          const double c = choice(e);
          if (c > top1) {
            top2 = top1;
            top1 = c;
          } else if (c > top2) {
            top2 = c;
          }
        }
        const double sum = group_size > 1 ? top1 + top2 : top1;
        if (best < 0 || sum > best_sum) {
          best = g;
          best_sum = sum;
        }
      }
      std::fill(route_allowed_.begin() + best * group_size, route_allowed_.begin() + (best + 1) * group_size, 1);
    }
    int32_t* ids = route.ids + t * route.k;
    float* w = route.weights + t * route.k;
    double picked = 0;
    for (int64_t j = 0; j < route.k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < p.n_expert; ++e) {
        if (!route_allowed_[e] || std::find(ids, ids + j, static_cast<int32_t>(e)) != ids + j) continue;
        if (best < 0 || choice(e) > choice(best)) best = e;
      }
      VELOCITY_CHECK(best >= 0, "moe_route: fewer than k experts in the groups used");
      ids[j] = static_cast<int32_t>(best);
      picked += scores[best];
    }
    const double norm = p.normalize_weights ? picked : 1.0;
    for (int64_t j = 0; j < route.k; ++j) w[j] = static_cast<float>(scores[ids[j]] / norm * p.weights_scale);
  }
}

namespace {
// Row e of a per-expert bias [n, E] (F32 rows, upload()).
const float* bias_row(const Weight& b, int64_t e, int64_t n) {
  VELOCITY_CHECK(b.type == DType::F32 && b.n_in == n && b.n_out * b.n_mat > e, "{}: bias row {} of {} values", b.name,
                 e, n);
  return reinterpret_cast<const float*>(b.data + e * b.row_bytes);
}
void add_row(Act& y, const float* b) {
  for (int64_t t = 0; t < y.n_rows; ++t) {
    float* r = y.row(t);
    for (int64_t i = 0; i < y.n_cols; ++i) r[i] += b[i];
  }
}
}  // namespace

void CpuBackend::moe_experts(const MoeRoute& route, const MoeLayer& layer, const Act& x, Act& out) {
  VELOCITY_CHECK(x.n_rows == route.n_tokens && out.n_cols == x.n_cols);
  const int64_t n_expert = layer.gate_exps.n_mat;
  out.n_rows = x.n_rows;
  std::fill(out.data, out.data + out.n_rows * out.n_cols, 0.0f);
  for (int64_t e = 0; e < n_expert; ++e) {
    int64_t n = 0;
    for (int64_t t = 0; t < route.n_tokens; ++t)
      for (int64_t j = 0; j < route.k; ++j)
        if (route.ids[t * route.k + j] == e) {
          expert_tokens_[n] = static_cast<int32_t>(t);
          expert_weights_[n] = route.weights[t * route.k + j];
          std::memcpy(expert_x_.row(n), x.row(t), static_cast<size_t>(x.n_cols) * sizeof(float));
          ++n;
        }
    if (n == 0) continue;
    expert_x_.n_rows = n;
    matmul(layer.gate_exps.matrix(e), expert_x_, expert_gate_);
    matmul(layer.up_exps.matrix(e), expert_x_, expert_up_);
    if (layer.gate_exps_b.present()) add_row(expert_gate_, bias_row(layer.gate_exps_b, e, expert_gate_.n_cols));
    if (layer.up_exps_b.present()) add_row(expert_up_, bias_row(layer.up_exps_b, e, expert_up_.n_cols));
    if (layer.glu.kind == ExpertGlu::Kind::Clamped)
      swiglu_clamped(expert_gate_, expert_up_, layer.glu, expert_gate_);
    else
      swiglu(expert_gate_, expert_up_, expert_gate_);
    matmul(layer.down_exps.matrix(e), expert_gate_, expert_out_);
    const float* bd = layer.down_exps_b.present() ? bias_row(layer.down_exps_b, e, out.n_cols) : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      float* o = out.row(expert_tokens_[i]);
      const float* d = expert_out_.row(i);
      const float w = expert_weights_[i];
      if (bd)
        for (int64_t c = 0; c < out.n_cols; ++c) o[c] += w * (d[c] + bd[c]);
      else
        for (int64_t c = 0; c < out.n_cols; ++c) o[c] += w * d[c];
    }
  }
}

void CpuBackend::mla_attention(const MlaParams& p, const MlaLayer& layer, const Act& q, Act& kv, Act& out) {
  const int64_t n = step_tokens_, h_count = p.n_head, r = p.kv_lora_rank, nope = p.qk_nope, rope_dim = p.qk_rope;
  const int64_t dq = nope + rope_dim, dk = r + rope_dim, dv = p.v_head_dim;
  VELOCITY_CHECK(shape_.kv_shared_v && shape_.n_head == h_count && shape_.head_dim_k == dk && shape_.head_dim_v == r,
                 "mla_attention: the cache was reserved for {} heads of {} / {}, asked {} of {} / {}", shape_.n_head,
                 shape_.head_dim_k, shape_.head_dim_v, h_count, dk, r);
  VELOCITY_CHECK(q.n_rows == n && kv.n_rows == n && q.n_cols == h_count * dq && kv.n_cols == dk &&
                 out.n_cols == h_count * dv && out.capacity >= n);
  VELOCITY_CHECK(layer.wk_b.n_in == nope && layer.wk_b.n_out == r && layer.wk_b.n_mat == h_count &&
                 layer.wv_b.n_in == r && layer.wv_b.n_out == dv && layer.wv_b.n_mat == h_count);
  VELOCITY_CHECK(p.rope.n_rot == rope_dim && layer.kv_a_norm.type == DType::F32 && layer.kv_a_norm.n_in == r);
  // 1. The cache row [c | k_rope]: c = rms_norm(latent) * kv_a_norm, the rope key rotated.
  const auto* norm_w = reinterpret_cast<const float*>(layer.kv_a_norm.data);
  for (int64_t t = 0; t < n; ++t) {
    float* c = kv.row(t);
    double ss = 0;
    for (int64_t i = 0; i < r; ++i) ss += static_cast<double>(c[i]) * c[i];
    const float s = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(r) + p.norm_eps));
    for (int64_t i = 0; i < r; ++i) c[i] = c[i] * s * norm_w[i];
  }
  rope_at(kv, dk, r, p.rope);
  // 2. Absorbed queries q'[t, h] = [k_b[h] q_nope[t, h] | rotated q_rope[t, h]], one product per head
  // over all tokens (rows a head stride apart). They and the latent outputs live in the block
  // scratch's q [T, H*(R+rope)] and attn [T, H*R] (the cache's head dims), which the MLA block
  // itself does not use.
  Act& qa = scratch_.q;
  qa.n_rows = n;
  for (int64_t h = 0; h < h_count; ++h)
    matmul_->run(layer.wk_b.matrix(h), q.data + h * dq, q.n_cols, n, qa.data + h * dk, qa.n_cols);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < h_count; ++h)
      std::memcpy(qa.row(t) + h * dk + r, q.row(t) + h * dq + nope, static_cast<size_t>(rope_dim) * sizeof(float));
  rope_at(qa, dk, r, p.rope);
  // 3. Attention of every head to the one shared cache "head" (values: its first R elements).
  AttentionParams ap;
  ap.layer = p.layer;
  ap.n_head = h_count;
  ap.n_head_kv = 1;
  ap.head_dim_k = dk;
  ap.head_dim_v = r;
  ap.scale = p.scale != 0 ? p.scale : 1.0f / std::sqrt(static_cast<float>(dq));
  Act& latent = scratch_.attn;
  latent.n_rows = n;
  kv_->attend(pool_, ap, positions_.data(), seq_ids_.data(), qa, kv, kv, latent);
  // 4. out[t, h] = v_b[h] latent[t, h].
  out.n_rows = n;
  for (int64_t h = 0; h < h_count; ++h)
    matmul_->run(layer.wv_b.matrix(h), latent.data + h * r, latent.n_cols, n, out.data + h * dv, out.n_cols);
}

void CpuBackend::select_output_rows(const Act& x, Act& out) {
  VELOCITY_CHECK(out.n_cols == x.n_cols);
  out.n_rows = step_outputs_;
  for (int64_t i = 0; i < step_outputs_; ++i)
    std::memcpy(out.row(i), x.row(output_rows_[i]), static_cast<size_t>(x.n_cols) * sizeof(float));
}

}  // namespace velocity::engine::cpu

namespace velocity::engine {
std::unique_ptr<Backend> make_cpu_backend(int n_threads) { return std::make_unique<cpu::CpuBackend>(n_threads); }
std::unique_ptr<Backend> make_cpu_backend(int n_threads, int32_t index) {
  return std::make_unique<cpu::CpuBackend>(n_threads, index);
}
}  // namespace velocity::engine
