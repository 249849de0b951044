// Tensor plans and `<arch>.*` keys for `velocity convert`, per architecture, as llama.cpp's
// convert_hf_to_gguf.py (with gguf-py's tensor_mapping.py names) produces them:
//
//   HF name (model.layers.N.)              GGUF name (blk.N.)         notes
//   model.embed_tokens.weight              token_embd.weight
//   input_layernorm.weight                 attn_norm.weight
//   self_attn.{q,k,v}_proj.{weight,bias}   attn_{q,k,v}.{weight,bias} llama: q, k rows permuted
//   self_attn.o_proj.{weight,bias}         attn_output.{weight,bias}
//   self_attn.{q,k}_norm.weight            attn_{q,k}_norm.weight     qwen3, qwen3moe
//   post_attention_layernorm.weight        ffn_norm.weight
//   mlp.{gate,up,down}_proj.weight         ffn_{gate,up,down}.weight  dense
//   block_sparse_moe.gate / mlp.gate       ffn_gate_inp.weight        router {n_embd, n_expert}
//   experts.{e}.w1 / gate_proj             ffn_gate_exps.weight       stacked {n_embd, n_ff, n_expert}
//   experts.{e}.w3 / up_proj               ffn_up_exps.weight         stacked {n_embd, n_ff, n_expert}
//   experts.{e}.w2 / down_proj             ffn_down_exps.weight       stacked {n_ff, n_embd, n_expert}
//   model.norm.weight                      output_norm.weight
//   lm_head.weight                         output.weight              absent when tied
//
// gpt-oss (GptOssModel), where they differ:
//   self_attn.o_proj.bias                  attn_output.bias
//   self_attn.sinks                        attn_sinks.weight          [n_head]
//   post_attention_layernorm.weight        post_attention_norm.weight
//   mlp.router.{weight,bias}               ffn_gate_inp.{weight,bias}
//   mlp.experts.gate_up_proj [E, H, 2I]    ffn_{gate,up}_exps.weight  {H, I, E}: gate = even columns,
//                                                                     up = odd ones (interleaved)
//   mlp.experts.gate_up_proj_bias [E, 2I]  ffn_{gate,up}_exps.bias    {I, E}, the same split
//   mlp.experts.down_proj [E, I, H]        ffn_down_exps.weight       {I, H, E} (transposed: HF
//                                                                     keeps [in, out] per expert)
//   mlp.experts.down_proj_bias [E, H]      ffn_down_exps.bias         {H, E}
//
// deepseek2 (DeepseekV2Model), where they differ:
//   self_attn.q_a_proj / q_a_layernorm / q_b_proj  attn_q_a / attn_q_a_norm / attn_q_b (or q_proj: attn_q)
//   self_attn.kv_a_proj_with_mqa           attn_kv_a_mqa.weight
//   self_attn.kv_a_layernorm               attn_kv_a_norm.weight
//   self_attn.kv_b_proj [H*(nope+v), R]    attn_k_b.weight {nope, R, H} (each head's key rows
//                                          transposed) and attn_v_b.weight {R, v, H}
//   mlp.gate.weight / .e_score_correction_bias  ffn_gate_inp.weight / exp_probs_b.bias
//   mlp.shared_experts.{gate,up,down}_proj ffn_{gate,up,down}_shexp.weight
//   mlp.experts.gate_up_proj [E, 2F, D] / down_proj [E, D, F] (transformers 5's fused experts, when
//                                          a checkpoint has them): split / as they are
//   model.layers.N. with N >= num_hidden_layers (V3's MTP layer): dropped, as llama.cpp does
//
// Why the llama permutation: HF's Llama applies RoPE with rotate_half, pairing dimension i with
// i + head_dim/2; ggml's "normal" RoPE (llama) pairs 2i with 2i+1. LlamaModel.permute reorders the
// rows of each head's Q and K projections, (2, head_dim/2) -> (head_dim/2, 2), so that the
// adjacent-pair rotation computes the same thing. Qwen models use NEOX RoPE (rotate_half) in
// llama.cpp and are written unpermuted.
#include <fmt/format.h>

#include <cmath>
#include <numbers>
#include <string_view>
#include <tuple>

#include "core/error.h"
#include "tools/convert_arch.h"

