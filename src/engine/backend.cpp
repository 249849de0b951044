// The reference composition of the blocks from primitive ops. Every backend inherits it; a
// backend that fuses a block is tested against this composition on its own primitives.
#include "engine/backend.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace velocity::engine {

const char* feature_name(Feature f) {
  switch (f) {
    case Feature::AttentionSinks: return "attention sinks";
    case Feature::SlidingWindow: return "sliding-window attention";
    case Feature::YarnRope: return "YaRN RoPE";
    case Feature::AttentionOutputBias: return "an attention output bias";
    case Feature::ExpertBiases: return "router and expert biases";
    case Feature::ClampedSwiglu: return "the clamped SwiGLU";
    case Feature::LatentAttention: return "multi-head latent attention";
    case Feature::SharedExperts: return "shared experts";
    case Feature::GroupedRouting: return "DeepSeek's expert routing (sigmoid, selection bias, expert groups)";
  }
  return "?";
}

// YaRN as Hugging Face computes it (modeling_rope_utils._compute_yarn_parameters): the
// correction dim of b rotations at the original context is n_rot ln(ctx / (2 pi b)) / (2 ln base);
// pairs below the fast one keep their frequency, pairs above the slow one are divided by the
// factor, and the ramp between them is linear in the pair index.
double rope_inv_freq(const RopeParams& rope, int64_t i) {
  const double n_rot = rope.n_rot, base = rope.freq_base;
  const double extrapolated = std::pow(base, -2.0 * static_cast<double>(i) / n_rot);
  if (rope.yarn_factor == 0) return extrapolated * rope.freq_scale;
  auto correction_dim = [&](double rotations) {
    return n_rot * std::log(static_cast<double>(rope.yarn_orig_ctx) / (rotations * 2 * std::numbers::pi)) /
           (2 * std::log(base));
  };
  double low = correction_dim(rope.yarn_beta_fast), high = correction_dim(rope.yarn_beta_slow);
  if (rope.yarn_truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, n_rot - 1);
  if (low == high) high += 0.001;
  const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
  return extrapolated / rope.yarn_factor * ramp + extrapolated * (1 - ramp);
}

namespace {
// Views an allocated activation buffer as [n_rows, its columns].
Act& rows(Act& a, int64_t n_rows) {
  VELOCITY_CHECK(n_rows <= a.capacity);
  a.n_rows = n_rows;
  return a;
}
}  // namespace

void Backend::check_batch(const Batch& batch) {
  const int64_t n = batch.size();
  if (n == 0) fail("forward: empty batch");
  if (n > shape_.max_tokens) fail("forward: batch of {} tokens exceeds the maximum of {}", n, shape_.max_tokens);
  if (static_cast<int64_t>(batch.positions.size()) != n || static_cast<int64_t>(batch.seq_ids.size()) != n ||
      static_cast<int64_t>(batch.outputs.size()) != n)
    fail("forward: batch arrays differ in length");
  int64_t n_out = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t tok = batch.tokens[i], pos = batch.positions[i], seq = batch.seq_ids[i];
    if (tok < 0 || tok >= shape_.n_vocab)
      fail("forward: token {} at batch index {} is outside the vocabulary [0, {})", tok, i, shape_.n_vocab);
    if (seq < 0 || seq >= shape_.n_slots)
      fail("forward: sequence id {} at batch index {} is outside [0, {})", seq, i, shape_.n_slots);
    if (pos < 0 || pos >= shape_.n_ctx)
      fail("forward: position {} at batch index {} exceeds the context length of {} tokens", pos, i, shape_.n_ctx);
    const Output o = batch.outputs[i];
    if (o != Output::None && o != Output::Logits && o != Output::Token)
      fail("forward: output kind {} at batch index {} is not one of none, logits, token", static_cast<int>(o), i);
    n_out += o != Output::None;
  }
  if (n_out > shape_.max_logits)
    fail("forward: {} tokens want outputs; the model was loaded for at most {} per step", n_out, shape_.max_logits);
  if (batch.n_decode < 0 || batch.n_decode > n) fail("forward: n_decode {} outside [0, {}]", batch.n_decode, n);
  if (batch.n_decode > 0) {
    // Each decode token is its sequence's only token in the step.
    seq_count_.assign(static_cast<size_t>(shape_.n_slots), 0);
    for (int64_t i = 0; i < n; ++i) ++seq_count_[batch.seq_ids[i]];
    for (int64_t i = 0; i < batch.n_decode; ++i)
      if (seq_count_[batch.seq_ids[i]] != 1)
        fail("forward: decode token {} shares sequence {} with other tokens of the step", i, batch.seq_ids[i]);
  }
  step_tokens_ = n;
  step_outputs_ = n_out;
}

