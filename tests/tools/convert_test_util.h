// Tiny Hugging Face model directories for the convert tests: a safetensors writer (format as
// safetensors.h describes it), random weights, config.json and a minimal byte-level BPE
// tokenizer.json. Every tensor's float values (after rounding to its stored dtype) are kept, so
// tests can compare the GGUF against the source element by element.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/fp16.h"

namespace velocity::tools::testing {

namespace fs = std::filesystem;
using nlohmann::json;

struct HfTensor {
  std::string dtype = "F32";      // F32, F16, BF16 (values rounded to it), or I32 (raw zeros)
  std::vector<int64_t> shape;     // PyTorch order
  std::vector<float> values;      // as stored (already rounded to dtype)
  int64_t n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

inline float round_to(const std::string& dtype, float x) {
  if (dtype == "F16") return fp16_to_fp32(fp32_to_fp16(x));
  if (dtype == "BF16") return bf16_to_fp32(fp32_to_bf16(x));
  return x;
}

// Writes `tensors` (name -> tensor) as one safetensors file, in name order.
inline void write_safetensors(const fs::path& path, const std::map<std::string, HfTensor>& tensors) {
  json header = json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    const size_t begin = data.size();
    for (float v : t.values) {
      if (t.dtype == "F32") {
        data.append(reinterpret_cast<const char*>(&v), 4);
      } else if (t.dtype == "F16" || t.dtype == "BF16") {
        const uint16_t h = t.dtype == "F16" ? fp32_to_fp16(v) : fp32_to_bf16(v);
        data.append(reinterpret_cast<const char*>(&h), 2);
      } else {  // I32
        data.append(4, '\0');
      }
    }
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  header["__metadata__"] = {{"format", "pt"}};
  const std::string h = header.dump();
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << h << data;
}

// A byte-level BPE tokenizer.json of kTinyTokenizerSize tokens: 8 pieces, then 2 special tokens.
inline std::string tiny_tokenizer_json() {
  return R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"ab":3,"bc":4,"abc":5,"Ġ":6,"Ġa":7},
    "merges":["a b","b c","ab c","Ġ a"]},
    "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},
    "decoder":{"type":"ByteLevel"},
    "added_tokens":[{"id":8,"content":"<|bos|>","special":true},{"id":9,"content":"<|eos|>","special":true}]})";
}
constexpr int64_t kTinyTokenizerSize = 10;

// A Hugging Face model directory under construction.
class HfDir {
 public:
  explicit HfDir(fs::path dir) : dir_(std::move(dir)) {}

  json config;                               // written as config.json
  std::map<std::string, HfTensor> tensors;   // written as model.safetensors (or shards)

  // Adds a tensor of random values in [-1, 1) stored as `dtype`.
  void add(const std::string& name, std::vector<int64_t> shape, const std::string& dtype = "F32") {
    HfTensor t;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.values.resize(static_cast<size_t>(t.n_elements()));
    for (float& v : t.values) v = round_to(dtype, next_random());
    tensors[name] = std::move(t);
  }

  // Writes config.json, tokenizer.json and the weights (`n_shards` > 1: sharded with an index).
  void write(int n_shards = 1) const {
    fs::create_directories(dir_);
    std::ofstream(dir_ / "config.json") << config.dump(2);
    std::ofstream(dir_ / "tokenizer.json") << tiny_tokenizer_json();
    if (n_shards == 1) {
      write_safetensors(dir_ / "model.safetensors", tensors);
      return;
    }
    std::vector<std::map<std::string, HfTensor>> shards(static_cast<size_t>(n_shards));
    json weight_map = json::object();
    size_t i = 0;
    for (const auto& [name, t] : tensors) {
      const size_t shard = i++ % shards.size();
      shards[shard][name] = t;
      weight_map[name] = shard_name(shard, shards.size());
    }
    for (size_t s = 0; s < shards.size(); ++s) write_safetensors(dir_ / shard_name(s, shards.size()), shards[s]);
    std::ofstream(dir_ / "model.safetensors.index.json") << json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump();
  }

  const fs::path& path() const { return dir_; }

 private:
  static std::string shard_name(size_t i, size_t n) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    return buf;
  }
  float next_random() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<float>((state_ >> 40) & 0xffffff) / static_cast<float>(1 << 23) - 1.0f;
  }

  fs::path dir_;
  uint64_t state_ = 0x9e3779b97f4a7c15ULL;
};

// Hyperparameters of the tiny test models.
struct TinySpec {
  std::string hf_arch = "LlamaForCausalLM";
  int64_t n_vocab = 40, n_embd = 64, n_layer = 2, n_ff = 80, n_head = 4, n_head_kv = 2;
  int64_t head_dim = 0;      // 0: not in config.json (n_embd / n_head)
  int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0;
  bool tied = false;
  std::string dtype = "F32";  // dtype of the 2-D weights (norms are always F32)