namespace velocity::tools::convert {
namespace {

gguf::Value u32(int64_t v) {
  if (v < 0 || v > 0xffffffffll) fail("{} does not fit UINT32", v);
  return gguf::Value::scalar<uint32_t>(static_cast<uint32_t>(v));
}
gguf::Value f32(float v) { return gguf::Value::scalar<float>(v); }

std::vector<int64_t> reversed(std::vector<int64_t> shape) { return {shape.rbegin(), shape.rend()}; }

class Planner {
 public:
  Planner(const HfConfig& c, const std::function<bool(const std::string&)>& has) : c_(c), has_(has) {}

  // One HF tensor of PyTorch shape `hf_shape` -> one GGUF tensor of the reversed shape.
  void one(std::string gguf_name, std::string hf_name, std::vector<int64_t> hf_shape, int64_t permute_heads = 0) {
    PlannedTensor t;
    t.name = std::move(gguf_name);
    t.shape = reversed(hf_shape);
    t.sources.push_back({std::move(hf_name), std::move(hf_shape)});
    t.permute_heads = permute_heads;
    out_.push_back(std::move(t));
  }

  // Per-expert HF matrices {n_out, n_in} -> GGUF {n_in, n_out, n_expert}; `pattern` holds "{}"
  // for the expert index.
  void experts(std::string gguf_name, const std::string& pattern, int64_t n_out, int64_t n_in) {
    PlannedTensor t;
    t.name = std::move(gguf_name);
    t.shape = {n_in, n_out, c_.n_expert};
    for (int64_t e = 0; e < c_.n_expert; ++e)
      t.sources.push_back({fmt::format(fmt::runtime(pattern), e), {n_out, n_in}});
    out_.push_back(std::move(t));
  }

  // One HF tensor of `hf_shape` -> GGUF `shape`, its elements gathered with strides.
  void gathered(std::string gguf_name, std::vector<int64_t> shape, std::string hf_name, std::vector<int64_t> hf_shape,
                Gather gather) {
    PlannedTensor t;
    t.name = std::move(gguf_name);
    t.shape = std::move(shape);
    t.sources.push_back({std::move(hf_name), std::move(hf_shape)});
    t.gather = gather;
    out_.push_back(std::move(t));
  }

  void gptoss_block(int64_t il) {
    const std::string hf = fmt::format("model.layers.{}.", il);
    const std::string blk = fmt::format("blk.{}.", il);
    const int64_t d = c_.n_embd, n_q = c_.n_head * c_.head_dim, n_kv = c_.n_head_kv * c_.head_dim;
    const int64_t e = c_.n_expert, f = c_.n_ff_exp;
    one(blk + "attn_norm.weight", hf + "input_layernorm.weight", {d});
    for (auto [part, proj, n_out, n_in] : {std::tuple{"attn_q", "q_proj", n_q, d}, std::tuple{"attn_k", "k_proj", n_kv, d},
                                           std::tuple{"attn_v", "v_proj", n_kv, d},
                                           std::tuple{"attn_output", "o_proj", d, n_q}}) {
      one(blk + part + ".weight", hf + "self_attn." + proj + ".weight", {n_out, n_in});
      one(blk + part + ".bias", hf + "self_attn." + proj + ".bias", {n_out});
    }
    one(blk + "attn_sinks.weight", hf + "self_attn.sinks", {c_.n_head});
    one(blk + "post_attention_norm.weight", hf + "post_attention_layernorm.weight", {d});
    one(blk + "ffn_gate_inp.weight", hf + "mlp.router.weight", {e, d});
    one(blk + "ffn_gate_inp.bias", hf + "mlp.router.bias", {e});
    const std::string x = hf + "mlp.experts.";
    // Row (expert, r) of gate (up) is column 2r (2r + 1) of the expert's [H, 2I] slab.
    for (auto [part, parity] : {std::pair{"ffn_gate_exps", 0}, std::pair{"ffn_up_exps", 1}}) {
      gathered(blk + part + ".weight", {d, f, e}, x + "gate_up_proj", {e, d, 2 * f},
               {.rows_per_slab = f, .slab = d * 2 * f, .row_step = 2, .offset = parity, .stride = 2 * f});
      gathered(blk + part + ".bias", {f, e}, x + "gate_up_proj_bias", {e, 2 * f},
               {.rows_per_slab = 1, .slab = 2 * f, .row_step = 0, .offset = parity, .stride = 2});
    }
    // Row (expert, r) of down is column r of the expert's [I, H] slab.
    gathered(blk + "ffn_down_exps.weight", {f, d, e}, x + "down_proj", {e, f, d},
             {.rows_per_slab = d, .slab = f * d, .row_step = 1, .offset = 0, .stride = d});
    one(blk + "ffn_down_exps.bias", x + "down_proj_bias", {e, d});
  }

