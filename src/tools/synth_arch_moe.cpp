// Mixture-of-experts tensors: qwen3moe and gpt-oss. Shapes as llama.cpp creates them for
// LLM_ARCH_QWEN3MOE and LLM_ARCH_OPENAI_MOE ("gpt-oss"): merged 3-D expert tensors
// ffn_{gate,up}_exps {n_embd, n_ff_exp, n_expert} and ffn_down_exps {n_ff_exp, n_embd, n_expert}
// (the converter stacks the per-expert matrices; gate and up stay separate by default).
#include <fmt/format.h>

#include "tools/synth_arch.h"

namespace velocity::tools::synthetic {

void moe_tensors(const ModelConfig& c, std::vector<TensorSpec>& out) {
  const int64_t hd = c.head_width();
  const int64_t n_q = c.n_head * hd;
  const int64_t n_kv = c.n_head_kv * hd;
  const bool gpt_oss = c.arch == "gpt-oss";

  out.push_back({"token_embd.weight", {c.n_embd, c.n_vocab()}, ValueKind::Weight, {}});
  out.push_back({"output_norm.weight", {c.n_embd}, ValueKind::Norm, {}});
  out.push_back({"output.weight", {c.n_embd, c.n_vocab()}, ValueKind::Weight, {}});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    auto name = [il](const char* what) { return fmt::format("blk.{}.{}", il, what); };
    out.push_back({name("attn_norm.weight"), {c.n_embd}, ValueKind::Norm, {}});
    out.push_back({name("attn_q.weight"), {c.n_embd, n_q}, ValueKind::Weight, {}});
    out.push_back({name("attn_k.weight"), {c.n_embd, n_kv}, ValueKind::Weight, {}});
    out.push_back({name("attn_v.weight"), {c.n_embd, n_kv}, ValueKind::Weight, {}});
    out.push_back({name("attn_output.weight"), {n_q, c.n_embd}, ValueKind::Weight, {}});
    out.push_back({name("ffn_gate_inp.weight"), {c.n_embd, c.n_expert}, ValueKind::Weight, {}});
    out.push_back({name("ffn_gate_exps.weight"), {c.n_embd, c.n_ff_exp, c.n_expert}, ValueKind::Weight, {}});
    out.push_back({name("ffn_down_exps.weight"), {c.n_ff_exp, c.n_embd, c.n_expert}, ValueKind::Weight, {}});
    out.push_back({name("ffn_up_exps.weight"), {c.n_embd, c.n_ff_exp, c.n_expert}, ValueKind::Weight, {}});
    if (gpt_oss) {
      // Pre-FFN norm is HF's post_attention_layernorm -> LLM_TENSOR_ATTN_POST_NORM.
      out.push_back({name("post_attention_norm.weight"), {c.n_embd}, ValueKind::Norm, {}});
      out.push_back({name("attn_q.bias"), {n_q}, ValueKind::Bias, {}});
      out.push_back({name("attn_k.bias"), {n_kv}, ValueKind::Bias, {}});
      out.push_back({name("attn_v.bias"), {n_kv}, ValueKind::Bias, {}});
      out.push_back({name("attn_output.bias"), {c.n_embd}, ValueKind::Bias, {}});
      out.push_back({name("attn_sinks.weight"), {c.n_head}, ValueKind::Sinks, {}});
      out.push_back({name("ffn_gate_inp.bias"), {c.n_expert}, ValueKind::Bias, {}});
      out.push_back({name("ffn_gate_exps.bias"), {c.n_ff_exp, c.n_expert}, ValueKind::Bias, {}});
      out.push_back({name("ffn_down_exps.bias"), {c.n_embd, c.n_expert}, ValueKind::Bias, {}});
      out.push_back({name("ffn_up_exps.bias"), {c.n_ff_exp, c.n_expert}, ValueKind::Bias, {}});
    } else {
      out.push_back({name("attn_q_norm.weight"), {hd}, ValueKind::Norm, {}});
      out.push_back({name("attn_k_norm.weight"), {hd}, ValueKind::Norm, {}});
      out.push_back({name("ffn_norm.weight"), {c.n_embd}, ValueKind::Norm, {}});
    }
  }
}

}  // namespace velocity::tools::synthetic