uint64_t Backend::kv_cache_bytes(const StepShape& s) {
  const int64_t layers = s.kv_layers.empty() ? s.n_layer : static_cast<int64_t>(s.kv_layers.size());
  if (layers == 0 || s.n_layer == 0) return 0;
  const int64_t v_bytes = s.kv_shared_v ? 0 : dtype_row_bytes(s.cache_type_v, s.head_dim_v);
  return static_cast<uint64_t>(layers * s.n_slots * s.n_ctx * s.n_head_kv) *
         static_cast<uint64_t>(dtype_row_bytes(s.cache_type_k, s.head_dim_k) + v_bytes);
}

uint64_t Backend::block_scratch_bytes(const StepShape& s) {
  const int64_t t = s.max_tokens;
  int64_t floats = 2 * t * s.n_embd + t * s.n_head * s.head_dim_k + t * s.n_head_kv * (s.head_dim_k + s.head_dim_v) +
                   t * s.n_head * s.head_dim_v;
  const int64_t n_ff = std::max({s.n_ff, s.n_ff_expert, s.n_ff_shared});
  if (n_ff > 0) floats += 2 * t * n_ff;
  floats += t * (s.mla_q_dim + s.mla_q_lora + s.mla_out_dim);
  if (s.n_expert > 0) floats += t * s.n_expert + 2 * t * s.n_expert_used;  // router logits, route ids + weights
  if (s.has_output) floats += s.max_logits * (s.n_embd + s.n_vocab);
  return static_cast<uint64_t>(floats) * 4;
}

void Backend::reserve_blocks() {
  const StepShape& s = shape_;
  seq_count_.reserve(static_cast<size_t>(s.n_slots));
  const int64_t t = s.max_tokens;
  scratch_.norm = alloc(t, s.n_embd);
  scratch_.proj = alloc(t, s.n_embd);
  scratch_.q = alloc(t, s.n_head * s.head_dim_k);
  scratch_.k = alloc(t, s.n_head_kv * s.head_dim_k);
  scratch_.v = alloc(t, s.n_head_kv * s.head_dim_v);
  scratch_.attn = alloc(t, s.n_head * s.head_dim_v);
  const int64_t n_ff = std::max({s.n_ff, s.n_ff_expert, s.n_ff_shared});
  if (s.mla_q_dim > 0) scratch_.mla_q = alloc(t, s.mla_q_dim);
  if (s.mla_q_lora > 0) scratch_.mla_qa = alloc(t, s.mla_q_lora);
  if (s.mla_out_dim > 0) scratch_.mla_out = alloc(t, s.mla_out_dim);
  if (n_ff > 0) {
    scratch_.gate = alloc(t, n_ff);
    scratch_.up = alloc(t, n_ff);
  }
  if (s.n_expert > 0) {
    scratch_.router = alloc(t, s.n_expert);
    scratch_.route = alloc_route(t, s.n_expert_used);
  }
  if (s.has_output) {
    scratch_.logits_in = alloc(s.max_logits, s.n_embd);
    scratch_.logits = alloc(s.max_logits, s.n_vocab);
  }
}

void Backend::matmuls(const Act& x, std::span<const Weight* const> ws, std::span<Act* const> ys) {
  VELOCITY_CHECK(ws.size() == ys.size());
  for (size_t i = 0; i < ws.size(); ++i) matmul(*ws[i], x, *ys[i]);
}

void Backend::swiglu_clamped(const Act&, const Act&, const ExpertGlu&, Act&) {
  fail("{}: {} is not implemented on this backend", name(), feature_name(Feature::ClampedSwiglu));
}

void Backend::mla_attention(const MlaParams&, const MlaLayer&, const Act&, Act&, Act&) {
  fail("{}: {} is not implemented on this backend", name(), feature_name(Feature::LatentAttention));
}

void Backend::attention_block(const AttentionLayer& layer, const AttentionParams& p, Act& x) {
  const int64_t n = x.n_rows;
  BlockScratch& s = scratch_;
  rms_norm(x, layer.norm, p.norm_eps, rows(s.norm, n));
  const Weight* const qkv[] = {&layer.wq, &layer.wk, &layer.wv};
  Act* const qkv_out[] = {&rows(s.q, n), &rows(s.k, n), &rows(s.v, n)};
  matmuls(s.norm, qkv, qkv_out);
  if (layer.bq.present()) add_bias(s.q, layer.bq);
  if (layer.bk.present()) add_bias(s.k, layer.bk);
  if (layer.bv.present()) add_bias(s.v, layer.bv);
  if (layer.q_norm.present()) rms_norm_heads(s.q, p.head_dim_k, layer.q_norm, p.norm_eps);
  if (layer.k_norm.present()) rms_norm_heads(s.k, p.head_dim_k, layer.k_norm, p.norm_eps);
  if (p.rope.type != RopeType::None) {
    rope(s.q, p.head_dim_k, p.rope);
    rope(s.k, p.head_dim_k, p.rope);
  }
  attention(p, s.q, s.k, s.v, rows(s.attn, n));
  matmul(layer.wo, s.attn, rows(s.proj, n));
  if (layer.bo.present()) add_bias(s.proj, layer.bo);
  add(x, s.proj);
}

