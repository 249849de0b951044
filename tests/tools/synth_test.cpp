// synth on the tiny preset of every architecture, read back with gguf::File: tensor names,
// shapes and types against shapes written out here from llama.cpp's loader (load_tensors),
// metadata keys and their GGUF types, the vocabulary, value sanity through dequantize_row,
// determinism, split output and errors.
#include "tools/synth.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "core/error.h"
#include "core/quant.h"
#include "gguf/file.h"
#include "synth_test_util.h"
#include "tools/synth_arch.h"

namespace velocity::tools {
namespace {

using gguf::ValueType;
using testing::n_params;
using testing::shape_of;
using testing::SynthDirTest;
using testing::type_of;
using testing::u32_of;
using Shape = std::vector<int64_t>;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void expect_key_type(const gguf::File& f, const std::string& key, ValueType type) {
  const gguf::Value* v = f.find(key);
  ASSERT_NE(v, nullptr) << "missing key " << key;
  EXPECT_EQ(v->type(), type) << key;
}

// Keys every architecture has, with the types gguf-py writes.
void expect_common_keys(const gguf::File& f, const std::string& arch) {
  expect_key_type(f, "general.architecture", ValueType::STRING);
  EXPECT_EQ(f.architecture(), arch);
  expect_key_type(f, "general.name", ValueType::STRING);
  expect_key_type(f, "general.file_type", ValueType::UINT32);
  expect_key_type(f, "general.quantization_version", ValueType::UINT32);
  for (const char* k : {"block_count", "context_length", "embedding_length", "feed_forward_length",
                        "attention.head_count", "attention.head_count_kv"})
    expect_key_type(f, arch + "." + k, ValueType::UINT32);
  expect_key_type(f, arch + ".attention.layer_norm_rms_epsilon", ValueType::FLOAT32);
  expect_key_type(f, arch + ".rope.freq_base", ValueType::FLOAT32);
  expect_key_type(f, "tokenizer.ggml.model", ValueType::STRING);
  EXPECT_EQ(f.at("tokenizer.ggml.model").as_string(), "gpt2");
  expect_key_type(f, "tokenizer.ggml.pre", ValueType::STRING);
  expect_key_type(f, "tokenizer.ggml.tokens", ValueType::ARRAY);
  EXPECT_EQ(f.at("tokenizer.ggml.tokens").elem_type(), ValueType::STRING);
  expect_key_type(f, "tokenizer.ggml.token_type", ValueType::ARRAY);
  EXPECT_EQ(f.at("tokenizer.ggml.token_type").elem_type(), ValueType::INT32);
  expect_key_type(f, "tokenizer.ggml.merges", ValueType::ARRAY);
  expect_key_type(f, "tokenizer.ggml.bos_token_id", ValueType::UINT32);
  expect_key_type(f, "tokenizer.ggml.eos_token_id", ValueType::UINT32);
  expect_key_type(f, "tokenizer.ggml.add_bos_token", ValueType::BOOL);
}

// Vocabulary: as many tokens as token_embd rows (and <arch>.vocab_size where written); each
// merge "A B" has both parts in the vocabulary and A+B is a token; specials are CONTROL.
void expect_valid_vocab(const gguf::File& f, const std::string& arch) {
  const auto& tokens = f.at("tokenizer.ggml.tokens").strings();
  const auto types = f.at("tokenizer.ggml.token_type").array_as<int32_t>();
  ASSERT_EQ(types.size(), tokens.size());
  EXPECT_EQ(static_cast<int64_t>(tokens.size()), shape_of(f, "token_embd.weight").at(1));
  EXPECT_EQ(static_cast<int64_t>(tokens.size()), shape_of(f, "output.weight").at(1));
  if (const gguf::Value* vs = f.find(arch + ".vocab_size")) {
    EXPECT_EQ(vs->type(), ValueType::UINT32);
    EXPECT_EQ(vs->get<uint32_t>(), tokens.size());
  }
  const std::set<std::string> set(tokens.begin(), tokens.end());
  EXPECT_EQ(set.size(), tokens.size()) << "duplicate tokens";
  const auto& merges = f.at("tokenizer.ggml.merges").strings();
  EXPECT_GT(merges.size(), 100u);
  for (const auto& m : merges) {
    const size_t sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos) << m;
    ASSERT_EQ(m.find(' ', sp + 1), std::string::npos) << m;
    const std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    ASSERT_TRUE(set.count(a)) << m;
    ASSERT_TRUE(set.count(b)) << m;
    ASSERT_TRUE(set.count(a + b)) << m;
  }
  const uint32_t bos = f.at("tokenizer.ggml.bos_token_id").get<uint32_t>();
  const uint32_t eos = f.at("tokenizer.ggml.eos_token_id").get<uint32_t>();
  ASSERT_LT(bos, tokens.size());
  ASSERT_LT(eos, tokens.size());
  EXPECT_EQ(types[bos], synthetic::kTokenControl);
  EXPECT_EQ(types[eos], synthetic::kTokenControl);
  for (int32_t t : types) EXPECT_TRUE(t == 1 || t == 3 || t == 4 || t == 5) << t;
}

// Every value finite and of a sane magnitude; weight matrices with an RMS near 0.02, norms ~1.
void expect_sane_values(const gguf::File& f) {
  std::vector<float> row;
  for (const auto& t : f.tensors()) {
    ASSERT_TRUE(dtype_info(t.type).has_reference) << t.name;
    ASSERT_NE(t.data, nullptr) << t.name;
    const int64_t n_cols = t.shape.at(0);
    const int64_t row_bytes = dtype_row_bytes(t.type, n_cols);
    row.resize(static_cast<size_t>(n_cols));
    double sum_sq = 0, max_abs = 0, sum = 0;
    for (int64_t r = 0; r < t.n_rows(); ++r) {
      dequantize_row(t.type, t.data + r * row_bytes, row.data(), n_cols);
      for (float v : row) {
        ASSERT_TRUE(std::isfinite(v)) << t.name;
        sum_sq += double(v) * v;
        sum += v;
        max_abs = std::max(max_abs, double(std::fabs(v)));
      }
    }
    const double n = static_cast<double>(t.n_elements);
    const double rms = std::sqrt(sum_sq / n);
    const std::string& name = t.name;
    if (name == "rope_freqs.weight") {
      EXPECT_GE(max_abs, 1.0) << name;
      EXPECT_LE(max_abs, 8.0) << name;
    } else if (name.find("norm.weight") != std::string::npos) {
      EXPECT_NEAR(rms, 1.0, 0.06) << name;
      EXPECT_LE(max_abs, 1.06) << name;
    } else if (name.find(".bias") != std::string::npos) {
      EXPECT_LE(max_abs, 0.021) << name;
    } else if (name.find("attn_sinks") != std::string::npos) {
      EXPECT_LE(max_abs, 0.51) << name;
    } else {
      EXPECT_GT(rms, 0.008) << name << " " << dtype_name(t.type);
      EXPECT_LT(rms, 0.035) << name << " " << dtype_name(t.type);
      EXPECT_LT(max_abs, 0.25) << name << " " << dtype_name(t.type);
      EXPECT_LT(std::fabs(sum / n), 0.004) << name << " mean, " << dtype_name(t.type);
    }
  }
}

// The file's tensors are exactly the architecture's list, in order, with data.
void expect_tensor_list(const gguf::File& f, const std::string& arch) {
  const auto config = synthetic::preset_config(arch, "tiny");
  const auto specs = synthetic::model_tensors(config);
  ASSERT_EQ(f.tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(f.tensors()[i].name, specs[i].name);
    EXPECT_EQ(f.tensors()[i].shape, specs[i].shape) << specs[i].name;
  }
}

class SynthTiny : public SynthDirTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(SynthTiny, LoadsWithTheArchitecturesTensorsMetadataAndVocab) {
  const std::string arch = GetParam();
  const SynthResult r = run(arch, "tiny", "Q8_0", "m.gguf");
  ASSERT_EQ(r.paths.size(), 1u);
  const gguf::File f = gguf::File::open(r.paths[0]);
  EXPECT_FALSE(f.header_only());
  EXPECT_EQ(f.tensors().size(), r.n_tensors);
  EXPECT_EQ(n_params(f), r.n_params);
  EXPECT_EQ(testing::n_data_bytes(f), r.n_bytes);
  EXPECT_LT(std::filesystem::file_size(r.paths[0]), 16u << 20) << "tiny means a few MB";
  expect_common_keys(f, arch);
  expect_valid_vocab(f, arch);
  expect_tensor_list(f, arch);
  EXPECT_EQ(u32_of(f, "general.file_type"), 7u);  // LLAMA_FTYPE_MOSTLY_Q8_0
  for (const auto& t : f.tensors()) {
    const bool matrix = t.shape.size() >= 2 && t.name.ends_with("weight") && t.name.find("ffn_gate_inp") == std::string::npos;
    EXPECT_EQ(t.type, matrix ? DType::Q8_0 : DType::F32) << t.name;
  }
  expect_sane_values(f);
}

INSTANTIATE_TEST_SUITE_P(Synth, SynthTiny,
                         ::testing::Values("llama", "qwen2", "qwen3", "qwen3moe", "deepseek2", "gpt-oss"),
                         [](const auto& param_info) {
                           std::string s = param_info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

// Shapes written out from llama.cpp's load_tensors for each tiny preset's hyperparameters.
TEST_F(SynthDirTest, SynthTinyShapesFollowLlamaCpp) {
  {
    // llama: n_embd 256, 4 heads of 64, 2 KV heads, n_ff 768, vocab 1024 BPE + 256 specials.
    const auto f = gguf::File::open(run("llama", "tiny", "F16", "llama.gguf").paths[0]);
    EXPECT_EQ(shape_of(f, "token_embd.weight"), (Shape{256, 1280}));
    EXPECT_EQ(shape_of(f, "output.weight"), (Shape{256, 1280}));
    EXPECT_EQ(shape_of(f, "rope_freqs.weight"), (Shape{32}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_q.weight"), (Shape{256, 256}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_k.weight"), (Shape{256, 128}));
    EXPECT_EQ(shape_of(f, "blk.3.attn_v.weight"), (Shape{256, 128}));
    EXPECT_EQ(shape_of(f, "blk.3.attn_output.weight"), (Shape{256, 256}));
    EXPECT_EQ(shape_of(f, "blk.1.ffn_gate.weight"), (Shape{256, 768}));
    EXPECT_EQ(shape_of(f, "blk.1.ffn_down.weight"), (Shape{768, 256}));
    EXPECT_EQ(u32_of(f, "llama.rope.dimension_count"), 64u);
    EXPECT_EQ(u32_of(f, "llama.vocab_size"), 1280u);
    EXPECT_EQ(f.find_tensor("blk.4.attn_q.weight"), nullptr);
    EXPECT_EQ(type_of(f, "blk.0.attn_q.weight"), DType::F16);
    EXPECT_EQ(u32_of(f, "general.file_type"), 1u);
    // The Llama 3.1 factors: 1 for high frequencies, 8 for the lowest.
    const auto* rf = f.find_tensor("rope_freqs.weight");
    ASSERT_NE(rf, nullptr);
    const float* v = reinterpret_cast<const float*>(rf->data);
    EXPECT_EQ(v[0], 1.0f);
    EXPECT_EQ(v[31], 8.0f);
  }
  {
    const auto f = gguf::File::open(run("qwen2", "tiny", "F16", "qwen2.gguf").paths[0]);
    EXPECT_EQ(shape_of(f, "blk.0.attn_q.bias"), (Shape{256}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_k.bias"), (Shape{128}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_v.bias"), (Shape{128}));
    EXPECT_EQ(f.find_tensor("blk.0.attn_output.bias"), nullptr);
    EXPECT_EQ(f.find("qwen2.attention.key_length"), nullptr);  // Qwen2.5 config has no head_dim
    EXPECT_EQ(f.at("tokenizer.ggml.pre").as_string(), "qwen2");
  }
  {
    const auto f = gguf::File::open(run("qwen3", "tiny", "F16", "qwen3.gguf").paths[0]);
    EXPECT_EQ(shape_of(f, "blk.0.attn_q_norm.weight"), (Shape{64}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_k_norm.weight"), (Shape{64}));
    EXPECT_EQ(u32_of(f, "qwen3.attention.key_length"), 64u);
    EXPECT_EQ(u32_of(f, "qwen3.attention.value_length"), 64u);
    EXPECT_EQ(f.find_tensor("blk.0.attn_q.bias"), nullptr);
  }
  {
    // qwen3moe: 8 experts of 512, n_embd 256.
    const auto f = gguf::File::open(run("qwen3moe", "tiny", "F16", "qwen3moe.gguf").paths[0]);
    EXPECT_EQ(shape_of(f, "blk.0.ffn_gate_inp.weight"), (Shape{256, 8}));
    EXPECT_EQ(shape_of(f, "blk.0.ffn_gate_exps.weight"), (Shape{256, 512, 8}));
    EXPECT_EQ(shape_of(f, "blk.0.ffn_up_exps.weight"), (Shape{256, 512, 8}));
    EXPECT_EQ(shape_of(f, "blk.0.ffn_down_exps.weight"), (Shape{512, 256, 8}));
    EXPECT_EQ(type_of(f, "blk.0.ffn_gate_inp.weight"), DType::F32);
    EXPECT_EQ(u32_of(f, "qwen3moe.expert_count"), 8u);
    EXPECT_EQ(u32_of(f, "qwen3moe.expert_used_count"), 2u);
    EXPECT_EQ(u32_of(f, "qwen3moe.expert_feed_forward_length"), 512u);
  }
  {
    // deepseek2: n_embd 256, 4 heads, q_lora 256, kv_lora 256, qk_nope 128, qk_rope 64, v 128,
    // 1 dense block (n_ff 768), 4 experts of 512, 1 shared expert.
    const auto f = gguf::File::open(run("deepseek2", "tiny", "F16", "ds.gguf").paths[0]);
    EXPECT_EQ(shape_of(f, "blk.0.attn_q_a.weight"), (Shape{256, 256}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_q_a_norm.weight"), (Shape{256}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_q_b.weight"), (Shape{256, 4 * (128 + 64)}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_kv_a_mqa.weight"), (Shape{256, 256 + 64}));  // kv_lora_rank + n_rot
    EXPECT_EQ(shape_of(f, "blk.0.attn_kv_a_norm.weight"), (Shape{256}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_k_b.weight"), (Shape{128, 256, 4}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_v_b.weight"), (Shape{256, 128, 4}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_output.weight"), (Shape{4 * 128, 256}));
    EXPECT_EQ(f.find_tensor("blk.0.attn_kv_b.weight"), nullptr);
    EXPECT_EQ(shape_of(f, "blk.0.ffn_down.weight"), (Shape{768, 256}));
    EXPECT_EQ(f.find_tensor("blk.0.ffn_gate_exps.weight"), nullptr);
    EXPECT_EQ(shape_of(f, "blk.1.ffn_gate_exps.weight"), (Shape{256, 512, 4}));
    EXPECT_EQ(shape_of(f, "blk.1.ffn_down_exps.weight"), (Shape{512, 256, 4}));
    EXPECT_EQ(shape_of(f, "blk.2.ffn_gate_shexp.weight"), (Shape{256, 512}));
    EXPECT_EQ(shape_of(f, "blk.2.ffn_down_shexp.weight"), (Shape{512, 256}));
    EXPECT_EQ(shape_of(f, "blk.2.exp_probs_b.bias"), (Shape{4}));
    EXPECT_EQ(f.find_tensor("blk.1.ffn_gate.weight"), nullptr);
    EXPECT_EQ(u32_of(f, "deepseek2.attention.head_count_kv"), 1u);
    EXPECT_EQ(u32_of(f, "deepseek2.attention.key_length"), 256u + 64u);
    EXPECT_EQ(u32_of(f, "deepseek2.attention.value_length"), 256u);
    EXPECT_EQ(u32_of(f, "deepseek2.attention.key_length_mla"), 192u);
    EXPECT_EQ(u32_of(f, "deepseek2.attention.value_length_mla"), 128u);
    EXPECT_EQ(u32_of(f, "deepseek2.attention.q_lora_rank"), 256u);
    EXPECT_EQ(u32_of(f, "deepseek2.attention.kv_lora_rank"), 256u);
    EXPECT_EQ(u32_of(f, "deepseek2.rope.dimension_count"), 64u);
    EXPECT_EQ(u32_of(f, "deepseek2.leading_dense_block_count"), 1u);
    EXPECT_EQ(u32_of(f, "deepseek2.expert_shared_count"), 1u);
    EXPECT_EQ(u32_of(f, "deepseek2.expert_gating_func"), 2u);
    expect_key_type(f, "deepseek2.expert_weights_scale", ValueType::FLOAT32);
    expect_key_type(f, "deepseek2.expert_weights_norm", ValueType::BOOL);
    expect_key_type(f, "deepseek2.rope.scaling.yarn_log_multiplier", ValueType::FLOAT32);
    expect_key_type(f, "deepseek2.rope.scaling.type", ValueType::STRING);
    EXPECT_EQ(f.at("tokenizer.ggml.pre").as_string(), "deepseek-v3");
    EXPECT_EQ(f.at("tokenizer.ggml.bos_token_id").get<uint32_t>(), 0u);
    EXPECT_EQ(f.at("tokenizer.ggml.eos_token_id").get<uint32_t>(), 1u);
  }
  {
    // gpt-oss: 4 heads of 64, 2 KV heads, 4 experts of 512, biases and sinks.
    const auto f = gguf::File::open(run("gpt-oss", "tiny", "F16", "oss.gguf").paths[0]);
    EXPECT_EQ(shape_of(f, "blk.0.attn_q.weight"), (Shape{256, 256}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_k.weight"), (Shape{256, 128}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_q.bias"), (Shape{256}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_output.bias"), (Shape{256}));
    EXPECT_EQ(shape_of(f, "blk.0.attn_sinks.weight"), (Shape{4}));
    EXPECT_EQ(shape_of(f, "blk.1.post_attention_norm.weight"), (Shape{256}));
    EXPECT_EQ(shape_of(f, "blk.1.ffn_gate_inp.bias"), (Shape{4}));
    EXPECT_EQ(shape_of(f, "blk.1.ffn_gate_exps.bias"), (Shape{512, 4}));
    EXPECT_EQ(shape_of(f, "blk.1.ffn_down_exps.bias"), (Shape{256, 4}));
    EXPECT_EQ(shape_of(f, "blk.1.ffn_down_exps.weight"), (Shape{512, 256, 4}));
    EXPECT_EQ(type_of(f, "blk.1.ffn_gate_exps.bias"), DType::F32);
    EXPECT_EQ(type_of(f, "blk.1.attn_sinks.weight"), DType::F32);
    EXPECT_EQ(u32_of(f, "gpt-oss.attention.sliding_window"), 128u);
    EXPECT_EQ(u32_of(f, "gpt-oss.attention.key_length"), 64u);
    EXPECT_EQ(f.at("gpt-oss.rope.scaling.type").as_string(), "yarn");
    expect_key_type(f, "gpt-oss.rope.scaling.factor", ValueType::FLOAT32);
    expect_key_type(f, "gpt-oss.rope.scaling.original_context_length", ValueType::UINT32);
    EXPECT_EQ(f.at("tokenizer.ggml.pre").as_string(), "gpt-4o");
    EXPECT_EQ(f.find_tensor("blk.0.ffn_norm.weight"), nullptr);
  }
}

class SynthTypes : public SynthDirTest, public ::testing::WithParamInterface<std::string> {};

// Every single weight type: matrices in that type, the rest F32, values finite and sane.
TEST_P(SynthTypes, EveryWeightTypeIsValid) {
  const std::string type = GetParam();
  const auto f = gguf::File::open(run("qwen3moe", "tiny", type, "m.gguf").paths[0]);
  const DType expected = *dtype_from_name(type);
  for (const auto& t : f.tensors()) {
    const bool matrix = t.shape.size() >= 2 && t.name.find("ffn_gate_inp") == std::string::npos;
    EXPECT_EQ(t.type, matrix ? expected : DType::F32) << t.name;
  }
  expect_sane_values(f);
}

INSTANTIATE_TEST_SUITE_P(Synth, SynthTypes,
                         ::testing::Values("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K",
                                           "Q3_K", "Q4_K", "Q5_K", "Q6_K", "MXFP4"));

TEST_F(SynthDirTest, SynthDeterministicPerSeed) {
  run("gpt-oss", "tiny", "Q4_K_M", "a.gguf", 7);
  run("gpt-oss", "tiny", "Q4_K_M", "b.gguf", 7);
  run("gpt-oss", "tiny", "Q4_K_M", "c.gguf", 8);
  const std::string a = read_file(path("a.gguf")), b = read_file(path("b.gguf")), c = read_file(path("c.gguf"));
  EXPECT_GT(a.size(), 100000u);
  EXPECT_TRUE(a == b) << "same seed, different bytes";
  EXPECT_FALSE(a == c) << "different seeds, same bytes";  // merges and every tensor differ
  // Each tensor differs between seeds (the key mixes seed and name).
  const auto fa = gguf::File::open(path("a.gguf")), fc = gguf::File::open(path("c.gguf"));
  for (size_t i = 0; i < fa.tensors().size(); ++i) {
    const auto& ta = fa.tensors()[i];
    const auto& tc = fc.tensors()[i];
    if (ta.name == "rope_freqs.weight") continue;
    EXPECT_NE(std::memcmp(ta.data, tc.data, ta.n_bytes), 0) << ta.name;
  }
}

TEST(SynthRandom, BytesDoNotDependOnChunking) {
  using namespace synthetic;
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q4_K, DType::Q8_0, DType::MXFP4}) {
    const int64_t per_unit = unit_elements(type);
    const int64_t n_elements = per_unit * 1000 + (dtype_block_size(type) == 1 ? 17 : 0);
    const int64_t n_units = (n_elements + per_unit - 1) / per_unit;
    const auto total = static_cast<size_t>(dtype_row_bytes(type, n_elements));
    std::vector<uint8_t> whole(total), pieces(total);
    ASSERT_EQ(fill_units(type, ValueKind::Weight, 42, n_elements, 0, n_units, whole.data()), total);
    size_t at = 0;
    for (int64_t u = 0, step = 1; u < n_units; u += step, step = step * 3 % 17 + 1) {
      const int64_t n = std::min(step, n_units - u);
      at += fill_units(type, ValueKind::Weight, 42, n_elements, u, n, pieces.data() + at);
    }
    ASSERT_EQ(at, total);
    EXPECT_TRUE(whole == pieces) << dtype_name(type);
  }
}

TEST_F(SynthDirTest, SynthSplitOutputHasTheSameTensors) {
  const SynthResult one = run("llama", "tiny", "Q4_K_M", "one.gguf");
  const SynthResult split = run("llama", "tiny", "Q4_K_M", "split.gguf", 1, false, 256 << 10);
  ASSERT_GT(split.paths.size(), 2u);
  EXPECT_EQ(split.paths[0], path("split-00001-of-" + fmt::format("{:05d}", split.paths.size()) + ".gguf"));
  const auto a = gguf::File::open(one.paths[0]);
  const auto b = gguf::File::open(split.paths[0]);
  EXPECT_EQ(b.shards().size(), split.paths.size());
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& ta = a.tensors()[i];
    const auto& tb = b.tensors()[i];
    EXPECT_EQ(ta.name, tb.name);
    EXPECT_EQ(ta.type, tb.type);
    ASSERT_EQ(ta.n_bytes, tb.n_bytes);
    EXPECT_EQ(std::memcmp(ta.data, tb.data, ta.n_bytes), 0) << ta.name;
  }
}

TEST_F(SynthDirTest, SynthHeaderOnlyDeclaresEverythingButWritesNoData) {
  const SynthResult r = run("llama", "tiny", "Q8_0", "h.gguf", 1, true);
  const auto f = gguf::File::open(r.paths[0]);
  EXPECT_TRUE(f.header_only());
  EXPECT_EQ(f.tensors().size(), r.n_tensors);
  EXPECT_EQ(testing::n_data_bytes(f), r.n_bytes);
  EXPECT_LT(std::filesystem::file_size(r.paths[0]), r.n_bytes);
  const SynthResult full = run("llama", "tiny", "Q8_0", "f.gguf");
  EXPECT_EQ(full.n_bytes, r.n_bytes);
  EXPECT_EQ(full.n_params, r.n_params);
}

TEST_F(SynthDirTest, SynthRejectsUnknownNames) {
  EXPECT_THROW(run("mamba", "tiny", "Q8_0", "x.gguf"), Error);
  EXPECT_THROW(run("llama", "llama3-70b", "Q8_0", "x.gguf"), Error);
  EXPECT_THROW(run("llama", "deepseek-r1", "Q8_0", "x.gguf"), Error);
  EXPECT_THROW(run("llama", "tiny", "IQ2_XXS", "x.gguf"), Error);
  EXPECT_THROW(run("llama", "tiny", "Q4_K_S", "x.gguf"), Error);
  EXPECT_FALSE(std::filesystem::exists(path("x.gguf")));
  SynthOptions o;
  o.arch = "llama";
  EXPECT_THROW(synth(o), Error);  // no output path
  o.output = (dir_ / "no-such-dir" / "m.gguf").string();
  EXPECT_THROW(synth(o), Error);
}

TEST(SynthPresets, EveryArchHasTinyAndItsNamedPresets) {
  EXPECT_EQ(synth_archs(), (std::vector<std::string>{"llama", "qwen2", "qwen3", "qwen3moe", "deepseek2", "gpt-oss"}));
  const std::map<std::string, std::vector<std::string>> expected = {
      {"llama", {"tiny", "llama3-8b", "llama3.2-1b"}},
      {"qwen2", {"tiny", "qwen2.5-coder-32b"}},
      {"qwen3", {"tiny", "qwen3-8b"}},
      {"qwen3moe", {"tiny", "qwen3-30b-a3b"}},
      {"deepseek2", {"tiny", "deepseek-v2-lite", "deepseek-r1"}},
      {"gpt-oss", {"tiny", "gpt-oss-20b", "gpt-oss-120b"}},
  };
  for (const auto& [arch, presets] : expected) EXPECT_EQ(synth_presets(arch), presets) << arch;
  EXPECT_TRUE(synth_presets("mamba").empty());
}

}  // namespace
}  // namespace velocity::tools
