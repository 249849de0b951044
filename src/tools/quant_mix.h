// Per-tensor weight types of the GGUF ecosystem's quantisation schemes: a single type (every
// quantisable matrix in that type, like llama-quantize --pure) or a mix (Q4_K_M, MXFP4_MOE: the
// per-tensor choices of llama.cpp's llama_tensor_get_type in src/llama-quant.cpp). Used by
// `velocity synth` to lay out files exactly as llama-quantize would, and meant for `quantize`.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace velocity::tools {

enum class QuantMix {
  None,      // a single type
  Q4_K_M,    // LLAMA_FTYPE_MOSTLY_Q4_K_M
  MXFP4_MOE, // LLAMA_FTYPE_MOSTLY_MXFP4_MOE
};

struct WeightScheme {
  std::string name;          // canonical spelling: "Q4_K_M", "MXFP4_MOE", "Q8_0", "BF16" …
  DType default_type = DType::F32;  // the single type, or the mix's default (llama_ftype_get_default_type)
  QuantMix mix = QuantMix::None;
  uint32_t file_type = 0;    // general.file_type: the LLAMA_FTYPE value
};

// Parses a --type argument (case-insensitive): F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4, Q4_K_M, MXFP4_MOE. Throws velocity::Error otherwise.
WeightScheme parse_weight_scheme(std::string_view name);
// The names parse_weight_scheme accepts, for help texts.
std::vector<std::string> weight_scheme_names();

// What llama_tensor_get_type reads from the model besides the tensor itself.
struct QuantModelInfo {
  std::string arch;          // general.architecture
  int64_t n_layer = 0;       // hparams.n_layer_all (denominator of the layer rules)
  int64_t n_expert = 0;      // hparams.n_expert (0 for dense models)
  bool is_llama_70b = false; // llm_type LLM_TYPE_70B (llama with 80 blocks and GQA)
};

struct QuantTensor {
  std::string_view name;
  std::span<const int64_t> shape;  // GGUF order
};

// The weight type of every tensor. `tensors` must be in llama.cpp's loader order (block index,
// then name), because llama.cpp counts attn_v tensors in that order for its layer rules.
std::vector<DType> choose_tensor_types(const WeightScheme& scheme, const QuantModelInfo& model,
                                       std::span<const QuantTensor> tensors);

// llama-quant.cpp tensor_allows_quantization (for the tensors our architectures have): 2-D and
// larger tensors named "*weight", except norms and the MoE router (ffn_gate_inp). Everything
// else stays F32 (as convert_hf_to_gguf.py writes 1-D tensors, biases and the router).
bool tensor_allows_quantization(std::string_view name, size_t n_dims);

// llama-quant.cpp tensor_type_fallback: the type used when a row of n_cols elements is not a
// whole number of `target` blocks (Q4_K -> Q5_0, Q6_K -> Q8_0 …, F16 as the last resort).
// Returns `target` when it fits.
DType fallback_type(DType target, int64_t n_cols);

}  // namespace velocity::tools
