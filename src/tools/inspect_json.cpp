// `velocity inspect --json`: the text report's content as JSON, for scripts and for the
// compatibility test, which compares it value by value with another GGUF reader. So nothing is
// shortened here: the tokenizer arrays are complete, and integers keep their exact value (JSON
// numbers; a reader in a language with only doubles loses precision above 2^53).
#include <cmath>

#include "tools/inspect.h"

namespace velocity::tools {
namespace {

using nlohmann::json;

json float_json(double d) {
  // JSON has no NaN or infinity.
  return std::isfinite(d) ? json(d) : json(nullptr);
}

json numeric_array_json(const gguf::Value& value) {
  using gguf::ValueType;
  json out = json::array();
  switch (value.elem_type()) {
    case ValueType::FLOAT32:
      for (float f : value.array_as<float>()) out.push_back(float_json(f));
      break;
    case ValueType::FLOAT64:
      for (double d : value.array_as<double>()) out.push_back(float_json(d));
      break;
    case ValueType::BOOL:
      for (uint8_t b : value.packed()) out.push_back(b != 0);
      break;
    case ValueType::UINT64:
      for (uint64_t u : value.array_as<uint64_t>()) out.push_back(u);
      break;
    default:
      for (int64_t i : value.int_array()) out.push_back(i);
  }
  return out;
}

json tokenizer_json(const TokenizerSummary& tok) {
  json out;
  out["present"] = tok.present;
  out["model"] = tok.model;
  out["pre"] = tok.pre;
  out["n_vocab"] = tok.n_vocab;
  out["n_merges"] = tok.n_merges;
  out["has_scores"] = tok.has_scores;
  out["has_token_type"] = tok.has_token_type;
  out["special_tokens"] = json::array();
  for (const auto& token : tok.special_tokens)
    out["special_tokens"].push_back(
        {{"name", token.name}, {"id", token.id}, {"text", token.text ? json(*token.text) : json(nullptr)}});
  out["add_flags"] = json::object();
  for (const auto& [name, flag] : tok.add_flags) out["add_flags"][name] = flag;
  out["chat_template_bytes"] = tok.chat_template_bytes ? json(*tok.chat_template_bytes) : json(nullptr);
  out["named_chat_templates"] = json::object();
  for (const auto& [name, bytes] : tok.named_chat_templates) out["named_chat_templates"][name] = bytes;
  return out;
}

json summary_json(const ModelSummary& s) {
  json out;
  out["architecture"] = s.architecture;
  out["n_params"] = s.n_params;
  out["n_bytes"] = s.n_bytes;
  out["bits_per_weight"] = s.bits_per_weight;
  out["bytes_per_token"] = s.bytes_per_token;
  out["n_expert"] = s.n_expert;
  out["n_expert_used"] = s.n_expert_used;
  out["n_tensors"] = s.n_tensors;
  out["n_shards"] = s.n_shards;
  out["n_file_bytes"] = s.n_file_bytes;
  out["tied_embeddings"] = s.tied_embeddings;
  out["file_type"] = s.file_type ? json(file_type_name(*s.file_type)) : json(nullptr);
  out["types"] = json::array();
  for (const auto& t : s.types)
    out["types"].push_back({{"type", dtype_name(t.type)},
                            {"type_id", (uint32_t)t.type},
                            {"n_tensors", t.n_tensors},
                            {"n_params", t.n_params},
                            {"n_bytes", t.n_bytes}});
  out["decode_bound"] = json::array();
  for (const auto& bw : reference_bandwidths())
    out["decode_bound"].push_back(
        {{"name", bw.name},
         {"bytes_per_second", bw.bytes_per_second},
         {"tokens_per_second", s.bytes_per_token ? json(bw.bytes_per_second / (double)s.bytes_per_token) : json(nullptr)}});
  return out;
}

}  // namespace

json value_json(const gguf::Value& value) {
  using gguf::ValueType;
  switch (value.type()) {
    case ValueType::UINT8: return value.get<uint8_t>();
    case ValueType::INT8: return value.get<int8_t>();
    case ValueType::UINT16: return value.get<uint16_t>();
    case ValueType::INT16: return value.get<int16_t>();
    case ValueType::UINT32: return value.get<uint32_t>();
    case ValueType::INT32: return value.get<int32_t>();
    case ValueType::UINT64: return value.get<uint64_t>();
    case ValueType::INT64: return value.get<int64_t>();
    case ValueType::FLOAT32: return float_json(value.get<float>());
    case ValueType::FLOAT64: return float_json(value.get<double>());
    case ValueType::BOOL: return value.get<bool>();
    case ValueType::STRING: return value.as_string();
    case ValueType::ARRAY: break;
  }
  if (value.elem_type() == ValueType::STRING) return value.strings();
  if (value.elem_type() == ValueType::ARRAY) {
    json out = json::array();
    for (const auto& item : value.arrays()) out.push_back(value_json(item));
    return out;
  }
  return numeric_array_json(value);
}

json inspect_json(const gguf::File& file) {
  const ModelSummary summary = summarize(file);
  json out;

  const auto& first = file.shards().at(0);
  out["file"] = {{"path", first.path},
                 {"version", file.version()},
                 {"alignment", file.alignment()},
                 {"header_only", file.header_only()},
                 {"n_shards", summary.n_shards},
                 {"n_file_bytes", summary.n_file_bytes}};
  std::vector<uint64_t> shard_tensors(file.shards().size(), 0);
  for (const auto& tensor : file.tensors()) shard_tensors.at(tensor.shard) += 1;
  out["shards"] = json::array();
  for (size_t i = 0; i < file.shards().size(); ++i) {
    const auto& shard = file.shards()[i];
    out["shards"].push_back({{"path", shard.path},
                             {"version", shard.version},
                             {"alignment", shard.alignment},
                             {"data_offset", shard.data_offset},
                             {"file_size", shard.file_size},
                             {"n_tensors", shard_tensors[i]}});
  }
  out["architecture"] = summary.architecture;
  out["n_kv"] = file.metadata().size();
  out["n_tensors"] = summary.n_tensors;

  json metadata = json::object();
  uint64_t index = 0;
  for (const auto& [key, value] : file.metadata()) {
    json entry = {{"index", index++}, {"type", gguf::value_type_name(value.type())}};
    if (value.is_array()) entry["elem_type"] = gguf::value_type_name(value.elem_type());
    entry["value"] = value_json(value);
    metadata[key] = std::move(entry);
  }
  out["metadata"] = std::move(metadata);

  out["hyperparameters"] = json::array();
  for (const auto& h : hyperparameters(file))
    out["hyperparameters"].push_back({{"key", h.key}, {"label", h.label}, {"value", value_json(*h.value)}});
  out["tokenizer"] = tokenizer_json(tokenizer_summary(file));

  json tensors = json::array();
  for (const auto& tensor : file.tensors()) {
    tensors.push_back({{"name", tensor.name},
                       {"type", dtype_name(tensor.type)},
                       {"type_id", (uint32_t)tensor.type},
                       {"shape", tensor.shape},
                       {"n_elements", tensor.n_elements},
                       {"n_bytes", tensor.n_bytes},
                       {"shard", tensor.shard},
                       {"offset", tensor.offset},
                       {"file_offset", tensor.file_offset},
                       {"bytes_per_token", tensor_bytes_per_token(tensor, summary)}});
  }
  out["tensors"] = std::move(tensors);
  out["summary"] = summary_json(summary);
  return out;
}

}  // namespace velocity::tools
