// Internal to `velocity convert`: a Hugging Face config.json read into one plain struct, and the
// plan of GGUF tensors (names, shapes, HF sources, Q/K permutation) and `<arch>.*` keys built
// from it, following llama.cpp's convert_hf_to_gguf.py (LlamaModel, Qwen2Model, Qwen3Model,
// Qwen2MoeModel / Qwen3MoeModel, TextModel.set_gguf_parameters).
//
// Shapes: HF (PyTorch) shapes are row-major with the contiguous dimension last, [n_out, n_in];
// GGUF shapes list the contiguous dimension first, {n_in, n_out}. Stacked experts become
// {n_in, n_out, n_expert}, expert e being the e-th slab.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gguf/value.h"

namespace velocity::tools::convert {

enum class RopeScaling { None, Linear, Yarn, Llama3 };

struct HfConfig {
  std::string path;               // config.json, for messages
  std::string hf_arch;            // architectures[0], e.g. "LlamaForCausalLM"
  std::string arch;               // GGUF general.architecture: llama, qwen2, qwen3, qwen3moe
  int64_t n_vocab = 0;            // vocab_size: rows of embed_tokens and lm_head
  int64_t n_embd = 0;             // hidden_size
  int64_t n_layer = 0;            // num_hidden_layers
  int64_t n_ff = 0;               // intermediate_size (Mixtral: the width of one expert)
  int64_t n_head = 0;             // num_attention_heads
  int64_t n_head_kv = 0;          // num_key_value_heads
  int64_t head_dim = 0;           // width of one q/k/v head (head_dim, else hidden_size / heads)
  bool write_head_dim = false;    // <arch>.attention.key_length / value_length are written
  int64_t n_ctx_train = 0;        // max_position_embeddings
  float rms_eps = 0;              // rms_norm_eps
  float rope_theta = 0;           // rope_theta (RoPE base frequency)
  bool tie_word_embeddings = false;

  // rope_scaling (or transformers 5's rope_parameters).
  RopeScaling rope_scaling = RopeScaling::None;
  float rope_factor = 0;                       // linear, yarn, llama3: the context scale factor
  int64_t rope_orig_ctx = 0;                   // yarn, llama3: original_max_position_embeddings
  float llama3_low_freq_factor = 1.0f;         // llama3 only
  float llama3_high_freq_factor = 4.0f;        // llama3 only
  std::optional<float> yarn_ext_factor;        // yarn extrapolation_factor, when given
  std::optional<float> yarn_attn_factor;       // yarn attention_factor / attn_factor, when given
  std::optional<float> yarn_beta_fast;         // yarn beta_fast, when given
  std::optional<float> yarn_beta_slow;         // yarn beta_slow, when given

  // Mixture of experts (n_expert 0: dense).
  int64_t n_expert = 0;           // num_local_experts (Mixtral) / num_experts (Qwen3-MoE)
  int64_t n_expert_used = 0;      // num_experts_per_tok
  int64_t n_ff_exp = 0;           // moe_intermediate_size (Qwen3-MoE), intermediate_size (gpt-oss)

  int64_t sliding_window = 0;     // gpt-oss sliding_window

  // deepseek2 (DeepseekV2ForCausalLM, DeepseekV3ForCausalLM): multi-head latent attention
  int64_t q_lora_rank = 0;        // q_lora_rank (null: attn_q, no q LoRA)
  int64_t kv_lora_rank = 0;       // kv_lora_rank
  int64_t qk_nope = 0, qk_rope = 0, v_head_dim = 0;  // qk_nope_head_dim, qk_rope_head_dim, v_head_dim
  int64_t n_dense_lead = 0;       // first_k_dense_replace
  int64_t n_expert_shared = 0;    // n_shared_experts
  float expert_weights_scale = 1.0f;  // routed_scaling_factor
  bool expert_weights_norm = false;   // norm_topk_prob
  bool sigmoid_gating = false;    // scoring_func "sigmoid" (else softmax)
  int64_t n_group = 1, n_group_used = 1;  // n_group, topk_group
  std::optional<float> yarn_log_mul;  // 0.1 * rope_scaling.mscale_all_dim
};

// Reads and checks config.json. Throws velocity::Error naming the file and the field.
HfConfig read_hf_config(const std::string& config_path);

// Architectures accepted, by their config.json "architectures" names.
std::vector<std::string> supported_hf_archs();

// One HF tensor feeding a GGUF tensor.
struct Source {
  std::string name;               // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;     // expected PyTorch shape
};

// Output rows gathered from a source with strides instead of read in order (gpt-oss's fused
// experts): element k of output row o is source element
//   (o / rows_per_slab) * slab + (o % rows_per_slab) * row_step + offset + k * stride.
struct Gather {
  int64_t rows_per_slab = 0;      // 0: no gather (rows in order)
  int64_t slab = 0, row_step = 0, offset = 0, stride = 1;
};

struct PlannedTensor {
  std::string name;               // GGUF name, e.g. "blk.0.attn_q.weight"
  std::vector<int64_t> shape;     // GGUF order
  std::vector<Source> sources;    // one, or one per expert (stacked along the last GGUF dim)
  int64_t permute_heads = 0;      // > 0: llama Q/K row permutation over this many heads
  std::vector<float> values;      // generated F32 contents (rope_freqs) instead of sources
  Gather gather;                  // one source read with strides (gpt-oss experts)
};

// The GGUF tensors of the model in writing order: rope_freqs (when generated), token_embd, each
// block, output_norm, output. `has` says whether the checkpoint holds an (optional) HF tensor:
// lm_head.weight (absent with tied embeddings) and llama's attention biases.
std::vector<PlannedTensor> plan_tensors(const HfConfig& config, const std::function<bool(const std::string&)>& has);

// HF tensors that convert_hf_to_gguf.py drops without mapping them (with the config: also
// DeepSeek-V3's multi-token-prediction layers, model.layers.N. for N >= num_hidden_layers).
bool is_ignored_source(const std::string& name);
bool is_ignored_source(const HfConfig& config, const std::string& name);

// The `<arch>.*` hyperparameter keys, in the converter's order (general.* and tokenizer.* apart).
std::vector<std::pair<std::string, gguf::Value>> arch_metadata(const HfConfig& config);

// Llama 3.1 RoPE frequency factors {head_dim / 2}, as LlamaModel.generate_extra_tensors computes
// them (in float32, as torch does).
std::vector<float> llama3_rope_factors(const HfConfig& config);

}  // namespace velocity::tools::convert
