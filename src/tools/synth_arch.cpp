// Tensor ordering, metadata keys and the Llama 3 RoPE factors shared by all synth architectures.
//
// Metadata follows convert_hf_to_gguf.py: TextModel.set_gguf_parameters writes the common keys
// (block_count, context_length, embedding_length, feed_forward_length, head_count,
// head_count_kv, rope scaling, rope.freq_base, layer_norm_rms_epsilon, expert_count,
// expert_used_count, expert_group_count, expert_group_used_count, expert_gating_func,
// key_length/value_length when config.json has head_dim); each model class adds its own:
//   LlamaModel: vocab_size, rope.dimension_count;
//   Qwen2Model / Qwen3Model: nothing more; Qwen2MoeModel (Qwen3Moe): expert_feed_forward_length
//   (and expert_shared_feed_forward_length when present);
//   GptOssModel: attention.sliding_window, expert_feed_forward_length;
//   DeepseekV2Model: head_count_kv = 1, leading_dense_block_count, vocab_size, q_lora_rank,
//   kv_lora_rank, key_length/value_length (the compressed MQA widths) and their _mla variants
//   (the per-head widths), expert_feed_forward_length, expert_count, expert_shared_count,
//   expert_weights_scale, expert_weights_norm (only when true), rope.dimension_count,
//   rope.scaling.yarn_log_multiplier (0.1 * mscale_all_dim).
// Types are gguf-py's GGUFWriter ones: counts UINT32, eps/freq/factors FLOAT32, norm BOOL,
// rope.scaling.type STRING.
#include "tools/synth_arch.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>

#include "core/error.h"

namespace velocity::tools::synthetic {
namespace {

gguf::Value u32(int64_t v) {
  if (v < 0 || v > 0xffffffffll) fail("{} does not fit UINT32", v);
  return gguf::Value::scalar<uint32_t>(static_cast<uint32_t>(v));
}
gguf::Value f32(float v) { return gguf::Value::scalar<float>(v); }

int block_index(const std::string& name) {
  int il = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &il) != 1) return -1;
  return il;
}

}  // namespace

std::vector<TensorSpec> model_tensors(const ModelConfig& config) {
  std::vector<TensorSpec> out;
  if (config.arch == "llama" || config.arch == "qwen2" || config.arch == "qwen3") {
    dense_tensors(config, out);
  } else if (config.arch == "qwen3moe" || config.arch == "gpt-oss") {
    moe_tensors(config, out);
  } else if (config.arch == "deepseek2") {
    deepseek2_tensors(config, out);
  } else {
    fail("synth: unknown architecture '{}'", config.arch);
  }
  // llama_model_loader::weight_name_comparer.
  std::stable_sort(out.begin(), out.end(), [](const TensorSpec& a, const TensorSpec& b) {
    const int la = block_index(a.name), lb = block_index(b.name);
    if (la != lb) return la < lb;
    return a.name < b.name;
  });
  return out;
}

