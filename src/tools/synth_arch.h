// Architectures for `velocity synth`: a model's hyperparameters (one plain struct, filled by a
// preset), its tensor list and its `<arch>.*` metadata, exactly as llama.cpp's converter
// (convert_hf_to_gguf.py + gguf-py) names and shapes them and llama.cpp's loader
// (load_tensors / load_arch_tensors) expects them.
//
// Shapes are in GGUF order: shape[0] is the contiguous (input) dimension, e.g. attn_q.weight is
// {n_embd, n_head * head_dim}, token_embd.weight {n_embd, n_vocab}, ffn_gate_exps.weight
// {n_embd, n_ff_exp, n_expert}.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gguf/value.h"
#include "tools/synth_random.h"
#include "tools/synth_vocab.h"

namespace velocity::tools::synthetic {

struct ModelConfig {
  std::string arch;              // general.architecture: llama, qwen2, qwen3, qwen3moe, deepseek2, gpt-oss
  std::string name;              // general.name
  int64_t n_ctx_train = 0;       // <arch>.context_length (config max_position_embeddings)
  int64_t n_embd = 0;            // hidden size
  int64_t n_layer = 0;           // transformer blocks
  int64_t n_ff = 0;              // dense FFN width (<arch>.feed_forward_length)
  int64_t n_head = 0;            // query heads
  int64_t n_head_kv = 0;         // key/value heads (deepseek2 writes 1: MLA runs as MQA)
  int64_t head_dim = 0;          // width of one q/k/v head (0: n_embd / n_head)
  bool write_head_dim = false;   // config.json has head_dim: key_length/value_length are written
  float rms_eps = 1e-6f;         // <arch>.attention.layer_norm_rms_epsilon
  float rope_theta = 10000.0f;   // <arch>.rope.freq_base

  // Llama 3.1 RoPE scaling: written as the rope_freqs.weight tensor {head_dim/2} (converter's
  // generate_extra_tensors), not as keys.
  bool llama3_rope = false;
  bool tie_embeddings = false;  // no output.weight: the head is token_embd (tie_word_embeddings)
  float llama3_factor = 8.0f, llama3_low_freq_factor = 1.0f, llama3_high_freq_factor = 4.0f;
  int64_t llama3_orig_ctx = 8192;

  // YaRN RoPE scaling keys (rope.scaling.*); yarn_log_mul 0: not written.
  bool yarn = false;
  float yarn_factor = 0, yarn_beta_fast = 0, yarn_beta_slow = 0, yarn_log_mul = 0;
  int64_t yarn_orig_ctx = 0;

  // Mixture of experts (n_expert 0: dense).
  int64_t n_expert = 0;          // routed experts per MoE layer
  int64_t n_expert_used = 0;     // experts per token
  int64_t n_ff_exp = 0;          // width of one routed expert
  int64_t n_ff_shexp = 0;        // qwen-style shared expert width (0: none written)
  int64_t n_expert_shared = 0;   // deepseek2 shared experts (each n_ff_exp wide)
  int64_t n_layer_dense_lead = 0;   // deepseek2: leading blocks with a dense FFN
  int64_t n_expert_groups = 0;      // deepseek2 n_group (0: not written)
  int64_t n_expert_groups_used = 0; // deepseek2 topk_group
  float expert_weights_scale = 0;   // routed_scaling_factor (0: not written)
  bool expert_weights_norm = false; // norm_topk_prob (written only when true, as the converter)
  uint32_t expert_gating_func = 0;  // 1 softmax, 2 sigmoid (0: not written)
  bool exp_probs_b = false;         // deepseek-v3 e_score_correction_bias: blk.N.exp_probs_b.bias

  // Multi-head latent attention (deepseek2).
  int64_t q_lora_rank = 0;       // 0: plain attn_q (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;  // rope.dimension_count
  int64_t v_head_dim = 0;

  int64_t sliding_window = 0;    // gpt-oss attention.sliding_window

  VocabSpec vocab;

  int64_t n_vocab() const { return vocab.n_vocab; }
  int64_t head_width() const { return head_dim ? head_dim : n_embd / n_head; }
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;    // GGUF order
  ValueKind kind = ValueKind::Weight;
  std::vector<float> values;     // fixed F32 contents instead of random ones (rope_freqs)
};

using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

// Tensors of the model, ordered as llama.cpp's loader iterates them (weight_name_comparer:
// non-block tensors first, then by block index, then by name) — the order llama-quantize writes
// and counts in.
std::vector<TensorSpec> model_tensors(const ModelConfig& config);

// The `<arch>.*` hyperparameter keys (no general.*, no tokenizer.*).
Metadata arch_metadata(const ModelConfig& config);

// Per-family tensor lists (unordered), used by model_tensors.
void dense_tensors(const ModelConfig& config, std::vector<TensorSpec>& out);      // llama, qwen2, qwen3
void moe_tensors(const ModelConfig& config, std::vector<TensorSpec>& out);        // qwen3moe, gpt-oss
void deepseek2_tensors(const ModelConfig& config, std::vector<TensorSpec>& out);  // deepseek2

// Llama 3.1 RoPE frequency factors (rope_freqs.weight), as the converter computes them.
std::vector<float> llama3_rope_factors(const ModelConfig& config);

// Presets: the real hyperparameters of the named models.
std::vector<std::string> preset_names(const std::string& arch);
ModelConfig preset_config(const std::string& arch, const std::string& preset);  // throws Error
std::vector<std::string> arch_names();

}  // namespace velocity::tools::synthetic
