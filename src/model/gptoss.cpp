// gpt-oss (openai/gpt-oss-20b, -120b) as llama.cpp's GGUFs define it (LLM_ARCH_OPENAI_MOE,
// "gpt-oss"), checked against Hugging Face's GptOssForCausalLM:
//   - attention with Q/K/V/O biases and a learned sink logit per head (attn_sinks: one more
//     logit in each head's softmax that takes probability mass and adds no value); even layers
//     slide over the last attention.sliding_window positions (HF layer_types "sliding_attention"
//     for i % 2 == 0; llama.cpp's swa pattern 2), odd layers see everything;
//   - NEOX RoPE with YaRN (factor, original context, magnitude 0.1 ln(factor) + 1 on cos and sin);
//     the correction dims are not truncated, as HF's gpt-oss config says (truncate: false) and
//     OpenAI's reference computes them;
//   - every layer a MoE: router with bias, top-k of the logits then a softmax over those k (the
//     same weights as a softmax over all renormalised over the k), expert biases on gate, up and
//     down, the clamped SwiGLU (alpha 1.702, limit 7: gate clamped above, up on both sides,
//     (up + 1) * gate * sigmoid(alpha gate)); the FFN's input norm is HF's
//     post_attention_layernorm, named post_attention_norm in the GGUF.
#include "core/error.h"
#include "model/architecture.h"

namespace velocity::model {

namespace {

struct GptOssLayer {
  engine::AttentionLayer attn;
  engine::Weight sinks;  // F32 [H]
  engine::MoeLayer moe;
};

class GptOss final : public Architecture {
 public:
  void read_config(const Hparams& h, Config& c) override {
    const std::string& path = h.file().shards().at(0).path;
    c.rope_type = engine::RopeType::Neox;
    c.qkv_bias = true;
    read_yarn_rope(h, c);
    c.rope_yarn_truncate = false;
    c.sliding_window = h.count("attention.sliding_window");
    c.n_expert = h.count("expert_count");
    c.n_expert_used = h.count("expert_used_count");
    c.n_ff_expert = h.count("expert_feed_forward_length");
    c.moe_norm_weights = true;  // softmax over the selected k
    if (c.n_expert_used > c.n_expert)
      fail("{}: {}.expert_used_count {} exceeds expert_count {}", path, h.arch(), c.n_expert_used, c.n_expert);
    if (c.n_rot != c.head_dim_k)
      fail("{}: {}.rope.dimension_count {} must equal the head dim {} (gpt-oss rotates whole heads)", path, h.arch(),
           c.n_rot, c.head_dim_k);
    using F = engine::Feature;
    c.features = {F::AttentionSinks, F::SlidingWindow, F::AttentionOutputBias, F::ExpertBiases, F::ClampedSwiglu};
    if (c.rope_yarn_factor != 0) c.features.push_back(F::YarnRope);
  }

  void load(Weights& w, const Config& c) override {
    config_ = c;
    const int64_t d = c.n_embd, e = c.n_expert, f = c.n_ff_expert;
    const double used = static_cast<double>(c.n_expert_used) / static_cast<double>(e);
    for (int64_t il = 0; il < c.n_layer; ++il) {
      auto name = [il](const char* s) { return Weights::layer(il, s); };
      GptOssLayer l;
      l.attn = load_attention(w, c, il, DecoderOptions{.qkv_bias = true});
      l.attn.bo = w.get(name("attn_output.bias"), {d});
      l.sinks = w.get(name("attn_sinks.weight"), {c.n_head});
      engine::MoeLayer& m = l.moe;
      m.norm = w.get(name("post_attention_norm.weight"), {d});
      m.router = w.get(name("ffn_gate_inp.weight"), {d, e});
      m.router_b = w.get(name("ffn_gate_inp.bias"), {e});
      m.gate_exps = w.get(name("ffn_gate_exps.weight"), {d, f, e});
      m.up_exps = w.get(name("ffn_up_exps.weight"), {d, f, e});
      m.down_exps = w.get(name("ffn_down_exps.weight"), {f, d, e});
      m.gate_exps_b = w.get(name("ffn_gate_exps.bias"), {f, e});
      m.up_exps_b = w.get(name("ffn_up_exps.bias"), {f, e});
      m.down_exps_b = w.get(name("ffn_down_exps.bias"), {d, e});
      m.glu = {engine::ExpertGlu::Kind::Clamped, 1.702f, 7.0f};
      w.count_bytes(m.router);
      for (const auto* x : {&m.gate_exps, &m.up_exps, &m.down_exps}) w.count_bytes(*x, used);
      layers_.push_back(l);
    }
  }

  void forward(ForwardPass& pass) override {
    const Config& c = config_;
    engine::MoeParams moe;
    moe.n_expert = c.n_expert;
    moe.n_expert_used = c.n_expert_used;
    moe.normalize_weights = true;
    for (size_t il = 0; il < layers_.size(); ++il) {
      const GptOssLayer& l = layers_[il];
      engine::Backend& b = pass.layer(static_cast<int64_t>(il));
      b.attention_block(l.attn, params(il, l), pass.x());
      b.moe_block(l.moe, moe, c.rms_eps, pass.x());
    }
  }

 private:
  engine::AttentionParams params(size_t il, const GptOssLayer& l) const {
    const Config& c = config_;
    engine::AttentionParams p;
    p.layer = static_cast<int32_t>(il);
    p.n_head = c.n_head;
    p.n_head_kv = c.n_head_kv;
    p.head_dim_k = c.head_dim_k;
    p.head_dim_v = c.head_dim_v;
    p.norm_eps = c.rms_eps;
    p.rope = rope_params(c, c.n_rot);
    p.window = il % 2 == 0 ? c.sliding_window : 0;
    p.sinks = l.sinks;
    return p;
  }

  Config config_;
  std::vector<GptOssLayer> layers_;
};

}  // namespace

std::unique_ptr<Architecture> make_gptoss() { return std::make_unique<GptOss>(); }

}  // namespace velocity::model
