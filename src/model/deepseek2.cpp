// deepseek2: DeepSeek-V2, V2-Lite, V3, R1 as llama.cpp's GGUFs define them (LLM_ARCH_DEEPSEEK2),
// checked against Hugging Face's DeepseekV2ForCausalLM / DeepseekV3ForCausalLM:
//   - multi-head latent attention (engine::MlaLayer): q through the q LoRA (attn_q_a, its norm,
//     attn_q_b; V2-Lite: attn_q), one compressed latent per token (attn_kv_a_mqa, then
//     attn_kv_a_norm) and one shared RoPE key; the cache holds [latent | rope key] only and
//     attention runs absorbed (attn_k_b, attn_v_b). Files with the older attn_kv_b (written
//     before llama.cpp split it; attention.key_length/value_length are then the per-head widths)
//     are split here at load into F32 k_b (transposed) and v_b;
//   - RoPE on interleaved pairs (HF's view_as_complex / rope_interleave), YaRN with DeepSeek's
//     attention-scale correction: softmax scale mscale^2 / sqrt(nope + rope), mscale =
//     1 + rope.scaling.yarn_log_multiplier * ln(factor) (HF: 0.1 * mscale_all_dim), cos/sin of
//     magnitude 1 (HF: mscale / mscale_all_dim, equal in every DeepSeek config);
//   - the first leading_dense_block_count layers dense, the others MoE: shared experts plus
//     routed ones scored by softmax (V2) or sigmoid with the selection-only bias exp_probs_b and
//     group-limited top-k (V3/R1), weights renormalised when expert_weights_norm, times
//     expert_weights_scale;
//   - nextn_predict_layers trailing layers (V3's multi-token prediction) are skipped: their
//     tensors are accepted, never uploaded, and the model runs block_count minus those layers.
#include <cmath>
#include <deque>

#include "core/error.h"
#include "core/quant.h"
#include "model/architecture.h"

