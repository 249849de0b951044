// A tiny random llama (F32 weights, byte-level vocabulary with BOS/EOS/<|im_end|>) written with
// gguf::Writer, shared by the runtime tests (they cannot link synth, which lives above them).
#pragma once

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gguf/writer.h"

namespace velocity::runtime::testing {

namespace fs = std::filesystem;

constexpr int64_t kEmbd = 64, kLayers = 2, kHeads = 4, kHeadsKv = 2, kFf = 128;
constexpr int32_t kBos = 256, kEos = 257, kImEnd = 258;
constexpr int64_t kVocab = 260;  // 256 byte tokens, BOS, EOS (<|eot_id|>), <|im_end|>, <|extra|>

inline std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += (char)cp;
  } else if (cp < 0x800) {
    s += (char)(0xC0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3F));
  } else {
    s += (char)(0xE0 | (cp >> 12));
    s += (char)(0x80 | ((cp >> 6) & 0x3F));
    s += (char)(0x80 | (cp & 0x3F));
  }
  return s;
}

// GPT-2's bytes_to_unicode, in its order: token i stands for byte bs[i].
inline std::vector<std::string> byte_level_tokens() {
  std::vector<int> bs, cs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  }
  std::vector<std::string> tokens;
  for (int c : cs) tokens.push_back(utf8((uint32_t)c));
  return tokens;
}

// Writes a llama GGUF with uniform random F32 weights; returns its path.
inline std::string write_tiny_llama(const fs::path& path, uint64_t seed) {
  gguf::Writer w(path.string());
  w.set("general.architecture", gguf::Value::string("llama"));
  w.set("llama.context_length", gguf::Value::scalar<uint32_t>(256));
  w.set("llama.embedding_length", gguf::Value::scalar<uint32_t>(kEmbd));
  w.set("llama.block_count", gguf::Value::scalar<uint32_t>(kLayers));
  w.set("llama.feed_forward_length", gguf::Value::scalar<uint32_t>(kFf));
  w.set("llama.attention.head_count", gguf::Value::scalar<uint32_t>(kHeads));
  w.set("llama.attention.head_count_kv", gguf::Value::scalar<uint32_t>(kHeadsKv));
  w.set("llama.attention.layer_norm_rms_epsilon", gguf::Value::scalar<float>(1e-5f));
  w.set("llama.rope.freq_base", gguf::Value::scalar<float>(10000.0f));
  std::vector<std::string> tokens = byte_level_tokens();
  std::vector<int32_t> types(256, 1);
  for (const char* special : {"<|begin_of_text|>", "<|eot_id|>", "<|im_end|>", "<|extra|>"}) {
    tokens.emplace_back(special);
    types.push_back(3);  // control
  }
  w.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
  w.set("tokenizer.ggml.pre", gguf::Value::string("default"));
  w.set("tokenizer.ggml.tokens", gguf::Value::array(tokens));
  w.set("tokenizer.ggml.token_type", gguf::Value::array(types));
  w.set("tokenizer.ggml.bos_token_id", gguf::Value::scalar<uint32_t>(kBos));
  w.set("tokenizer.ggml.eos_token_id", gguf::Value::scalar<uint32_t>(kEos));
  w.set("tokenizer.ggml.add_bos_token", gguf::Value::scalar<bool>(true));

  struct T {
    std::string name;
    std::vector<int64_t> shape;
    float scale;  // uniform in [-scale, scale]; 0: all ones (norms)
  };
  const int64_t hd = kEmbd / kHeads;
  std::vector<T> ts = {{"token_embd.weight", {kEmbd, kVocab}, 1.0f}, {"output_norm.weight", {kEmbd}, 0},
                       {"output.weight", {kEmbd, kVocab}, 0.5f}};
  for (int64_t il = 0; il < kLayers; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    const float in = 1.0f / std::sqrt((float)kEmbd), ff = 1.0f / std::sqrt((float)kFf);
    ts.push_back({p + "attn_norm.weight", {kEmbd}, 0});
    ts.push_back({p + "attn_q.weight", {kEmbd, kHeads * hd}, 2 * in});
    ts.push_back({p + "attn_k.weight", {kEmbd, kHeadsKv * hd}, 2 * in});
    ts.push_back({p + "attn_v.weight", {kEmbd, kHeadsKv * hd}, 2 * in});
    ts.push_back({p + "attn_output.weight", {kHeads * hd, kEmbd}, in});
    ts.push_back({p + "ffn_norm.weight", {kEmbd}, 0});
    ts.push_back({p + "ffn_gate.weight", {kEmbd, kFf}, 2 * in});
    ts.push_back({p + "ffn_up.weight", {kEmbd, kFf}, 2 * in});
    ts.push_back({p + "ffn_down.weight", {kFf, kEmbd}, ff});
  }
  for (const T& t : ts) w.add_tensor(t.name, DType::F32, t.shape);
  w.begin_data();
  std::mt19937_64 rng(seed);
  for (const T& t : ts) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<float> v((size_t)n, 1.0f);
    if (t.scale > 0) {
      std::uniform_real_distribution<float> u(-t.scale, t.scale);
      for (float& x : v) x = u(rng);
    }
    w.write_tensor(t.name, {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)});
  }
  w.finish();
  return path.string();
}


}  // namespace velocity::runtime::testing
