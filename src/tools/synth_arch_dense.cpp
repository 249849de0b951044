// Dense transformer tensors: llama, qwen2 (QKV biases), qwen3 (per-head Q/K RMSNorm).
// Shapes as llama.cpp's load_tensors creates them for LLM_ARCH_LLAMA, LLM_ARCH_QWEN2 and
// LLM_ARCH_QWEN3; names from gguf-py's TENSOR_NAMES.
#include <fmt/format.h>

#include "tools/synth_arch.h"

namespace velocity::tools::synthetic {

void dense_tensors(const ModelConfig& c, std::vector<TensorSpec>& out) {
  const int64_t hd = c.head_width();
  const int64_t n_q = c.n_head * hd;      // query projection width
  const int64_t n_kv = c.n_head_kv * hd;  // key/value projection width

  out.push_back({"token_embd.weight", {c.n_embd, c.n_vocab()}, ValueKind::Weight, {}});
  out.push_back({"output_norm.weight", {c.n_embd}, ValueKind::Norm, {}});
  if (!c.tie_embeddings) out.push_back({"output.weight", {c.n_embd, c.n_vocab()}, ValueKind::Weight, {}});
  if (c.llama3_rope) {
    // LlamaModel.generate_extra_tensors: F32 {head_dim / 2}, shared by every layer.
    out.push_back({"rope_freqs.weight", {hd / 2}, ValueKind::Norm, llama3_rope_factors(c)});
  }
  for (int64_t il = 0; il < c.n_layer; ++il) {
    auto name = [il](const char* what) { return fmt::format("blk.{}.{}", il, what); };
    out.push_back({name("attn_norm.weight"), {c.n_embd}, ValueKind::Norm, {}});
    out.push_back({name("attn_q.weight"), {c.n_embd, n_q}, ValueKind::Weight, {}});
    out.push_back({name("attn_k.weight"), {c.n_embd, n_kv}, ValueKind::Weight, {}});
    out.push_back({name("attn_v.weight"), {c.n_embd, n_kv}, ValueKind::Weight, {}});
    out.push_back({name("attn_output.weight"), {n_q, c.n_embd}, ValueKind::Weight, {}});
    if (c.arch == "qwen2") {
      out.push_back({name("attn_q.bias"), {n_q}, ValueKind::Bias, {}});
      out.push_back({name("attn_k.bias"), {n_kv}, ValueKind::Bias, {}});
      out.push_back({name("attn_v.bias"), {n_kv}, ValueKind::Bias, {}});
    }
    if (c.arch == "qwen3") {
      out.push_back({name("attn_q_norm.weight"), {hd}, ValueKind::Norm, {}});
      out.push_back({name("attn_k_norm.weight"), {hd}, ValueKind::Norm, {}});
    }
    out.push_back({name("ffn_norm.weight"), {c.n_embd}, ValueKind::Norm, {}});
    out.push_back({name("ffn_gate.weight"), {c.n_embd, c.n_ff}, ValueKind::Weight, {}});
    out.push_back({name("ffn_down.weight"), {c.n_ff, c.n_embd}, ValueKind::Weight, {}});
    out.push_back({name("ffn_up.weight"), {c.n_embd, c.n_ff}, ValueKind::Weight, {}});
  }
}

}  // namespace velocity::tools::synthetic