namespace velocity::model {

namespace {

struct Deepseek2Layer {
  engine::MlaLayer attn;
  engine::FfnLayer ffn;  // leading dense layers
  engine::MoeLayer moe;  // the others (moe.router present)
  engine::Weight exp_probs_b;
};

class Deepseek2 final : public Architecture {
 public:
  void read_config(const Hparams& h, Config& c) override {
    const std::string& path = h.file().shards().at(0).path;
    auto bad = [&](const std::string& what) { fail("{}: {}: {}", path, h.arch(), what); };
    c.rope_type = engine::RopeType::Normal;
    read_yarn_rope(h, c);
    c.rope_attn_factor = 1.0f;
    if (c.rope_yarn_factor > 1)
      mscale_ =
          1.0 + h.real("rope.scaling.yarn_log_multiplier", 0.0f) * std::log(static_cast<double>(c.rope_yarn_factor));
    n_nextn_ = h.has("nextn_predict_layers") ? h.count("nextn_predict_layers") : 0;
    if (n_nextn_ >= c.n_layer) bad(fmt::format("nextn_predict_layers {} leaves no layer of {}", n_nextn_, c.n_layer));
    c.n_layer -= n_nextn_;
    c.kv_latent = true;
    c.q_lora_rank = h.count("attention.q_lora_rank", 0);
    c.kv_lora_rank = h.count("attention.kv_lora_rank");
    c.qk_rope = h.count("rope.dimension_count");
    // llama.cpp's current files: key/value_length are the latent row's widths, the _mla keys the
    // per-head ones; older files (attn_kv_b) have only the per-head ones.
    int64_t k_head = c.head_dim_k;
    c.v_head_dim = c.head_dim_v;
    if (h.has("attention.key_length_mla")) {
      k_head = h.count("attention.key_length_mla");
      c.v_head_dim = h.count("attention.value_length_mla");
      if (c.head_dim_k != c.kv_lora_rank + c.qk_rope || c.head_dim_v != c.kv_lora_rank || c.n_head_kv != 1)
        bad(fmt::format("with key_length_mla, key_length {} / value_length {} / head_count_kv {} must be {} / {} / 1",
                        c.head_dim_k, c.head_dim_v, c.n_head_kv, c.kv_lora_rank + c.qk_rope, c.kv_lora_rank));
    } else if (c.n_head_kv != c.n_head) {
      bad(fmt::format("head_count_kv {} must equal head_count {} without key_length_mla", c.n_head_kv, c.n_head));
    }
    c.qk_nope = k_head - c.qk_rope;
    if (c.qk_nope <= 0 || c.qk_rope % 2 != 0)
      bad(fmt::format("rope.dimension_count {} must be even and below the key width {}", c.qk_rope, k_head));
    c.n_head_kv = 1;
    c.head_dim_k = c.kv_lora_rank + c.qk_rope;
    c.head_dim_v = c.kv_lora_rank;
    c.n_rot = c.qk_rope;

    n_dense_ = h.has("leading_dense_block_count") ? h.count("leading_dense_block_count") : 0;
    using F = engine::Feature;
    c.features = {F::LatentAttention};
    if (c.rope_yarn_factor != 0) c.features.push_back(F::YarnRope);
    if (n_dense_ >= c.n_layer) return;  // no MoE layer
    c.n_expert = h.count("expert_count");
    c.n_expert_used = h.count("expert_used_count");
    c.n_ff_expert = h.count("expert_feed_forward_length");
    c.n_ff_shared = c.n_ff_expert * (h.has("expert_shared_count") ? h.count("expert_shared_count") : 0);
    c.moe_norm_weights = h.flag("expert_weights_norm", false);
    moe_.n_expert = c.n_expert;
    moe_.n_expert_used = c.n_expert_used;
    moe_.normalize_weights = c.moe_norm_weights;
    moe_.weights_scale = h.real("expert_weights_scale", 1.0f);
    if (!(moe_.weights_scale > 0)) bad("expert_weights_scale must be positive");
    // llama.cpp: 0 (none) or absent means softmax, for the V2 files written before the key existed.
    const float gating_value = h.real("expert_gating_func", 1.0f);
    const int64_t gating = gating_value == 0 ? 1 : static_cast<int64_t>(gating_value);
    if ((gating != 1 && gating != 2) || gating_value != static_cast<float>(static_cast<int64_t>(gating_value)))
      bad(fmt::format("expert_gating_func {} is not softmax (1) or sigmoid (2)", gating_value));
    moe_.scoring = gating == 2 ? engine::MoeParams::Scoring::Sigmoid : engine::MoeParams::Scoring::Softmax;
    moe_.n_group = h.count("expert_group_count", 1);
    moe_.n_group_used = h.count("expert_group_used_count", moe_.n_group);
    if (c.n_expert_used > c.n_expert)
      bad(fmt::format("expert_used_count {} exceeds expert_count {}", c.n_expert_used, c.n_expert));
    if (c.n_expert % moe_.n_group != 0 || moe_.n_group_used > moe_.n_group ||
        c.n_expert_used > moe_.n_group_used * (c.n_expert / moe_.n_group))
      bad(fmt::format("{} experts in {} groups, {} groups used, cannot pick {}", c.n_expert, moe_.n_group,
                      moe_.n_group_used, c.n_expert_used));
    if (c.n_ff_shared > 0) c.features.push_back(F::SharedExperts);
    const bool has_bias = h.file().find_tensor(Weights::layer(n_dense_, "exp_probs_b.bias")) != nullptr;
    if (gating == 2 || has_bias || moe_.n_group > 1 || moe_.weights_scale != 1.0f)
      c.features.push_back(F::GroupedRouting);
  }

