// `velocity inspect`: what a GGUF model is and what it costs to run — architecture,
// hyperparameters, tokenizer summary, tensor table, totals, parameters, bits per weight, and the
// bytes a decoded token reads (for MoE, only the active experts).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "gguf/file.h"

namespace velocity::tools {

// Tensors, elements and bytes of one weight type.
struct TypeTotals {
  DType type = DType::F32;
  uint64_t n_tensors = 0;
  uint64_t n_params = 0;
  uint64_t n_bytes = 0;
};

struct ModelSummary {
  std::string architecture;
  uint64_t n_params = 0;             // elements of all tensors
  uint64_t n_bytes = 0;              // tensor data bytes
  double bits_per_weight = 0;        // 8 * n_bytes / n_params
  uint64_t bytes_per_token = 0;      // weight bytes read to decode one token (batch 1)
  uint64_t n_expert = 0;             // 0 for dense models
  uint64_t n_expert_used = 0;

  uint64_t n_tensors = 0;
  uint64_t n_shards = 1;
  uint64_t n_file_bytes = 0;         // all shards, as on disk
  bool tied_embeddings = false;      // no output.weight: token_embd is also the output head
  std::optional<uint64_t> file_type; // general.file_type (see file_type_name), when present
  std::vector<TypeTotals> types;     // one entry per weight type present, by type id
};

// Bytes one decoded token reads, at batch 1:
//   - every tensor once, except
//   - token_embd.weight: one row (the token's embedding) — or all of it when there is no
//     output.weight, because the output head then reads the tied embedding in full;
//   - expert tensors (name contains "_exps", last dimension = n_expert): n_expert_used /
//     n_expert of their bytes, since only the routed experts are read.
ModelSummary summarize(const gguf::File& file);

// Bytes of `tensor` that one decoded token reads (the rule above).
uint64_t tensor_bytes_per_token(const gguf::TensorInfo& tensor, const ModelSummary& summary);

// Memory bandwidths the decode bound is reported at (decimal units, as vendors quote them).
struct Bandwidth {
  std::string_view name;         // e.g. "H100 SXM HBM3"
  double bytes_per_second = 0;
};
std::span<const Bandwidth> reference_bandwidths();

// One `<arch>.*` key with a readable label ("attention.head_count" -> "heads"); known keys come
// first in a fixed order (context, embedding, layers, …), then unknown ones in file order.
struct Hyperparameter {
  std::string key;               // full key, e.g. "llama.attention.head_count"
  std::string label;             // e.g. "heads"
  const gguf::Value* value = nullptr;  // into the File
};
std::vector<Hyperparameter> hyperparameters(const gguf::File& file);

// What the tokenizer metadata says, without building a tokenizer.
struct SpecialToken {
  std::string name;              // "bos", "eos", "padding", … (key tokenizer.ggml.<name>_token_id)
  int64_t id = -1;
  std::optional<std::string> text;  // the token's text when the id is inside the vocabulary
};
struct TokenizerSummary {
  bool present = false;          // any tokenizer.* key
  std::string model;             // tokenizer.ggml.model ("gpt2", "llama", …)
  std::string pre;               // tokenizer.ggml.pre
  uint64_t n_vocab = 0;          // entries of tokenizer.ggml.tokens
  uint64_t n_merges = 0;         // entries of tokenizer.ggml.merges
  bool has_scores = false;
  bool has_token_type = false;
  std::vector<SpecialToken> special_tokens;
  std::vector<std::pair<std::string, bool>> add_flags;  // "add_bos_token" -> true, …
  std::optional<uint64_t> chat_template_bytes;          // tokenizer.chat_template
  std::vector<std::pair<std::string, uint64_t>> named_chat_templates;  // tokenizer.chat_template.<name>
};
TokenizerSummary tokenizer_summary(const gguf::File& file);

// Name of a general.file_type value (llama.cpp's llama_ftype without its LLAMA_FTYPE_MOSTLY_
// prefix: "Q4_K_M", "MXFP4_MOE", "F32" for ALL_F32 …); "" for values no GGUF tool assigns.
std::string_view file_type_name(uint64_t file_type);

struct InspectOptions {
  bool json = false;
  bool all_metadata = false;  // print every metadata key in full (long arrays summarised otherwise)
};

void inspect(const gguf::File& file, const InspectOptions& options, std::ostream& out);

// Everything `inspect` prints, as JSON:
//   file: {path, version, alignment, header_only, n_shards, n_file_bytes}
//   shards: [{path, version, alignment, data_offset, file_size, n_tensors}]
//   architecture, n_kv, n_tensors,
//   metadata: {key: {index, type, [elem_type], value}} — value typed (numbers, strings, bools,
//     arrays, arrays of arrays), complete (no array is shortened); NaN/inf floats become null
//   hyperparameters: [{key, label, value}], tokenizer: {...},
//   tensors: [{name, type, type_id, shape, n_elements, n_bytes, shard, offset, file_offset,
//     bytes_per_token}]
//   summary: {n_params, n_bytes, bits_per_weight, bytes_per_token, n_expert, n_expert_used,
//     n_tensors, n_shards, n_file_bytes, tied_embeddings, types: [...],
//     decode_bound: [{name, bytes_per_second, tokens_per_second}]}
nlohmann::json inspect_json(const gguf::File& file);

// A metadata value as typed JSON (arrays in full).
nlohmann::json value_json(const gguf::Value& value);

}  // namespace velocity::tools