  void deepseek2_block(int64_t il) {
    const std::string hf = fmt::format("model.layers.{}.", il);
    const std::string blk = fmt::format("blk.{}.", il);
    const int64_t d = c_.n_embd, h = c_.n_head, r = c_.kv_lora_rank, nope = c_.qk_nope, v = c_.v_head_dim;
    const int64_t q_dim = h * (nope + c_.qk_rope), per_head = nope + v;
    const std::string a = hf + "self_attn.";
    one(blk + "attn_norm.weight", hf + "input_layernorm.weight", {d});
    if (c_.q_lora_rank > 0) {
      one(blk + "attn_q_a.weight", a + "q_a_proj.weight", {c_.q_lora_rank, d});
      one(blk + "attn_q_a_norm.weight", a + "q_a_layernorm.weight", {c_.q_lora_rank});
      one(blk + "attn_q_b.weight", a + "q_b_proj.weight", {q_dim, c_.q_lora_rank});
    } else {
      one(blk + "attn_q.weight", a + "q_proj.weight", {q_dim, d});
    }
    one(blk + "attn_kv_a_mqa.weight", a + "kv_a_proj_with_mqa.weight", {r + c_.qk_rope, d});
    one(blk + "attn_kv_a_norm.weight", a + "kv_a_layernorm.weight", {r});
    // k_b row (h, j) is column j of head h's key rows: element i = kv_b[h * per_head + i, j].
    gathered(blk + "attn_k_b.weight", {nope, r, h}, a + "kv_b_proj.weight", {h * per_head, r},
             {.rows_per_slab = r, .slab = per_head * r, .row_step = 1, .offset = 0, .stride = r});
    // v_b row (h, j) is row h * per_head + nope + j of kv_b.
    gathered(blk + "attn_v_b.weight", {r, v, h}, a + "kv_b_proj.weight", {h * per_head, r},
             {.rows_per_slab = v, .slab = per_head * r, .row_step = r, .offset = nope * r, .stride = 1});
    one(blk + "attn_output.weight", a + "o_proj.weight", {d, h * v});
    one(blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight", {d});
    const std::string m = hf + "mlp.";
    if (il < c_.n_dense_lead) {
      one(blk + "ffn_gate.weight", m + "gate_proj.weight", {c_.n_ff, d});
      one(blk + "ffn_up.weight", m + "up_proj.weight", {c_.n_ff, d});
      one(blk + "ffn_down.weight", m + "down_proj.weight", {d, c_.n_ff});
      return;
    }
    one(blk + "ffn_gate_inp.weight", m + "gate.weight", {c_.n_expert, d});
    if (has_(m + "gate.e_score_correction_bias"))
      one(blk + "exp_probs_b.bias", m + "gate.e_score_correction_bias", {c_.n_expert});
    if (has_(m + "experts.gate_up_proj")) {
      // transformers 5's fused layout (its in-memory one; save_pretrained normally writes the hub's
      // per-expert tensors): gate_up_proj [E, 2F, D] with the gate rows first, down_proj [E, D, F].
      const int64_t e = c_.n_expert, f = c_.n_ff_exp;
      for (auto [part, offset] : {std::pair{"ffn_gate_exps", int64_t{0}}, std::pair{"ffn_up_exps", f * d}})
        gathered(blk + part + ".weight", {d, f, e}, m + "experts.gate_up_proj", {e, 2 * f, d},
                 {.rows_per_slab = f, .slab = 2 * f * d, .row_step = d, .offset = offset, .stride = 1});
      one(blk + "ffn_down_exps.weight", m + "experts.down_proj", {e, d, f});
    } else {
      experts(blk + "ffn_gate_exps.weight", m + "experts.{}.gate_proj.weight", c_.n_ff_exp, d);
      experts(blk + "ffn_up_exps.weight", m + "experts.{}.up_proj.weight", c_.n_ff_exp, d);
      experts(blk + "ffn_down_exps.weight", m + "experts.{}.down_proj.weight", d, c_.n_ff_exp);
    }
    if (c_.n_expert_shared > 0) {
      const int64_t fs = c_.n_ff_exp * c_.n_expert_shared;
      one(blk + "ffn_gate_shexp.weight", m + "shared_experts.gate_proj.weight", {fs, d});
      one(blk + "ffn_up_shexp.weight", m + "shared_experts.up_proj.weight", {fs, d});
      one(blk + "ffn_down_shexp.weight", m + "shared_experts.down_proj.weight", {d, fs});
    }
  }

  void block(int64_t il) {
    if (c_.arch == "gpt-oss") return gptoss_block(il);
    if (c_.arch == "deepseek2") return deepseek2_block(il);
    const std::string hf = fmt::format("model.layers.{}.", il);
    const std::string blk = fmt::format("blk.{}.", il);
    const int64_t n_q = c_.n_head * c_.head_dim;
    const int64_t n_kv = c_.n_head_kv * c_.head_dim;
    const bool llama = c_.arch == "llama";
    const bool qwen2 = c_.arch == "qwen2";
    // Llama's rows are permuted per head: q over n_head heads, k over n_head_kv.
    const int64_t q_heads = llama ? c_.n_head : 0;
    const int64_t k_heads = llama ? c_.n_head_kv : 0;

    one(blk + "attn_norm.weight", hf + "input_layernorm.weight", {c_.n_embd});
    // Biases: Qwen2 always has q/k/v biases; Llama-family checkpoints may (attention_bias).
    auto bias = [&](const char* gguf_part, const char* hf_part, int64_t n, int64_t heads) {
      const std::string name = hf + "self_attn." + hf_part + ".bias";
      const bool wanted = qwen2 ? std::string_view(hf_part) != "o_proj"  // Qwen2: q, k, v always
                                : llama && has_(name);                   // Llama family: when present
      if (wanted) one(blk + gguf_part + ".bias", name, {n}, heads);
    };
    one(blk + "attn_q.weight", hf + "self_attn.q_proj.weight", {n_q, c_.n_embd}, q_heads);
    bias("attn_q", "q_proj", n_q, q_heads);
    one(blk + "attn_k.weight", hf + "self_attn.k_proj.weight", {n_kv, c_.n_embd}, k_heads);
    bias("attn_k", "k_proj", n_kv, k_heads);
    one(blk + "attn_v.weight", hf + "self_attn.v_proj.weight", {n_kv, c_.n_embd});
    bias("attn_v", "v_proj", n_kv, 0);
    one(blk + "attn_output.weight", hf + "self_attn.o_proj.weight", {c_.n_embd, n_q});
    bias("attn_output", "o_proj", c_.n_embd, 0);
    if (c_.arch == "qwen3" || c_.arch == "qwen3moe") {
      one(blk + "attn_q_norm.weight", hf + "self_attn.q_norm.weight", {c_.head_dim});
      one(blk + "attn_k_norm.weight", hf + "self_attn.k_norm.weight", {c_.head_dim});
    }
    one(blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight", {c_.n_embd});

    if (c_.hf_arch == "MixtralForCausalLM") {
      const std::string e = hf + "block_sparse_moe.";
      one(blk + "ffn_gate_inp.weight", e + "gate.weight", {c_.n_expert, c_.n_embd});
      experts(blk + "ffn_gate_exps.weight", e + "experts.{}.w1.weight", c_.n_ff, c_.n_embd);
      experts(blk + "ffn_up_exps.weight", e + "experts.{}.w3.weight", c_.n_ff, c_.n_embd);
      experts(blk + "ffn_down_exps.weight", e + "experts.{}.w2.weight", c_.n_embd, c_.n_ff);
    } else if (c_.arch == "qwen3moe") {
      const std::string e = hf + "mlp.";
      one(blk + "ffn_gate_inp.weight", e + "gate.weight", {c_.n_expert, c_.n_embd});
      experts(blk + "ffn_gate_exps.weight", e + "experts.{}.gate_proj.weight", c_.n_ff_exp, c_.n_embd);
      experts(blk + "ffn_up_exps.weight", e + "experts.{}.up_proj.weight", c_.n_ff_exp, c_.n_embd);
      experts(blk + "ffn_down_exps.weight", e + "experts.{}.down_proj.weight", c_.n_embd, c_.n_ff_exp);
    } else {
      one(blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight", {c_.n_ff, c_.n_embd});
      one(blk + "ffn_up.weight", hf + "mlp.up_proj.weight", {c_.n_ff, c_.n_embd});
      one(blk + "ffn_down.weight", hf + "mlp.down_proj.weight", {c_.n_embd, c_.n_ff});
    }
  }

  std::vector<PlannedTensor> plan() {
    if (c_.rope_scaling == RopeScaling::Llama3) {
      PlannedTensor t;
      t.name = "rope_freqs.weight";
      t.values = llama3_rope_factors(c_);
      t.shape = {static_cast<int64_t>(t.values.size())};
      out_.push_back(std::move(t));
    }
    one("token_embd.weight", "model.embed_tokens.weight", {c_.n_vocab, c_.n_embd});
    for (int64_t il = 0; il < c_.n_layer; ++il) block(il);
    one("output_norm.weight", "model.norm.weight", {c_.n_embd});
    // The converter writes output.weight whenever the checkpoint has lm_head.weight; tied models
    // usually have none and the loader reuses token_embd.
    if (has_("lm_head.weight") || !c_.tie_word_embeddings)
      one("output.weight", "lm_head.weight", {c_.n_vocab, c_.n_embd});
    return std::move(out_);
  }

 private:
  const HfConfig& c_;
  const std::function<bool(const std::string&)>& has_;
  std::vector<PlannedTensor> out_;
};

}  // namespace

std::vector<PlannedTensor> plan_tensors(const HfConfig& config, const std::function<bool(const std::string&)>& has) {
  return Planner(config, has).plan();
}

bool is_ignored_source(const std::string& name) {
  // ModelBase.prepare_tensors: "we don't need these".
  for (const char* suffix : {".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq"})
    if (name.ends_with(suffix)) return true;
  return false;
}

bool is_ignored_source(const HfConfig& c, const std::string& name) {
  if (is_ignored_source(name)) return true;
  if (c.arch != "deepseek2" || !name.starts_with("model.layers.")) return false;
  int64_t il = 0;
  const char* p = name.c_str() + std::string_view("model.layers.").size();
  if (*p < '0' || *p > '9') return false;
  for (; *p >= '0' && *p <= '9'; ++p) il = il * 10 + (*p - '0');
  return *p == '.' && il >= c.n_layer;
}

std::vector<std::pair<std::string, gguf::Value>> arch_metadata(const HfConfig& c) {
  std::vector<std::pair<std::string, gguf::Value>> m;
  auto add = [&](const std::string& key, gguf::Value v) { m.emplace_back(c.arch + "." + key, std::move(v)); };

  // TextModel.set_gguf_parameters (types as gguf-py's GGUFWriter writes them).
  add("block_count", u32(c.n_layer));
  add("context_length", u32(c.n_ctx_train));
  add("embedding_length", u32(c.n_embd));
  add("feed_forward_length", u32(c.n_ff));
  add("attention.head_count", u32(c.n_head));
  // deepseek2's MLA is written as one shared KV head (DeepseekV2Model sets num_key_value_heads 1).
  add("attention.head_count_kv", u32(c.arch == "deepseek2" ? 1 : c.n_head_kv));
  if (c.rope_scaling == RopeScaling::Linear) {
    add("rope.scaling.type", gguf::Value::string("linear"));
    add("rope.scaling.factor", f32(c.rope_factor));
  } else if (c.rope_scaling == RopeScaling::Yarn) {
    add("rope.scaling.type", gguf::Value::string("yarn"));
    add("rope.scaling.factor", f32(c.rope_factor));
    add("rope.scaling.original_context_length", u32(c.rope_orig_ctx));
    if (c.yarn_ext_factor) add("rope.scaling.yarn_ext_factor", f32(*c.yarn_ext_factor));
    if (c.yarn_attn_factor) add("rope.scaling.yarn_attn_factor", f32(*c.yarn_attn_factor));
    if (c.yarn_beta_fast) add("rope.scaling.yarn_beta_fast", f32(*c.yarn_beta_fast));
    if (c.yarn_beta_slow) add("rope.scaling.yarn_beta_slow", f32(*c.yarn_beta_slow));
  }
  add("rope.freq_base", f32(c.rope_theta));
  add("attention.layer_norm_rms_epsilon", f32(c.rms_eps));
  if (c.n_expert > 0) {
    add("expert_count", u32(c.n_expert));
    add("expert_used_count", u32(c.n_expert_used));
  }
  if (c.write_head_dim) {
    add("attention.key_length", u32(c.head_dim));
    add("attention.value_length", u32(c.head_dim));
  }

  // Model-class keys.
  if (c.arch == "llama") {
    add("vocab_size", u32(c.n_vocab));
    add("rope.dimension_count", u32(c.head_dim));
  } else if (c.arch == "qwen3moe") {
    add("expert_feed_forward_length", u32(c.n_ff_exp));
  } else if (c.arch == "gpt-oss") {
    add("attention.sliding_window", u32(c.sliding_window));
    add("expert_feed_forward_length", u32(c.n_ff_exp));
  } else if (c.arch == "deepseek2") {
    add("leading_dense_block_count", u32(c.n_dense_lead));
    add("vocab_size", u32(c.n_vocab));
    if (c.q_lora_rank > 0) add("attention.q_lora_rank", u32(c.q_lora_rank));
    add("attention.kv_lora_rank", u32(c.kv_lora_rank));
    add("attention.key_length", u32(c.kv_lora_rank + c.qk_rope));
    add("attention.value_length", u32(c.kv_lora_rank));
    add("attention.key_length_mla", u32(c.qk_nope + c.qk_rope));
    add("attention.value_length_mla", u32(c.v_head_dim));
    add("expert_feed_forward_length", u32(c.n_ff_exp));
    add("expert_shared_count", u32(c.n_expert_shared));
    add("expert_weights_scale", f32(c.expert_weights_scale));
    add("expert_weights_norm", gguf::Value::scalar<bool>(c.expert_weights_norm));
    add("expert_gating_func", u32(c.sigmoid_gating ? 2 : 1));  // LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID / _SOFTMAX
    add("expert_group_count", u32(c.n_group));
    add("expert_group_used_count", u32(c.n_group_used));
    add("rope.dimension_count", u32(c.qk_rope));
    if (c.yarn_log_mul) add("rope.scaling.yarn_log_multiplier", f32(*c.yarn_log_mul));
  }
  return m;
}

std::vector<float> llama3_rope_factors(const HfConfig& c) {
  // float32 throughout, as torch computes freqs (a float32 tensor) and every expression with it.
  const int64_t dim = c.head_dim;
  const float low_freq_wavelen = static_cast<float>(static_cast<double>(c.rope_orig_ctx) / c.llama3_low_freq_factor);
  const float high_freq_wavelen = static_cast<float>(static_cast<double>(c.rope_orig_ctx) / c.llama3_high_freq_factor);
  const float two_pi = static_cast<float>(2 * std::numbers::pi);
  const float freq_span = static_cast<float>(static_cast<double>(c.llama3_high_freq_factor) - c.llama3_low_freq_factor);
  std::vector<float> factors;
  for (int64_t i = 0; i < dim; i += 2) {
    const float freq = 1.0f / std::pow(c.rope_theta, static_cast<float>(i) / static_cast<float>(dim));
    const float wavelen = two_pi / freq;
    if (wavelen < high_freq_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_freq_wavelen) {
      factors.push_back(c.rope_factor);
    } else {
      const float smooth = (static_cast<float>(c.rope_orig_ctx) / wavelen - c.llama3_low_freq_factor) / freq_span;
      factors.push_back(1.0f / ((1.0f - smooth) / c.rope_factor + smooth));
    }
  }
  return factors;
}

}  // namespace velocity::tools::convert