  void load(Weights& w, const Config& c) override {
    config_ = c;
    const int64_t d = c.n_embd, n_head = c.n_head, r = c.kv_lora_rank, q_dim = n_head * (c.qk_nope + c.qk_rope);
    const bool split_kv = w.has(Weights::layer(0, "attn_k_b.weight")) || !w.has(Weights::layer(0, "attn_kv_b.weight"));

    for (int64_t il = 0; il < c.n_layer; ++il) {
      auto name = [il](const char* s) { return Weights::layer(il, s); };
      Deepseek2Layer l;
      engine::MlaLayer& a = l.attn;
      a.norm = w.get(name("attn_norm.weight"), {d});
      if (c.q_lora_rank > 0) {
        a.wq_a = w.get(name("attn_q_a.weight"), {d, c.q_lora_rank});
        a.q_a_norm = w.get(name("attn_q_a_norm.weight"), {c.q_lora_rank});
        a.wq_b = w.get(name("attn_q_b.weight"), {c.q_lora_rank, q_dim});
      } else {
        a.wq = w.get(name("attn_q.weight"), {d, q_dim});
      }
      a.wkv_a = w.get(name("attn_kv_a_mqa.weight"), {d, r + c.qk_rope});
      a.kv_a_norm = w.get(name("attn_kv_a_norm.weight"), {r});
      if (split_kv) {
        a.wk_b = w.get(name("attn_k_b.weight"), {c.qk_nope, r, n_head});
        a.wv_b = w.get(name("attn_v_b.weight"), {r, c.v_head_dim, n_head});
      } else {
        split_kv_b(w, c, il, a);
      }
      a.wo = w.get(name("attn_output.weight"), {n_head * c.v_head_dim, d});
      for (const auto* x : {&a.wq, &a.wq_a, &a.wq_b, &a.wkv_a, &a.wk_b, &a.wv_b, &a.wo})
        if (x->present()) w.count_bytes(*x);
      if (il < n_dense_) {
        engine::FfnLayer& f = l.ffn;
        if (c.n_ff <= 0) fail("{}: {}.feed_forward_length is missing", w_path(w), c.arch);
        f.norm = w.get(name("ffn_norm.weight"), {d});
        f.gate = w.get(name("ffn_gate.weight"), {d, c.n_ff});
        f.up = w.get(name("ffn_up.weight"), {d, c.n_ff});
        f.down = w.get(name("ffn_down.weight"), {c.n_ff, d});
        for (const auto* x : {&f.gate, &f.up, &f.down}) w.count_bytes(*x);
      } else {
        engine::MoeLayer& m = l.moe;
        const int64_t e = c.n_expert, fe = c.n_ff_expert;
        m.norm = w.get(name("ffn_norm.weight"), {d});
        m.router = w.get(name("ffn_gate_inp.weight"), {d, e});
        l.exp_probs_b = w.optional(name("exp_probs_b.bias"), {e});
        m.gate_exps = w.get(name("ffn_gate_exps.weight"), {d, fe, e});
        m.up_exps = w.get(name("ffn_up_exps.weight"), {d, fe, e});
        m.down_exps = w.get(name("ffn_down_exps.weight"), {fe, d, e});
        if (c.n_ff_shared > 0) {
          m.gate_shexp = w.get(name("ffn_gate_shexp.weight"), {d, c.n_ff_shared});
          m.up_shexp = w.get(name("ffn_up_shexp.weight"), {d, c.n_ff_shared});
          m.down_shexp = w.get(name("ffn_down_shexp.weight"), {c.n_ff_shared, d});
          for (const auto* x : {&m.gate_shexp, &m.up_shexp, &m.down_shexp}) w.count_bytes(*x);
        }
        w.count_bytes(m.router);
        const double used = static_cast<double>(c.n_expert_used) / static_cast<double>(e);
        for (const auto* x : {&m.gate_exps, &m.up_exps, &m.down_exps}) w.count_bytes(*x, used);
      }
      layers_.push_back(l);
    }
    for (int64_t il = c.n_layer; il < c.n_layer + n_nextn_; ++il) w.skip_prefix(Weights::layer(il, ""));
  }

