// A model's hyperparameters, read once from GGUF metadata (`<arch>.*` keys, as llama.cpp's
// converters write them). Every field is set for every architecture; unused ones stay 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "gguf/file.h"

namespace velocity::model {

struct Config {
  std::string arch;            // general.architecture: llama, qwen2, qwen3, qwen3moe, gpt-oss
  std::string name;            // general.name (may be empty)
  int64_t n_vocab = 0;         // rows of token_embd
  int64_t n_ctx_train = 0;     // <arch>.context_length
  int64_t n_embd = 0;          // D, <arch>.embedding_length
  int64_t n_layer = 0;         // <arch>.block_count
  int64_t n_head = 0;          // H, <arch>.attention.head_count
  int64_t n_head_kv = 0;       // Hkv, <arch>.attention.head_count_kv (default H)
  int64_t head_dim_k = 0;      // <arch>.attention.key_length (default D / H)
  int64_t head_dim_v = 0;      // <arch>.attention.value_length (default D / H)
  int64_t n_ff = 0;            // <arch>.feed_forward_length (dense FFN width)
  float rms_eps = 1e-5f;       // <arch>.attention.layer_norm_rms_epsilon
  // RoPE
  engine::RopeType rope_type = engine::RopeType::Normal;
  int64_t n_rot = 0;           // <arch>.rope.dimension_count (default head_dim_k)
  float rope_freq_base = 10000.0f;   // <arch>.rope.freq_base
  float rope_freq_scale = 1.0f;      // 1 / <arch>.rope.scaling.factor for scaling.type linear
  bool has_rope_freqs = false;       // rope_freqs.weight present (llama 3 frequency factors)
  // YaRN (<arch>.rope.scaling.type yarn; gpt-oss): engine::RopeParams' yarn_* and attn_factor
  float rope_yarn_factor = 0;        // rope.scaling.factor; 0: no YaRN
  int64_t rope_yarn_orig_ctx = 0;    // rope.scaling.original_context_length
  float rope_yarn_beta_fast = 32.0f; // rope.scaling.yarn_beta_fast
  float rope_yarn_beta_slow = 1.0f;  // rope.scaling.yarn_beta_slow
  bool rope_yarn_truncate = true;    // correction dims floored/ceiled (gpt-oss: no, as HF's config says)
  float rope_attn_factor = 1.0f;     // cos/sin magnitude: rope.scaling.attn_factor * (0.1 ln factor + 1)
  // Options of the attention block
  bool qkv_bias = false;       // qwen2
  bool qk_norm = false;        // qwen3, qwen3moe
  // MoE (0 experts: dense)
  int64_t n_expert = 0;        // <arch>.expert_count
  int64_t n_expert_used = 0;   // <arch>.expert_used_count
  int64_t n_ff_expert = 0;     // <arch>.expert_feed_forward_length (or n_ff for Mixtral)
  bool moe_norm_weights = true;  // renormalise the top-k weights (Mixtral, Qwen3-MoE: yes)
  bool tied_output = false;    // no output.weight: the head is token_embd
  // deepseek2 (multi-head latent attention; engine::MlaLayer). Its KV cache is one shared row of
  // kv_lora_rank + qk_rope per token and layer: n_head_kv 1, head_dim_k kv_lora_rank + qk_rope,
  // head_dim_v kv_lora_rank, kv_latent (StepShape::kv_shared_v).
  bool kv_latent = false;
  int64_t q_lora_rank = 0;     // attention.q_lora_rank (0: attn_q, no q LoRA)
  int64_t kv_lora_rank = 0;    // attention.kv_lora_rank
  int64_t qk_nope = 0, qk_rope = 0;  // per-head query/key widths without and with RoPE
  int64_t v_head_dim = 0;      // per-head value width
  int64_t n_ff_shared = 0;     // shared experts' FFN width (expert_feed_forward_length * expert_shared_count)
  // gpt-oss
  int64_t sliding_window = 0;  // <arch>.attention.sliding_window: the window of the sliding layers
  // What the architecture needs of a backend beyond the llama family's ops (engine::Feature);
  // Model::load checks every backend of the placement for them before reading any weight.
  std::vector<engine::Feature> features;
};

}  // namespace velocity::model
