// `velocity inspect`: the numbers (summarize, hyperparameters, tokenizer summary). The text report
// is in inspect_text.cpp, the JSON one in inspect_json.cpp.
//
// Bytes per token is the quantity that bounds decode speed at batch 1: every weight a token
// touches is streamed from memory once, so tok/s <= bandwidth / bytes_per_token. Only the
// embedding row of the token is read (unless the embedding is tied to the output head), and of
// an MoE layer's experts only the routed n_expert_used.
#include "tools/inspect.h"

#include <algorithm>
#include <array>
#include <map>

#include "core/error.h"

namespace velocity::tools {
namespace {

// Known `<arch>.*` key suffixes, in the order a reader wants them.
struct KnownKey {
  std::string_view suffix;
  std::string_view label;
};
constexpr std::array kKnownKeys = {
    KnownKey{"vocab_size", "vocab size"},
    KnownKey{"context_length", "context length"},
    KnownKey{"embedding_length", "embedding length"},
    KnownKey{"block_count", "layers"},
    KnownKey{"feed_forward_length", "ffn length"},
    KnownKey{"attention.head_count", "heads"},
    KnownKey{"attention.head_count_kv", "kv heads"},
    KnownKey{"attention.key_length", "head dim (k)"},
    KnownKey{"attention.value_length", "head dim (v)"},
    KnownKey{"attention.key_length_mla", "head dim (k, mla)"},
    KnownKey{"attention.value_length_mla", "head dim (v, mla)"},
    KnownKey{"attention.q_lora_rank", "q lora rank"},
    KnownKey{"attention.kv_lora_rank", "kv lora rank"},
    KnownKey{"attention.sliding_window", "sliding window"},
    KnownKey{"attention.layer_norm_rms_epsilon", "rms norm eps"},
    KnownKey{"attention.layer_norm_epsilon", "layer norm eps"},
    KnownKey{"leading_dense_block_count", "leading dense layers"},
    KnownKey{"expert_count", "experts"},
    KnownKey{"expert_used_count", "experts used"},
    KnownKey{"expert_feed_forward_length", "expert ffn length"},
    KnownKey{"expert_shared_count", "shared experts"},
    KnownKey{"expert_shared_feed_forward_length", "shared expert ffn length"},
    KnownKey{"expert_weights_scale", "expert weights scale"},
    KnownKey{"expert_weights_norm", "expert weights norm"},
    KnownKey{"expert_gating_func", "expert gating func"},
    KnownKey{"expert_group_count", "expert groups"},
    KnownKey{"expert_group_used_count", "expert groups used"},
    KnownKey{"rope.dimension_count", "rope dims"},
    KnownKey{"rope.freq_base", "rope freq base"},
    KnownKey{"rope.scaling.type", "rope scaling"},
    KnownKey{"rope.scaling.factor", "rope scaling factor"},
    KnownKey{"rope.scaling.original_context_length", "rope original context"},
    KnownKey{"rope.scaling.yarn_log_multiplier", "yarn log multiplier"},
    KnownKey{"rope.scaling.yarn_beta_fast", "yarn beta fast"},
    KnownKey{"rope.scaling.yarn_beta_slow", "yarn beta slow"},
};

// A non-negative integer metadata value, or nullopt when the key is absent.
std::optional<uint64_t> get_count(const gguf::File& file, const std::string& key) {
  const gguf::Value* value = file.find(key);
  if (!value) return std::nullopt;
  if (!value->is_integer())
    fail("{}: metadata {} is {}, expected an integer", file.shards().at(0).path, key,
         gguf::value_type_name(value->type()));
  if (value->type() != gguf::ValueType::UINT64 && value->as_int() < 0)
    fail("{}: metadata {} is {}, expected a count", file.shards().at(0).path, key, value->as_int());
  return value->as_uint();
}

}  // namespace

ModelSummary summarize(const gguf::File& file) {
  ModelSummary summary;
  summary.architecture = file.architecture();
  summary.n_tensors = file.tensors().size();
  summary.n_shards = file.shards().size();
  for (const auto& shard : file.shards()) summary.n_file_bytes += shard.file_size;

  if (!summary.architecture.empty()) {
    const std::string prefix = summary.architecture + ".";
    summary.n_expert = get_count(file, prefix + "expert_count").value_or(0);
    // A file that names experts but not how many are used: count them all (an upper bound).
    summary.n_expert_used = get_count(file, prefix + "expert_used_count").value_or(summary.n_expert);
  }
  if (const gguf::Value* file_type = file.find("general.file_type"); file_type && file_type->is_integer()) {
    // Informational only: a negative or odd value is shown as it is, not rejected.
    if (file_type->type() == gguf::ValueType::UINT64 || file_type->as_int() >= 0) summary.file_type = file_type->as_uint();
  }
  summary.tied_embeddings = file.find_tensor("token_embd.weight") != nullptr && file.find_tensor("output.weight") == nullptr;

  std::map<uint32_t, TypeTotals> by_type;
  for (const auto& tensor : file.tensors()) {
    summary.n_params += (uint64_t)tensor.n_elements;
    summary.n_bytes += tensor.n_bytes;
    auto& totals = by_type[(uint32_t)tensor.type];
    totals.type = tensor.type;
    totals.n_tensors += 1;
    totals.n_params += (uint64_t)tensor.n_elements;
    totals.n_bytes += tensor.n_bytes;
  }
  for (const auto& tensor : file.tensors()) summary.bytes_per_token += tensor_bytes_per_token(tensor, summary);
  for (const auto& [id, totals] : by_type) summary.types.push_back(totals);
  summary.bits_per_weight = summary.n_params ? 8.0 * (double)summary.n_bytes / (double)summary.n_params : 0.0;
  return summary;
}

uint64_t tensor_bytes_per_token(const gguf::TensorInfo& tensor, const ModelSummary& summary) {
  if (tensor.name == "token_embd.weight" && !summary.tied_embeddings) {
    const int64_t n_rows = tensor.n_rows();
    return n_rows > 0 ? tensor.n_bytes / (uint64_t)n_rows : 0;
  }
  if (summary.n_expert > 0 && tensor.name.find("_exps") != std::string::npos && !tensor.shape.empty() &&
      (uint64_t)tensor.shape.back() == summary.n_expert) {
    // The expert index is the slowest dimension, so each expert is one contiguous n_bytes/n_expert.
    return tensor.n_bytes / summary.n_expert * std::min(summary.n_expert_used, summary.n_expert);
  }
  return tensor.n_bytes;
}

std::span<const Bandwidth> reference_bandwidths() {
  static constexpr std::array kBandwidths = {
      Bandwidth{"DDR5-6400 dual channel", 100e9},
      Bandwidth{"RTX 4090 GDDR6X", 1.008e12},
      Bandwidth{"H100 SXM HBM3", 3.35e12},
      Bandwidth{"H200 HBM3e", 4.8e12},
  };
  return kBandwidths;
}

std::vector<Hyperparameter> hyperparameters(const gguf::File& file) {
  const std::string arch = file.architecture();
  if (arch.empty()) return {};
  const std::string prefix = arch + ".";
  std::vector<Hyperparameter> known(kKnownKeys.size());
  std::vector<Hyperparameter> unknown;
  for (const auto& [key, value] : file.metadata()) {
    if (!key.starts_with(prefix)) continue;
    const std::string_view suffix = std::string_view(key).substr(prefix.size());
    const auto it = std::find_if(kKnownKeys.begin(), kKnownKeys.end(),
                                 [&](const KnownKey& k) { return k.suffix == suffix; });
    if (it != kKnownKeys.end()) {
      known[(size_t)(it - kKnownKeys.begin())] = {key, std::string(it->label), &value};
    } else {
      unknown.push_back({key, std::string(suffix), &value});
    }
  }
  std::vector<Hyperparameter> out;
  for (auto& h : known)
    if (h.value) out.push_back(std::move(h));
  for (auto& h : unknown) out.push_back(std::move(h));
  return out;
}

std::string_view file_type_name(uint64_t file_type) {
  // Index = llama_ftype value (llama.h); retired values keep their names, gaps are "".
  static constexpr std::array<std::string_view, 39> kNames = {
      "F32",     "F16",     "Q4_0",    "Q4_1",   "Q4_1_SOME_F16", "Q4_2",     "Q4_3",     "Q8_0",
      "Q5_0",    "Q5_1",    "Q2_K",    "Q3_K_S", "Q3_K_M",        "Q3_K_L",   "Q4_K_S",   "Q4_K_M",
      "Q5_K_S",  "Q5_K_M",  "Q6_K",    "IQ2_XXS", "IQ2_XS",       "Q2_K_S",   "IQ3_XS",   "IQ3_XXS",
      "IQ1_S",   "IQ4_NL",  "IQ3_S",   "IQ3_M",  "IQ2_S",         "IQ2_M",    "IQ4_XS",   "IQ1_M",
      "BF16",    "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",     "TQ2_0",    "MXFP4_MOE",
  };
  return file_type < kNames.size() ? kNames[file_type] : std::string_view();
}

TokenizerSummary tokenizer_summary(const gguf::File& file) {
  TokenizerSummary summary;
  constexpr std::string_view kGgml = "tokenizer.ggml.";
  constexpr std::string_view kTemplate = "tokenizer.chat_template";
  const std::vector<std::string>* tokens = nullptr;
  for (const auto& [key, value] : file.metadata()) {
    if (!key.starts_with("tokenizer.")) continue;
    summary.present = true;
    const bool is_string = value.type() == gguf::ValueType::STRING;
    if (key == kTemplate) {
      if (is_string) summary.chat_template_bytes = value.as_string().size();
      continue;
    }
    if (key.starts_with(kTemplate) && key.size() > kTemplate.size() && key[kTemplate.size()] == '.') {
      if (is_string) summary.named_chat_templates.emplace_back(key.substr(kTemplate.size() + 1), value.as_string().size());
      continue;
    }
    if (!key.starts_with(kGgml)) continue;
    const std::string_view name = std::string_view(key).substr(kGgml.size());
    if (name == "model" && is_string) {
      summary.model = value.as_string();
    } else if (name == "pre" && is_string) {
      summary.pre = value.as_string();
    } else if (name == "tokens" && value.is_array()) {
      summary.n_vocab = value.array_size();
      if (value.elem_type() == gguf::ValueType::STRING) tokens = &value.strings();
    } else if (name == "merges" && value.is_array()) {
      summary.n_merges = value.array_size();
    } else if (name == "scores") {
      summary.has_scores = true;
    } else if (name == "token_type") {
      summary.has_token_type = true;
    } else if (name.starts_with("add_") && value.type() == gguf::ValueType::BOOL) {
      summary.add_flags.emplace_back(name, value.as_bool());
    } else if (name.ends_with("_token_id") && value.is_integer()) {
      SpecialToken token;
      token.name = std::string(name.substr(0, name.size() - std::string_view("_token_id").size()));
      // as_int throws only for a UINT64 above INT64_MAX, which no vocabulary reaches.
      token.id = value.type() == gguf::ValueType::UINT64 && value.as_uint() > (uint64_t)INT64_MAX ? -1 : value.as_int();
      summary.special_tokens.push_back(std::move(token));
    }
  }
  if (tokens) {
    for (auto& token : summary.special_tokens)
      if (token.id >= 0 && (uint64_t)token.id < tokens->size()) token.text = (*tokens)[(size_t)token.id];
  }
  return summary;
}

}  // namespace velocity::tools