  void forward(ForwardPass& pass) override {
    const Config& c = config_;
    for (size_t il = 0; il < layers_.size(); ++il) {
      const Deepseek2Layer& l = layers_[il];
      engine::Backend& b = pass.layer(static_cast<int64_t>(il));
      b.mla_attention_block(l.attn, params(static_cast<int32_t>(il)), pass.x());
      if (l.moe.router.present()) {
        engine::MoeParams moe = moe_;
        moe.selection_bias = l.exp_probs_b;
        b.moe_block(l.moe, moe, c.rms_eps, pass.x());
      } else {
        b.ffn_block(l.ffn, c.rms_eps, pass.x());
      }
    }
  }

 private:
  static const std::string& w_path(const Weights& w) { return w.file().shards().at(0).path; }

  engine::MlaParams params(int32_t il) const {
    const Config& c = config_;
    engine::MlaParams p;
    p.layer = il;
    p.n_head = c.n_head;
    p.kv_lora_rank = c.kv_lora_rank;
    p.qk_nope = c.qk_nope;
    p.qk_rope = c.qk_rope;
    p.v_head_dim = c.v_head_dim;
    p.norm_eps = c.rms_eps;
    p.scale = static_cast<float>(mscale_ * mscale_ / std::sqrt(static_cast<double>(c.qk_nope + c.qk_rope)));
    p.rope = rope_params(c, c.qk_rope);
    return p;
  }

  // attn_kv_b [R -> H*(nope + dv)] (rows h*(nope+dv) + i) into F32 k_b[h] [nope -> R] (the
  // transposed key rows) and v_b[h] [R -> dv], as llama.cpp's converter splits it today.
  void split_kv_b(Weights& w, const Config& c, int64_t il, engine::MlaLayer& a) {
    const int64_t n_head = c.n_head, r = c.kv_lora_rank, nope = c.qk_nope, dv = c.v_head_dim, per_head = nope + dv;
    const gguf::TensorInfo& t = w.host(Weights::layer(il, "attn_kv_b.weight"), {r, n_head * per_head});
    const int64_t row_bytes = dtype_row_bytes(t.type, r);
    std::vector<float>& k_b = storage_.emplace_back(static_cast<size_t>(n_head * r * nope));
    std::vector<float>& v_b = storage_.emplace_back(static_cast<size_t>(n_head * dv * r));
    std::vector<float> row(static_cast<size_t>(r));
    for (int64_t h = 0; h < n_head; ++h)
      for (int64_t i = 0; i < per_head; ++i) {
        dequantize_row(t.type, t.data + (h * per_head + i) * row_bytes, row.data(), r);
        for (int64_t j = 0; j < r; ++j) {
          if (i < nope)
            k_b[static_cast<size_t>((h * r + j) * nope + i)] = row[j];
          else
            v_b[static_cast<size_t>((h * dv + i - nope) * r + j)] = row[j];
        }
      }
    engine::Backend& b = w.backend(w.layer_device(il));
    const int64_t k_shape[] = {nope, r, n_head}, v_shape[] = {r, dv, n_head};
    const std::string& k_name = names_.emplace_back(Weights::layer(il, "attn_k_b.weight (from attn_kv_b)"));
    const std::string& v_name = names_.emplace_back(Weights::layer(il, "attn_v_b.weight (from attn_kv_b)"));
    a.wk_b = b.upload(k_name, DType::F32, k_shape, reinterpret_cast<const uint8_t*>(k_b.data()));
    a.wv_b = b.upload(v_name, DType::F32, v_shape, reinterpret_cast<const uint8_t*>(v_b.data()));
  }

  Config config_;
  engine::MoeParams moe_;
  double mscale_ = 1.0;
  int64_t n_dense_ = 0, n_nextn_ = 0;
  std::vector<Deepseek2Layer> layers_;
  std::deque<std::vector<float>> storage_;  // k_b / v_b split from attn_kv_b (the CPU backend keeps pointers)
  std::deque<std::string> names_;
};

}  // namespace

std::unique_ptr<Architecture> make_deepseek2() { return std::make_unique<Deepseek2>(); }

}  // namespace velocity::model
