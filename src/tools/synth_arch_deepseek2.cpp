// DeepSeek-V2/V3/R1 tensors (LLM_ARCH_DEEPSEEK2) in the current llama.cpp layout: multi-head
// latent attention with the absorbed-MLA split of kv_b_proj into attn_k_b (transposed) and
// attn_v_b, as convert_hf_to_gguf.py's DeepseekV2Model.modify_tensors writes them and
// llama_model_deepseek2::load_arch_tensors loads them when attention.key_length_mla /
// value_length_mla are present (hparams.is_mla()); no attn_kv_b tensor.
//   attn_q_a {n_embd, q_lora_rank}, attn_q_a_norm {q_lora_rank},
//   attn_q_b {q_lora_rank, n_head * (qk_nope + qk_rope)}   (or attn_q {n_embd, …} without q LoRA)
//   attn_kv_a_mqa {n_embd, kv_lora_rank + qk_rope}, attn_kv_a_norm {kv_lora_rank}
//   attn_k_b {qk_nope, kv_lora_rank, n_head}, attn_v_b {kv_lora_rank, v_head_dim, n_head}
//   attn_output {n_head * v_head_dim, n_embd}
// Blocks below leading_dense_block_count have a dense FFN, the others routed experts
// {…, n_expert}, shared experts {n_embd, n_ff_exp * n_expert_shared} and, for V3/R1, the
// routing bias exp_probs_b.bias {n_expert}.
#include <fmt/format.h>

#include "tools/synth_arch.h"

namespace velocity::tools::synthetic {

void deepseek2_tensors(const ModelConfig& c, std::vector<TensorSpec>& out) {
  const int64_t k_head = c.qk_nope_head_dim + c.qk_rope_head_dim;  // query/key width per head
  const int64_t n_ff_sh = c.n_ff_exp * c.n_expert_shared;

  out.push_back({"token_embd.weight", {c.n_embd, c.n_vocab()}, ValueKind::Weight, {}});
  out.push_back({"output_norm.weight", {c.n_embd}, ValueKind::Norm, {}});
  out.push_back({"output.weight", {c.n_embd, c.n_vocab()}, ValueKind::Weight, {}});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    auto name = [il](const char* what) { return fmt::format("blk.{}.{}", il, what); };
    out.push_back({name("attn_norm.weight"), {c.n_embd}, ValueKind::Norm, {}});
    if (c.q_lora_rank > 0) {
      out.push_back({name("attn_q_a_norm.weight"), {c.q_lora_rank}, ValueKind::Norm, {}});
      out.push_back({name("attn_q_a.weight"), {c.n_embd, c.q_lora_rank}, ValueKind::Weight, {}});
      out.push_back({name("attn_q_b.weight"), {c.q_lora_rank, c.n_head * k_head}, ValueKind::Weight, {}});
    } else {
      out.push_back({name("attn_q.weight"), {c.n_embd, c.n_head * k_head}, ValueKind::Weight, {}});
    }
    out.push_back({name("attn_kv_a_mqa.weight"), {c.n_embd, c.kv_lora_rank + c.qk_rope_head_dim},
                   ValueKind::Weight, {}});
    out.push_back({name("attn_kv_a_norm.weight"), {c.kv_lora_rank}, ValueKind::Norm, {}});
    out.push_back({name("attn_k_b.weight"), {c.qk_nope_head_dim, c.kv_lora_rank, c.n_head}, ValueKind::Weight, {}});
    out.push_back({name("attn_v_b.weight"), {c.kv_lora_rank, c.v_head_dim, c.n_head}, ValueKind::Weight, {}});
    out.push_back({name("attn_output.weight"), {c.n_head * c.v_head_dim, c.n_embd}, ValueKind::Weight, {}});
    out.push_back({name("ffn_norm.weight"), {c.n_embd}, ValueKind::Norm, {}});
    if (il < c.n_layer_dense_lead) {
      out.push_back({name("ffn_gate.weight"), {c.n_embd, c.n_ff}, ValueKind::Weight, {}});
      out.push_back({name("ffn_down.weight"), {c.n_ff, c.n_embd}, ValueKind::Weight, {}});
      out.push_back({name("ffn_up.weight"), {c.n_embd, c.n_ff}, ValueKind::Weight, {}});
      continue;
    }
    out.push_back({name("ffn_gate_inp.weight"), {c.n_embd, c.n_expert}, ValueKind::Weight, {}});
    if (c.exp_probs_b) out.push_back({name("exp_probs_b.bias"), {c.n_expert}, ValueKind::Bias, {}});
    out.push_back({name("ffn_gate_exps.weight"), {c.n_embd, c.n_ff_exp, c.n_expert}, ValueKind::Weight, {}});
    out.push_back({name("ffn_down_exps.weight"), {c.n_ff_exp, c.n_embd, c.n_expert}, ValueKind::Weight, {}});
    out.push_back({name("ffn_up_exps.weight"), {c.n_embd, c.n_ff_exp, c.n_expert}, ValueKind::Weight, {}});
    out.push_back({name("ffn_gate_shexp.weight"), {c.n_embd, n_ff_sh}, ValueKind::Weight, {}});
    out.push_back({name("ffn_down_shexp.weight"), {n_ff_sh, c.n_embd}, ValueKind::Weight, {}});
    out.push_back({name("ffn_up_shexp.weight"), {c.n_embd, n_ff_sh}, ValueKind::Weight, {}});
  }
}

}  // namespace velocity::tools::synthetic
