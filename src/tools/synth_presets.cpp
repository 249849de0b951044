// Presets for `velocity synth`: the real hyperparameters of published models (from their
// Hugging Face config.json / tokenizer files, named beside each), plus a `tiny` preset per
// architecture (a few MB; dims multiples of 256 so every K-quant applies; 2-4 layers; small
// experts; ~1-2k vocabulary with the family's real special tokens).
#include "core/error.h"
#include "tools/synth_arch.h"

namespace velocity::tools::synthetic {
namespace {

// --- vocabularies -------------------------------------------------------------------------------

// Llama 3 tokenizer: 128000 BPE tokens + 256 specials; BOS <|begin_of_text|>, EOS <|eot_id|>
// (Instruct); add_bos_token true.
VocabSpec llama3_vocab(int64_t n_bpe) {
  VocabSpec v;
  v.pre = "llama-bpe";
  v.n_bpe = n_bpe;
  v.tail = llama3_special_tokens();
  v.n_vocab = n_bpe + static_cast<int64_t>(v.tail.size());
  v.bos = "<|begin_of_text|>";
  v.eos = "<|eot_id|>";
  v.add_bos = true;
  return v;
}

// Qwen2.5 / Qwen3 tokenizer: 151643 BPE tokens, the specials, then [PAD] up to vocab_size.
// BOS = padding = <|endoftext|> (config bos_token_id 151643), EOS <|im_end|>, no BOS added.
VocabSpec qwen_vocab(int64_t n_bpe, int64_t n_vocab, bool qwen3) {
  VocabSpec v;
  v.pre = "qwen2";
  v.n_bpe = n_bpe;
  v.tail = qwen3 ? qwen3_special_tokens() : qwen25_special_tokens();
  v.n_vocab = n_vocab;
  v.bos = "<|endoftext|>";
  v.eos = "<|im_end|>";
  v.padding = "<|endoftext|>";
  v.add_bos = false;
  return v;
}

// DeepSeek-V3/R1 tokenizer: specials at 0..2, BPE up to 128000, added tokens 128000..128814,
// [PAD] up to 129280. BOS 0, EOS 1, pad token = EOS (tokenizer_config pad_token).
VocabSpec deepseek_v3_vocab(int64_t n_vocab, int64_t n_bpe) {
  VocabSpec v;
  v.pre = "deepseek-v3";
  v.head = deepseek_v3_head_tokens();
  v.n_bpe = n_bpe;
  v.tail = deepseek_r1_tail_tokens();
  v.n_vocab = n_vocab;
  v.bos = "<｜begin▁of▁sentence｜>";
  v.eos = "<｜end▁of▁sentence｜>";
  v.padding = "<｜end▁of▁sentence｜>";
  v.add_bos = true;
  return v;
}

// gpt-oss o200k_harmony: 199998 BPE tokens + 1090 specials = 201088. BOS <|startoftext|>,
// EOS <|return|>, padding <|endoftext|>.
VocabSpec gpt_oss_vocab(int64_t n_bpe) {
  VocabSpec v;
  v.pre = "gpt-4o";
  v.n_bpe = n_bpe;
  v.tail = gpt_oss_special_tokens();
  v.n_vocab = n_bpe + static_cast<int64_t>(v.tail.size());
  v.bos = "<|startoftext|>";
  v.eos = "<|return|>";
  v.padding = "<|endoftext|>";
  v.add_bos = false;
  return v;
}

// --- llama ----------------------------------------------------------------------------------

// meta-llama/Llama-3.1-8B(-Instruct): 8.03B parameters.
ModelConfig llama3_8b() {
  ModelConfig c;
  c.arch = "llama";
  c.name = "Llama 3.1 8B (synthetic)";
  c.n_ctx_train = 131072;
  c.n_embd = 4096;
  c.n_layer = 32;
  c.n_ff = 14336;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.rms_eps = 1e-5f;
  c.head_dim = 128;
  c.write_head_dim = true;  // transformers' LlamaConfig.to_dict() carries head_dim
  c.rope_theta = 500000.0f;
  c.llama3_rope = true;  // rope_scaling {rope_type llama3, factor 8, low 1, high 4, orig 8192}
  c.vocab = llama3_vocab(128000);
  return c;
}

// meta-llama/Llama-3.2-1B(-Instruct): 1.24B parameters, tied embeddings, RoPE factor 32.
ModelConfig llama32_1b() {
  ModelConfig c = llama3_8b();
  c.name = "Llama 3.2 1B (synthetic)";
  c.n_embd = 2048;
  c.n_layer = 16;
  c.n_ff = 8192;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.head_dim = 64;
  c.llama3_factor = 32.0f;
  c.tie_embeddings = true;
  return c;
}

ModelConfig llama_tiny() {
  ModelConfig c = llama3_8b();
  c.name = "Llama tiny (synthetic)";
  c.n_ctx_train = 4096;
  c.n_embd = 256;
  c.n_layer = 4;
  c.n_ff = 768;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 64;
  c.vocab = llama3_vocab(1024);  // 1280 tokens
  return c;
}

// --- qwen2 / qwen3 ------------------------------------------------------------------------------

// Qwen/Qwen2.5-Coder-32B-Instruct: 32.8B parameters.
ModelConfig qwen25_coder_32b() {
  ModelConfig c;
  c.arch = "qwen2";
  c.name = "Qwen2.5 Coder 32B Instruct (synthetic)";
  c.n_ctx_train = 32768;
  c.n_embd = 5120;
  c.n_layer = 64;
  c.n_ff = 27648;
  c.n_head = 40;
  c.n_head_kv = 8;
  c.rms_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.vocab = qwen_vocab(151643, 152064, false);
  return c;
}

ModelConfig qwen2_tiny() {
  ModelConfig c = qwen25_coder_32b();
  c.name = "Qwen2 tiny (synthetic)";
  c.n_ctx_train = 4096;
  c.n_embd = 256;
  c.n_layer = 4;
  c.n_ff = 768;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.vocab = qwen_vocab(1200, 1280, false);
  return c;
}

// Qwen/Qwen3-8B: 8.19B parameters.
ModelConfig qwen3_8b() {
  ModelConfig c;
  c.arch = "qwen3";
  c.name = "Qwen3 8B (synthetic)";
  c.n_ctx_train = 40960;
  c.n_embd = 4096;
  c.n_layer = 36;
  c.n_ff = 12288;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.head_dim = 128;
  c.write_head_dim = true;
  c.rms_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.vocab = qwen_vocab(151643, 151936, true);
  return c;
}

ModelConfig qwen3_tiny() {
  ModelConfig c = qwen3_8b();
  c.name = "Qwen3 tiny (synthetic)";
  c.n_ctx_train = 4096;
  c.n_embd = 256;
  c.n_layer = 4;
  c.n_ff = 768;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 64;
  c.vocab = qwen_vocab(1200, 1280, true);
  return c;
}

// Qwen/Qwen3-30B-A3B: 30.5B parameters, 3.3B active.
ModelConfig qwen3_30b_a3b() {
  ModelConfig c;
  c.arch = "qwen3moe";
  c.name = "Qwen3 30B A3B (synthetic)";
  c.n_ctx_train = 40960;
  c.n_embd = 2048;
  c.n_layer = 48;
  c.n_ff = 6144;
  c.n_head = 32;
  c.n_head_kv = 4;
  c.head_dim = 128;
  c.write_head_dim = true;
  c.rms_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.n_expert = 128;
  c.n_expert_used = 8;
  c.n_ff_exp = 768;
  c.vocab = qwen_vocab(151643, 151936, true);
  return c;
}

ModelConfig qwen3moe_tiny() {
  ModelConfig c = qwen3_30b_a3b();
  c.name = "Qwen3 MoE tiny (synthetic)";
  c.n_ctx_train = 4096;
  c.n_embd = 256;
  c.n_layer = 4;
  c.n_ff = 768;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 64;
  c.n_expert = 8;  // 8 experts: llama.cpp's Mixtral-era n_expert == 8 quant rules apply
  c.n_expert_used = 2;
  c.n_ff_exp = 512;  // != n_embd, so that a transposed expert shape cannot pass
  c.vocab = qwen_vocab(1200, 1280, true);
  return c;
}

// --- deepseek2 ----------------------------------------------------------------------------------

// deepseek-ai/DeepSeek-R1 (DeepSeek-V3 architecture): 671B parameters without the MTP layer,
// which the converter skips. rope_scaling yarn {factor 40, original 4096, beta_fast 32,
// beta_slow 1, mscale_all_dim 1.0}; scoring_func sigmoid, n_group 8, topk_group 4.
ModelConfig deepseek_r1() {
  ModelConfig c;
  c.arch = "deepseek2";
  c.name = "DeepSeek R1 (synthetic)";
  c.n_ctx_train = 163840;
  c.n_embd = 7168;
  c.n_layer = 61;
  c.n_ff = 18432;
  c.n_head = 128;
  c.n_head_kv = 128;
  c.rms_eps = 1e-6f;
  c.rope_theta = 10000.0f;
  c.yarn = true;
  c.yarn_factor = 40.0f;
  c.yarn_orig_ctx = 4096;
  c.yarn_beta_fast = 32.0f;
  c.yarn_beta_slow = 1.0f;
  c.yarn_log_mul = 0.1f * 1.0f;
  c.n_expert = 256;
  c.n_expert_used = 8;
  c.n_ff_exp = 2048;
  c.n_expert_shared = 1;
  c.n_layer_dense_lead = 3;
  c.n_expert_groups = 8;
  c.n_expert_groups_used = 4;
  c.expert_weights_scale = 2.5f;
  c.expert_weights_norm = true;
  c.expert_gating_func = 2;  // sigmoid
  c.exp_probs_b = true;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.vocab = deepseek_v3_vocab(129280, 128000 - 3);
  return c;
}

// deepseek-ai/DeepSeek-V2-Lite(-Chat): 15.7B parameters, no q LoRA. rope_scaling yarn
// {factor 40, original 4096, beta_fast 32, beta_slow 1, mscale_all_dim 0.707}; scoring_func
// softmax, topk_method greedy (n_group 1, topk_group 1), norm_topk_prob false.
ModelConfig deepseek_v2_lite() {
  ModelConfig c = deepseek_r1();
  c.name = "DeepSeek V2 Lite (synthetic)";
  c.n_embd = 2048;
  c.n_layer = 27;
  c.n_ff = 10944;
  c.n_head = 16;
  c.n_head_kv = 16;
  c.yarn_log_mul = 0.1f * 0.707f;
  c.n_expert = 64;
  c.n_expert_used = 6;
  c.n_ff_exp = 1408;
  c.n_expert_shared = 2;
  c.n_layer_dense_lead = 1;
  c.n_expert_groups = 1;
  c.n_expert_groups_used = 1;
  c.expert_weights_scale = 1.0f;
  c.expert_weights_norm = false;
  c.expert_gating_func = 1;  // softmax
  c.exp_probs_b = false;
  c.q_lora_rank = 0;
  // deepseek-llm tokenizer: 100000 BPE tokens, BOS 100000, EOS 100001, vocab_size 102400.
  c.vocab = VocabSpec{};
  c.vocab.pre = "deepseek-llm";
  c.vocab.n_bpe = 100000;
  c.vocab.tail = deepseek_v2_tail_tokens();
  c.vocab.n_vocab = 102400;
  c.vocab.bos = "<｜begin▁of▁sentence｜>";
  c.vocab.eos = "<｜end▁of▁sentence｜>";
  c.vocab.padding = "<｜end▁of▁sentence｜>";
  c.vocab.add_bos = true;
  return c;
}

ModelConfig deepseek2_tiny() {
  ModelConfig c = deepseek_r1();
  c.name = "DeepSeek2 tiny (synthetic)";
  c.n_ctx_train = 4096;
  c.n_embd = 256;
  c.n_layer = 3;
  c.n_ff = 768;
  c.n_head = 4;
  c.n_head_kv = 4;
  c.n_expert = 4;
  c.n_expert_used = 2;
  c.n_ff_exp = 512;
  c.n_expert_shared = 1;
  c.n_layer_dense_lead = 1;
  c.n_expert_groups = 2;
  c.n_expert_groups_used = 1;
  c.q_lora_rank = 256;
  c.kv_lora_rank = 256;
  c.vocab = deepseek_v3_vocab(2048, 2048 - 3 - 815);
  return c;
}

// --- gpt-oss ------------------------------------------------------------------------------------

// openai/gpt-oss-20b: 20.9B parameters (3.6B active). rope_scaling yarn {factor 32,
// original 4096, beta_fast 32, beta_slow 1}; sliding_window 128; head_dim 64.
ModelConfig gpt_oss_20b() {
  ModelConfig c;
  c.arch = "gpt-oss";
  c.name = "gpt-oss 20b (synthetic)";
  c.n_ctx_train = 131072;
  c.n_embd = 2880;
  c.n_layer = 24;
  c.n_ff = 2880;
  c.n_head = 64;
  c.n_head_kv = 8;
  c.head_dim = 64;
  c.write_head_dim = true;
  c.rms_eps = 1e-5f;
  c.rope_theta = 150000.0f;
  c.yarn = true;
  c.yarn_factor = 32.0f;
  c.yarn_orig_ctx = 4096;
  c.yarn_beta_fast = 32.0f;
  c.yarn_beta_slow = 1.0f;
  c.n_expert = 32;
  c.n_expert_used = 4;
  c.n_ff_exp = 2880;
  c.sliding_window = 128;
  c.vocab = gpt_oss_vocab(199998);
  return c;
}

// openai/gpt-oss-120b: 116.8B parameters (5.1B active): 36 blocks, 128 experts.
ModelConfig gpt_oss_120b() {
  ModelConfig c = gpt_oss_20b();
  c.name = "gpt-oss 120b (synthetic)";
  c.n_layer = 36;
  c.n_expert = 128;
  return c;
}

ModelConfig gpt_oss_tiny() {
  ModelConfig c = gpt_oss_20b();
  c.name = "gpt-oss tiny (synthetic)";
  c.n_ctx_train = 4096;
  c.n_embd = 256;
  c.n_layer = 2;
  c.n_ff = 512;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.n_expert = 4;
  c.n_expert_used = 2;
  c.n_ff_exp = 512;
  c.vocab = gpt_oss_vocab(2048 - 1090);
  return c;
}

struct Preset {
  const char* arch;
  const char* name;
  ModelConfig (*make)();
};

constexpr Preset kPresets[] = {
    {"llama", "tiny", llama_tiny},
    {"llama", "llama3-8b", llama3_8b},
    {"llama", "llama3.2-1b", llama32_1b},
    {"qwen2", "tiny", qwen2_tiny},
    {"qwen2", "qwen2.5-coder-32b", qwen25_coder_32b},
    {"qwen3", "tiny", qwen3_tiny},
    {"qwen3", "qwen3-8b", qwen3_8b},
    {"qwen3moe", "tiny", qwen3moe_tiny},
    {"qwen3moe", "qwen3-30b-a3b", qwen3_30b_a3b},
    {"deepseek2", "tiny", deepseek2_tiny},
    {"deepseek2", "deepseek-v2-lite", deepseek_v2_lite},
    {"deepseek2", "deepseek-r1", deepseek_r1},
    {"gpt-oss", "tiny", gpt_oss_tiny},
    {"gpt-oss", "gpt-oss-20b", gpt_oss_20b},
    {"gpt-oss", "gpt-oss-120b", gpt_oss_120b},
};

}  // namespace

std::vector<std::string> arch_names() { return {"llama", "qwen2", "qwen3", "qwen3moe", "deepseek2", "gpt-oss"}; }

std::vector<std::string> preset_names(const std::string& arch) {
  std::vector<std::string> out;
  for (const auto& p : kPresets)
    if (arch == p.arch) out.emplace_back(p.name);
  return out;
}

ModelConfig preset_config(const std::string& arch, const std::string& preset) {
  bool known_arch = false;
  for (const auto& p : kPresets) {
    if (arch != p.arch) continue;
    known_arch = true;
    if (preset == p.name) return p.make();
  }
  if (!known_arch) {
    std::string archs;
    for (const auto& a : arch_names()) archs += (archs.empty() ? "" : ", ") + a;
    fail("synth: unknown architecture '{}' (known: {})", arch, archs);
  }
  std::string names;
  for (const auto& n : preset_names(arch)) names += (names.empty() ? "" : ", ") + n;
  fail("synth: unknown preset '{}' for {} (known: {})", preset, arch, names);
}

}  // namespace velocity::tools::synthetic