void Backend::ffn_block(const FfnLayer& layer, float eps, Act& x) {
  const int64_t n = x.n_rows;
  BlockScratch& s = scratch_;
  rms_norm(x, layer.norm, eps, rows(s.norm, n));
  Act gate = s.gate, up = s.up;  // views with this layer's width
  gate.n_cols = up.n_cols = layer.gate.n_out;
  gate.n_rows = up.n_rows = n;
  const Weight* const gate_up[] = {&layer.gate, &layer.up};
  Act* const gate_up_out[] = {&gate, &up};
  matmuls(s.norm, gate_up, gate_up_out);
  swiglu(gate, up, gate);
  matmul(layer.down, gate, rows(s.proj, n));
  add(x, s.proj);
}

void Backend::moe_block(const MoeLayer& layer, const MoeParams& p, float eps, Act& x) {
  const int64_t n = x.n_rows;
  BlockScratch& s = scratch_;
  rms_norm(x, layer.norm, eps, rows(s.norm, n));
  matmul(layer.router, s.norm, rows(s.router, n));
  if (layer.router_b.present()) add_bias(s.router, layer.router_b);
  s.route.n_tokens = n;
  moe_route(s.router, p, s.route);
  moe_experts(s.route, layer, s.norm, rows(s.proj, n));
  add(x, s.proj);
  if (!layer.gate_shexp.present()) return;
  // The shared experts read the same normed input; x takes the two sums one after the other.
  Act gate = s.gate, up = s.up;
  gate.n_cols = up.n_cols = layer.gate_shexp.n_out;
  gate.n_rows = up.n_rows = n;
  const Weight* const gate_up[] = {&layer.gate_shexp, &layer.up_shexp};
  Act* const gate_up_out[] = {&gate, &up};
  matmuls(s.norm, gate_up, gate_up_out);
  swiglu(gate, up, gate);
  matmul(layer.down_shexp, gate, rows(s.proj, n));
  add(x, s.proj);
}

void Backend::mla_attention_block(const MlaLayer& layer, const MlaParams& p, Act& x) {
  const int64_t n = x.n_rows;
  BlockScratch& s = scratch_;
  rms_norm(x, layer.norm, p.norm_eps, rows(s.norm, n));
  if (layer.wq_a.present()) {
    matmul(layer.wq_a, s.norm, rows(s.mla_qa, n));
    rms_norm(s.mla_qa, layer.q_a_norm, p.norm_eps, s.mla_qa);
    matmul(layer.wq_b, s.mla_qa, rows(s.mla_q, n));
  } else {
    matmul(layer.wq, s.norm, rows(s.mla_q, n));
  }
  matmul(layer.wkv_a, s.norm, rows(s.k, n));
  mla_attention(p, layer, s.mla_q, s.k, rows(s.mla_out, n));
  matmul(layer.wo, s.mla_out, rows(s.proj, n));
  add(x, s.proj);
}

void Backend::output_block(const Weight& norm, const Weight& head, float eps, const Act& x) {
  BlockScratch& s = scratch_;
  select_output_rows(x, rows(s.logits_in, step_outputs_));
  if (step_outputs_ == 0) return;
  rms_norm(s.logits_in, norm, eps, s.logits_in);
  matmul(head, s.logits_in, rows(s.logits, step_outputs_));
}

}  // namespace velocity::engine

namespace velocity::engine {

// cuda:0 when this build has CUDA and the machine a GPU the kernels support (compute capability
// 8.0 or newer); else the CPU. The CUDA backend became the default once all its GPU tests, the
// Hugging Face logits, serve and perplexity checks passed on an H100 (docs/NOTES.md, session 5).
Device default_device() { return cuda_device_supported(0) ? Device::cuda(0) : Device::cpu(); }

std::unique_ptr<Backend> make_backend(Device device, int n_threads) {
  if (device.is_cpu()) return make_cpu_backend(n_threads, device.index);
  return make_cuda_backend(device.index);
}

}  // namespace velocity::engine
