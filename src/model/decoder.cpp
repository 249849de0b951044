// The llama-family decoder layer shared by llama, qwen2, qwen3, qwen3moe and Mixtral: pre-norm
// attention (GQA, RoPE, optional QKV bias / Q-K norm) then a pre-norm SwiGLU FFN or MoE.
#include <cmath>

#include "core/error.h"
#include "model/architecture.h"

namespace velocity::model {

engine::AttentionLayer load_attention(Weights& w, const Config& c, int64_t il, const DecoderOptions& options) {
  const int64_t d = c.n_embd, q_dim = c.n_head * c.head_dim_k, k_dim = c.n_head_kv * c.head_dim_k,
                v_dim = c.n_head_kv * c.head_dim_v, o_dim = c.n_head * c.head_dim_v;
  auto name = [il](const char* s) { return Weights::layer(il, s); };
  engine::AttentionLayer a;
  a.norm = w.get(name("attn_norm.weight"), {d});
  a.wq = w.get(name("attn_q.weight"), {d, q_dim});
  a.wk = w.get(name("attn_k.weight"), {d, k_dim});
  a.wv = w.get(name("attn_v.weight"), {d, v_dim});
  a.wo = w.get(name("attn_output.weight"), {o_dim, d});
  for (const auto* m : {&a.wq, &a.wk, &a.wv, &a.wo}) w.count_bytes(*m);
  if (options.qkv_bias) {
    a.bq = w.get(name("attn_q.bias"), {q_dim});
    a.bk = w.get(name("attn_k.bias"), {k_dim});
    a.bv = w.get(name("attn_v.bias"), {v_dim});
  } else {
    // Some llama-architecture files carry biases (e.g. converted from models with attention_bias).
    a.bq = w.optional(name("attn_q.bias"), {q_dim});
    a.bk = w.optional(name("attn_k.bias"), {k_dim});
    a.bv = w.optional(name("attn_v.bias"), {v_dim});
  }
  if (options.qk_norm) {
    a.q_norm = w.get(name("attn_q_norm.weight"), {c.head_dim_k});
    a.k_norm = w.get(name("attn_k_norm.weight"), {c.head_dim_k});
  }
  return a;
}

DecoderLayer load_decoder_layer(Weights& w, const Config& c, int64_t il, const DecoderOptions& options) {
  const int64_t d = c.n_embd;
  auto name = [il](const char* s) { return Weights::layer(il, s); };
  DecoderLayer l;
  l.attn = load_attention(w, c, il, options);
  if (c.has_rope_freqs) l.rope_freqs = w.on_device("rope_freqs.weight", {c.n_rot / 2}, w.layer_device(il));
  if (c.n_expert > 0) {
    engine::MoeLayer& m = l.moe;
    const int64_t e = c.n_expert, f = c.n_ff_expert;
    m.norm = w.get(name("ffn_norm.weight"), {d});
    m.router = w.get(name("ffn_gate_inp.weight"), {d, e});
    m.gate_exps = w.get(name("ffn_gate_exps.weight"), {d, f, e});
    m.up_exps = w.get(name("ffn_up_exps.weight"), {d, f, e});
    m.down_exps = w.get(name("ffn_down_exps.weight"), {f, d, e});
    w.count_bytes(m.router);
    const double used = static_cast<double>(c.n_expert_used) / static_cast<double>(e);
    for (const auto* x : {&m.gate_exps, &m.up_exps, &m.down_exps}) w.count_bytes(*x, used);
  } else {
    engine::FfnLayer& f = l.ffn;
    f.norm = w.get(name("ffn_norm.weight"), {d});
    f.gate = w.get(name("ffn_gate.weight"), {d, c.n_ff});
    f.up = w.get(name("ffn_up.weight"), {d, c.n_ff});
    f.down = w.get(name("ffn_down.weight"), {c.n_ff, d});
    for (const auto* x : {&f.gate, &f.up, &f.down}) w.count_bytes(*x);
  }
  return l;
}

void refuse_rope_scaling(const Hparams& h) {
  if (auto type = h.string("rope.scaling.type"); type && *type != "none")
    fail("{}: {}.rope.scaling.type \"{}\" is not supported yet", h.file().shards().at(0).path, h.arch(), *type);
}

void read_yarn_rope(const Hparams& h, Config& c) {
  const std::string& path = h.file().shards().at(0).path;
  const auto type = h.string("rope.scaling.type");
  if (!type || *type == "none") return;
  if (*type != "yarn") fail("{}: {}.rope.scaling.type \"{}\" is not supported (yarn or none)", path, h.arch(), *type);
  c.rope_yarn_factor = h.real("rope.scaling.factor", 0.0f);
  if (!(c.rope_yarn_factor > 0)) fail("{}: {}.rope.scaling.factor must be positive for YaRN", path, h.arch());
  c.rope_yarn_orig_ctx = h.count("rope.scaling.original_context_length");
  c.rope_yarn_beta_fast = h.real("rope.scaling.yarn_beta_fast", 32.0f);
  c.rope_yarn_beta_slow = h.real("rope.scaling.yarn_beta_slow", 1.0f);
  if (!(c.rope_yarn_beta_fast > 0 && c.rope_yarn_beta_slow > 0))
    fail("{}: {}.rope.scaling.yarn_beta_fast/slow must be positive", path, h.arch());
  // llama.cpp's magnitude: attn_factor (1 unless written) times YaRN's 0.1 ln(factor) + 1 (for a
  // factor above 1; HF's get_mscale).
  const double mscale = c.rope_yarn_factor > 1 ? 0.1 * std::log(c.rope_yarn_factor) + 1.0 : 1.0;
  c.rope_attn_factor = static_cast<float>(h.real("rope.scaling.attn_factor", 1.0f) * mscale);
}

engine::RopeParams rope_params(const Config& c, int64_t n_rot) {
  engine::RopeParams r;
  r.type = c.rope_type;
  r.n_rot = static_cast<int32_t>(n_rot);
  r.freq_base = c.rope_freq_base;
  r.freq_scale = c.rope_freq_scale;
  r.yarn_factor = c.rope_yarn_factor;
  r.yarn_orig_ctx = c.rope_yarn_orig_ctx;
  r.yarn_beta_fast = c.rope_yarn_beta_fast;
  r.yarn_beta_slow = c.rope_yarn_beta_slow;
  r.yarn_truncate = c.rope_yarn_truncate;
  r.attn_factor = c.rope_attn_factor;
  return r;
}

engine::AttentionParams attention_params(const Config& c, const DecoderLayer& l, int64_t il) {
  engine::AttentionParams p;
  p.layer = static_cast<int32_t>(il);
  p.n_head = c.n_head;
  p.n_head_kv = c.n_head_kv;
  p.head_dim_k = c.head_dim_k;
  p.head_dim_v = c.head_dim_v;
  p.norm_eps = c.rms_eps;
  p.rope = rope_params(c, c.n_rot);
  p.rope.freq_factors = l.rope_freqs;
  return p;
}

void decoder_forward(ForwardPass& pass, const Config& c, const std::vector<DecoderLayer>& layers) {
  engine::MoeParams moe;
  moe.n_expert = c.n_expert;
  moe.n_expert_used = c.n_expert_used;
  moe.normalize_weights = c.moe_norm_weights;
  for (size_t il = 0; il < layers.size(); ++il) {
    const DecoderLayer& l = layers[il];
    engine::Backend& b = pass.layer(static_cast<int64_t>(il));
    b.attention_block(l.attn, attention_params(c, l, static_cast<int64_t>(il)), pass.x());
    if (l.moe.router.present())
      b.moe_block(l.moe, moe, c.rms_eps, pass.x());
    else
      b.ffn_block(l.ffn, c.rms_eps, pass.x());
  }
}

}  // namespace velocity::model