Metadata arch_metadata(const ModelConfig& c) {
  const std::string a = c.arch + ".";
  const bool is_deepseek2 = c.arch == "deepseek2";
  Metadata m;
  auto add = [&](const std::string& key, gguf::Value v) { m.emplace_back(a + key, std::move(v)); };

  // TextModel.set_gguf_parameters.
  add("block_count", u32(c.n_layer));
  add("context_length", u32(c.n_ctx_train));
  add("embedding_length", u32(c.n_embd));
  add("feed_forward_length", u32(c.n_ff));
  add("attention.head_count", u32(c.n_head));
  add("attention.head_count_kv", u32(is_deepseek2 ? 1 : c.n_head_kv));
  if (c.yarn) {
    add("rope.scaling.type", gguf::Value::string("yarn"));
    add("rope.scaling.factor", f32(c.yarn_factor));
    add("rope.scaling.original_context_length", u32(c.yarn_orig_ctx));
    add("rope.scaling.yarn_beta_fast", f32(c.yarn_beta_fast));
    add("rope.scaling.yarn_beta_slow", f32(c.yarn_beta_slow));
  }
  add("rope.freq_base", f32(c.rope_theta));
  add("attention.layer_norm_rms_epsilon", f32(c.rms_eps));
  if (c.n_expert > 0) {
    add("expert_count", u32(c.n_expert));
    add("expert_used_count", u32(c.n_expert_used));
  }
  if (c.n_expert_groups > 0) {
    add("expert_group_count", u32(c.n_expert_groups));
    add("expert_group_used_count", u32(c.n_expert_groups_used));
  }
  if (c.expert_gating_func != 0) add("expert_gating_func", u32(c.expert_gating_func));
  if (c.write_head_dim) {
    add("attention.key_length", u32(c.head_width()));
    add("attention.value_length", u32(c.head_width()));
  }

  // Model-class keys.
  if (c.arch == "llama") {
    add("vocab_size", u32(c.n_vocab()));
    add("rope.dimension_count", u32(c.head_width()));
  } else if (c.arch == "qwen3moe") {
    add("expert_feed_forward_length", u32(c.n_ff_exp));
    if (c.n_ff_shexp > 0) add("expert_shared_feed_forward_length", u32(c.n_ff_shexp));
  } else if (c.arch == "gpt-oss") {
    add("attention.sliding_window", u32(c.sliding_window));
    add("expert_feed_forward_length", u32(c.n_ff_exp));
  } else if (is_deepseek2) {
    add("leading_dense_block_count", u32(c.n_layer_dense_lead));
    add("vocab_size", u32(c.n_vocab()));
    if (c.q_lora_rank > 0) add("attention.q_lora_rank", u32(c.q_lora_rank));
    add("attention.kv_lora_rank", u32(c.kv_lora_rank));
    add("attention.key_length", u32(c.kv_lora_rank + c.qk_rope_head_dim));
    add("attention.value_length", u32(c.kv_lora_rank));
    add("attention.key_length_mla", u32(c.qk_nope_head_dim + c.qk_rope_head_dim));
    add("attention.value_length_mla", u32(c.v_head_dim));
    add("expert_feed_forward_length", u32(c.n_ff_exp));
    add("expert_shared_count", u32(c.n_expert_shared));
    if (c.expert_weights_scale != 0) add("expert_weights_scale", f32(c.expert_weights_scale));
    if (c.expert_weights_norm) add("expert_weights_norm", gguf::Value::scalar<bool>(true));
    add("rope.dimension_count", u32(c.qk_rope_head_dim));
    if (c.yarn_log_mul != 0) add("rope.scaling.yarn_log_multiplier", f32(c.yarn_log_mul));
  }
  return m;
}

// LlamaModel.generate_extra_tensors: per frequency of the rotary half, 1 for short wavelengths,
// `factor` for long ones, and a smooth blend in between.
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  const int64_t dim = c.head_width();
  std::vector<float> factors;
  const double low_freq_wavelen = static_cast<double>(c.llama3_orig_ctx) / c.llama3_low_freq_factor;
  const double high_freq_wavelen = static_cast<double>(c.llama3_orig_ctx) / c.llama3_high_freq_factor;
  for (int64_t i = 0; i < dim; i += 2) {
    const float freq = 1.0f / std::pow(c.rope_theta, static_cast<float>(i) / static_cast<float>(dim));
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_freq_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_freq_wavelen) {
      factors.push_back(c.llama3_factor);
    } else {
      const double smooth = (static_cast<double>(c.llama3_orig_ctx) / wavelen - c.llama3_low_freq_factor) /
                            (c.llama3_high_freq_factor - c.llama3_low_freq_factor);
      factors.push_back(static_cast<float>(1.0 / ((1 - smooth) / c.llama3_factor + smooth)));
    }
  }
  return factors;
}

}  // namespace velocity::tools::synthetic
