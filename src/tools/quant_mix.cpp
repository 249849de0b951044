// The rules below transcribe llama.cpp's src/llama-quant.cpp (tensor_get_category,
// tensor_allows_quantization, llama_tensor_get_type_impl, tensor_type_fallback,
// llama_ftype_get_default_type, init_quantize_state_counters) for the two mixes velocity
// produces, Q4_K_M and MXFP4_MOE. Branches for other ftypes are left out; each kept line names
// the rule it follows. The quantiser visits tensors in llama_model_loader's weights_map order
// (weight_name_comparer: block index, then name), which the i_attention_wv counter depends on.
#include "tools/quant_mix.h"

#include <cctype>
#include <cstdio>
#include <string>

#include "core/error.h"

namespace velocity::tools {
namespace {

// LLAMA_FTYPE values (include/llama.h).
constexpr uint32_t kFtypeAllF32 = 0, kFtypeF16 = 1, kFtypeQ4_0 = 2, kFtypeQ4_1 = 3, kFtypeQ8_0 = 7,
                   kFtypeQ5_0 = 8, kFtypeQ5_1 = 9, kFtypeQ2_K = 10, kFtypeQ3_K_S = 11, kFtypeQ4_K_S = 14,
                   kFtypeQ4_K_M = 15, kFtypeQ5_K_S = 16, kFtypeQ6_K = 18, kFtypeBF16 = 32, kFtypeMXFP4_MOE = 38;

// tensor_category in llama-quant.cpp.
enum class Category { TokenEmbd, AttnQ, AttnV, AttnK, AttnQKV, AttnKVB, AttnOutput, FfnUp, FfnGate, FfnDown, Output, Other };

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// tensor_get_category: exact names first, then substrings in this order.
Category category_of(std::string_view name) {
  if (name == "output.weight") return Category::Output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::TokenEmbd;
  if (contains(name, "attn_qkv.weight")) return Category::AttnQKV;
  if (contains(name, "attn_kv_b.weight")) return Category::AttnKVB;
  if (contains(name, "attn_v.weight")) return Category::AttnV;
  if (contains(name, "attn_k.weight")) return Category::AttnK;
  if (contains(name, "attn_q.weight")) return Category::AttnQ;
  if (contains(name, "attn_output.weight")) return Category::AttnOutput;
  if (contains(name, "ffn_up")) return Category::FfnUp;
  if (contains(name, "ffn_gate")) return Category::FfnGate;
  if (contains(name, "ffn_down")) return Category::FfnDown;
  return Category::Other;
}

// category_is_attn_v: the tensors counted by n_attention_wv / i_attention_wv.
bool is_attn_v_like(Category c) { return c == Category::AttnV || c == Category::AttnQKV || c == Category::AttnKVB; }

// use_more_bits lambda of llama_tensor_get_type_impl (integer arithmetic as in C++).
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

struct State {  // quantize_state_impl counters
  int n_attention_wv = 0;
  int i_attention_wv = 0;
  int n_ffn_down = 0;
  int i_ffn_down = 0;
  bool has_tied_embeddings = true;
};

// layer_info lambda: with more than one expert the layer comes from the name "blk.N.".
int layer_of(std::string_view name, int counter, int n_expert) {
  if (n_expert <= 1) return counter;
  int il = -1;
  const std::string s(name);
  if (std::sscanf(s.c_str(), "blk.%d.", &il) != 1) fail("quant mix: cannot determine the layer of tensor '{}'", name);
  return il;
}

// llama_tensor_get_type_impl, restricted to Q4_K_M and MXFP4_MOE.
DType mix_type(State& qs, const QuantModelInfo& model, QuantMix mix, DType new_type, const QuantTensor& t,
               Category category) {
  const int n_expert_raw = static_cast<int>(model.n_expert);     // hparams.n_expert
  const int n_expert = n_expert_raw > 1 ? n_expert_raw : 1;      // std::max(1, n_expert)
  const int64_t ne2 = t.shape.size() > 2 ? t.shape[2] : 1;

  if (category == Category::Output || (qs.has_tied_embeddings && category == Category::TokenEmbd)) {
    // Output head (and a tied token_embd): MXFP4_MOE -> Q8_0; rows not whole blocks of the
    // default type -> Q8_0; otherwise Q6_K.
    const int64_t nx = t.shape[0];
    if (mix == QuantMix::MXFP4_MOE) new_type = DType::Q8_0;
    else if (nx % dtype_block_size(new_type) != 0) new_type = DType::Q8_0;
    else if (new_type != DType::Q8_0) new_type = DType::Q6_K;
  } else if (mix == QuantMix::MXFP4_MOE) {
    // "MoE tensors -> MXFP4, other tensors -> Q8_0": any tensor with ne[2] > 1 (the merged
    // experts, and also deepseek2's 3-D attn_k_b / attn_v_b) -> MXFP4.
    new_type = ne2 > 1 ? DType::MXFP4 : DType::Q8_0;
  } else if (category == Category::TokenEmbd) {
    // Q4_K_M keeps the default type for an untied token_embd.
  } else if (is_attn_v_like(category)) {
    // Q4_K_M / Q5_K_M: use_more_bits(i_attention_wv, n_attention_wv) -> Q6_K.
    if (use_more_bits(qs.i_attention_wv, qs.n_attention_wv)) new_type = DType::Q6_K;
    // LLM_TYPE_70B: Q3_K / Q4_K attn_v -> Q5_K (8 heads share attn_v).
    if (model.is_llama_70b && (new_type == DType::Q3_K || new_type == DType::Q4_K)) new_type = DType::Q5_K;
    // n_expert == 8 (Mixtral): attn_v -> Q8_0.
    if (n_expert_raw == 8) new_type = DType::Q8_0;
    ++qs.i_attention_wv;
  } else if (category == Category::AttnK) {
    // n_expert == 8: attn_k -> Q8_0.
    if (n_expert_raw == 8) new_type = DType::Q8_0;
  } else if (category == Category::AttnQ) {
    // Only IQ3 ftypes change attn_q.
  } else if (category == Category::FfnDown) {
    // Q4_K_M (non-Falcon): use_more_bits(i_layer, n_layer) -> Q6_K; the layer is the running
    // ffn_down counter for dense models and parsed from the name for MoE models.
    const int i_layer = layer_of(t.name, qs.i_ffn_down, n_expert);
    if (use_more_bits(i_layer, qs.n_ffn_down)) new_type = DType::Q6_K;
    ++qs.i_ffn_down;
  } else if (category == Category::AttnOutput) {
    // Non-Falcon with n_expert == 8 and Q4_K_M -> Q5_K.
    if (n_expert_raw == 8) new_type = DType::Q5_K;
  } else if (category == Category::AttnQKV) {
    // Q4_K_M: fused attn_qkv -> Q5_K (reached only for names that are not attn_v-like).
    new_type = DType::Q5_K;
  }
  return new_type;
}

}  // namespace

bool tensor_allows_quantization(std::string_view name, size_t n_dims) {
  if (n_dims < 2) return false;                                   // only 2-D and 3-D tensors
  bool quantize = name.size() >= 6 && name.substr(name.size() - 6) == "weight";  // ends with "weight"
  quantize = quantize && !contains(name, "_norm.weight");        // no norm tensors
  quantize = quantize && !contains(name, "ffn_gate_inp.weight"); // no expert gating tensors
  return quantize;
}

DType fallback_type(DType target, int64_t n_cols) {
  if (n_cols % dtype_block_size(target) == 0) return target;
  DType out;
  switch (target) {
    case DType::Q2_K:
    case DType::Q3_K: out = DType::Q4_0; break;
    case DType::Q4_K: out = DType::Q5_0; break;
    case DType::Q5_K: out = DType::Q5_1; break;
    case DType::Q6_K: out = DType::Q8_0; break;
    // llama.cpp has no fallback for the 32-element types and throws; a synthetic model takes
    // F16 instead, as llama.cpp does when a fallback still does not fit.
    default: return DType::F16;
  }
  // "must use F16 due to unusual shape"
  return n_cols % dtype_block_size(out) == 0 ? out : DType::F16;
}

WeightScheme parse_weight_scheme(std::string_view name) {
  std::string upper(name);
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (upper == "Q4_K_M") return {"Q4_K_M", DType::Q4_K, QuantMix::Q4_K_M, kFtypeQ4_K_M};
  if (upper == "MXFP4_MOE") return {"MXFP4_MOE", DType::MXFP4, QuantMix::MXFP4_MOE, kFtypeMXFP4_MOE};
  struct Single {
    DType type;
    uint32_t file_type;
  };
  // A single type's file type: the ftype whose default type it is (K-quants: the _S variant).
  static constexpr Single kSingles[] = {
      {DType::F32, kFtypeAllF32}, {DType::F16, kFtypeF16},     {DType::BF16, kFtypeBF16},
      {DType::Q8_0, kFtypeQ8_0},  {DType::Q4_0, kFtypeQ4_0},   {DType::Q4_1, kFtypeQ4_1},
      {DType::Q5_0, kFtypeQ5_0},  {DType::Q5_1, kFtypeQ5_1},   {DType::Q2_K, kFtypeQ2_K},
      {DType::Q3_K, kFtypeQ3_K_S}, {DType::Q4_K, kFtypeQ4_K_S}, {DType::Q5_K, kFtypeQ5_K_S},
      {DType::Q6_K, kFtypeQ6_K},  {DType::MXFP4, kFtypeMXFP4_MOE},
  };
  if (auto type = dtype_from_name(upper)) {
    for (const auto& s : kSingles)
      if (s.type == *type) return {std::string(dtype_name(s.type)), s.type, QuantMix::None, s.file_type};
  }
  std::string known;
  for (const auto& n : weight_scheme_names()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown weight type '{}' (known: {})", name, known);
}

std::vector<std::string> weight_scheme_names() {
  return {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K",
          "Q3_K", "Q4_K", "Q5_K", "Q6_K", "MXFP4", "Q4_K_M", "MXFP4_MOE"};
}

std::vector<DType> choose_tensor_types(const WeightScheme& scheme, const QuantModelInfo& model,
                                       std::span<const QuantTensor> tensors) {
  // init_quantize_state_counters.
  State qs;
  for (const auto& t : tensors) {
    const Category c = category_of(t.name);
    if (is_attn_v_like(c)) ++qs.n_attention_wv;
    if (c == Category::Output) qs.has_tied_embeddings = false;
  }
  qs.n_ffn_down = static_cast<int>(model.n_layer);

  const bool is_float = scheme.default_type == DType::F32 || scheme.default_type == DType::F16 ||
                        scheme.default_type == DType::BF16;
  std::vector<DType> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) {
    // Tensors llama-quantize leaves alone keep the converter's type: F32.
    if (!tensor_allows_quantization(t.name, t.shape.size())) {
      out.push_back(DType::F32);
      continue;
    }
    DType type = scheme.default_type;
    if (!is_float) {  // llama_tensor_get_type: only quantised default types go through the rules
      if (scheme.mix != QuantMix::None) type = mix_type(qs, model, scheme.mix, type, t, category_of(t.name));
      type = fallback_type(type, t.shape[0]);
    }
    out.push_back(type);
  }
  return out;
}

}  // namespace velocity::tools