  int64_t hd() const { return head_dim ? head_dim : n_embd / n_head; }
};

// A complete tiny checkpoint of `spec`'s architecture.
inline void fill_tiny(HfDir& d, const TinySpec& s) {
  const bool mixtral = s.hf_arch == "MixtralForCausalLM";
  const bool qwen3moe = s.hf_arch == "Qwen3MoeForCausalLM";
  const bool qwen3 = s.hf_arch == "Qwen3ForCausalLM" || qwen3moe;
  d.config = {{"architectures", {s.hf_arch}}, {"vocab_size", s.n_vocab}, {"hidden_size", s.n_embd},
              {"num_hidden_layers", s.n_layer}, {"intermediate_size", s.n_ff}, {"num_attention_heads", s.n_head},
              {"num_key_value_heads", s.n_head_kv}, {"max_position_embeddings", 4096}, {"rms_norm_eps", 1e-5},
              {"rope_theta", 500000.0}, {"tie_word_embeddings", s.tied}};
  if (s.head_dim) d.config["head_dim"] = s.head_dim;
  if (mixtral) {
    d.config["num_local_experts"] = s.n_expert;
    d.config["num_experts_per_tok"] = s.n_expert_used;
  }
  if (qwen3moe) {
    d.config["num_experts"] = s.n_expert;
    d.config["num_experts_per_tok"] = s.n_expert_used;
    d.config["moe_intermediate_size"] = s.n_ff_exp;
    d.config["norm_topk_prob"] = true;
  }
  const int64_t n_q = s.n_head * s.hd(), n_kv = s.n_head_kv * s.hd();
  d.add("model.embed_tokens.weight", {s.n_vocab, s.n_embd}, s.dtype);
  d.add("model.norm.weight", {s.n_embd});
  if (!s.tied) d.add("lm_head.weight", {s.n_vocab, s.n_embd}, s.dtype);
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = "model.layers." + std::to_string(il) + ".";
    d.add(p + "input_layernorm.weight", {s.n_embd});
    d.add(p + "post_attention_layernorm.weight", {s.n_embd});
    d.add(p + "self_attn.q_proj.weight", {n_q, s.n_embd}, s.dtype);
    d.add(p + "self_attn.k_proj.weight", {n_kv, s.n_embd}, s.dtype);
    d.add(p + "self_attn.v_proj.weight", {n_kv, s.n_embd}, s.dtype);
    d.add(p + "self_attn.o_proj.weight", {s.n_embd, n_q}, s.dtype);
    if (s.hf_arch == "Qwen2ForCausalLM") {
      d.add(p + "self_attn.q_proj.bias", {n_q}, s.dtype);
      d.add(p + "self_attn.k_proj.bias", {n_kv}, s.dtype);
      d.add(p + "self_attn.v_proj.bias", {n_kv}, s.dtype);
    }
    if (qwen3) {
      d.add(p + "self_attn.q_norm.weight", {s.hd()});
      d.add(p + "self_attn.k_norm.weight", {s.hd()});
    }
    if (mixtral) {
      d.add(p + "block_sparse_moe.gate.weight", {s.n_expert, s.n_embd}, s.dtype);
      for (int64_t e = 0; e < s.n_expert; ++e) {
        const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
        d.add(x + "w1.weight", {s.n_ff, s.n_embd}, s.dtype);
        d.add(x + "w2.weight", {s.n_embd, s.n_ff}, s.dtype);
        d.add(x + "w3.weight", {s.n_ff, s.n_embd}, s.dtype);
      }
    } else if (qwen3moe) {
      d.add(p + "mlp.gate.weight", {s.n_expert, s.n_embd}, s.dtype);
      for (int64_t e = 0; e < s.n_expert; ++e) {
        const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
        d.add(x + "gate_proj.weight", {s.n_ff_exp, s.n_embd}, s.dtype);
        d.add(x + "up_proj.weight", {s.n_ff_exp, s.n_embd}, s.dtype);
        d.add(x + "down_proj.weight", {s.n_embd, s.n_ff_exp}, s.dtype);
      }
    } else {
      d.add(p + "mlp.gate_proj.weight", {s.n_ff, s.n_embd}, s.dtype);
      d.add(p + "mlp.up_proj.weight", {s.n_ff, s.n_embd}, s.dtype);
      d.add(p + "mlp.down_proj.weight", {s.n_embd, s.n_ff}, s.dtype);
    }
  }
}

}  // namespace velocity::tools::testing
