// Quantisation mixes (llama.cpp's llama_tensor_get_type rules) and the full-size presets, read
// back from header-only files: parameter counts against the published ones, Q4_K_M sizes
// against the ecosystem's files, and the per-tensor types of Q4_K_M and MXFP4_MOE.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "gguf/file.h"
#include "synth_test_util.h"
#include "tools/quant_mix.h"

namespace velocity::tools {
namespace {

using testing::n_data_bytes;
using testing::n_params;
using testing::SynthDirTest;
using testing::type_of;
using testing::u32_of;

// use_more_bits of llama-quant.cpp, written out independently for the expectations.
bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

TEST(SynthQuantMix, FallbackTypesFollowLlamaCpp) {
  EXPECT_EQ(fallback_type(DType::Q4_K, 4096), DType::Q4_K);
  EXPECT_EQ(fallback_type(DType::Q4_K, 2880), DType::Q5_0);
  EXPECT_EQ(fallback_type(DType::Q5_K, 2880), DType::Q5_1);
  EXPECT_EQ(fallback_type(DType::Q6_K, 2880), DType::Q8_0);
  EXPECT_EQ(fallback_type(DType::Q2_K, 128), DType::Q4_0);
  EXPECT_EQ(fallback_type(DType::Q3_K, 128), DType::Q4_0);
  EXPECT_EQ(fallback_type(DType::Q4_K, 100), DType::F16);  // not even 32-element blocks fit
  EXPECT_EQ(fallback_type(DType::Q8_0, 100), DType::F16);
  EXPECT_EQ(fallback_type(DType::MXFP4, 2880), DType::MXFP4);
}

TEST(SynthQuantMix, WhichTensorsAreQuantised) {
  EXPECT_TRUE(tensor_allows_quantization("blk.0.attn_q.weight", 2));
  EXPECT_TRUE(tensor_allows_quantization("blk.0.ffn_down_exps.weight", 3));
  EXPECT_TRUE(tensor_allows_quantization("token_embd.weight", 2));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.attn_norm.weight", 1));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.attn_q_a_norm.weight", 2));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.ffn_gate_inp.weight", 2));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.ffn_gate_exps.bias", 2));
  EXPECT_FALSE(tensor_allows_quantization("blk.0.attn_sinks.weight", 1));
}

TEST(SynthQuantMix, ParsesTypesAndFileTypes) {
  EXPECT_EQ(parse_weight_scheme("q4_k_m").file_type, 15u);
  EXPECT_EQ(parse_weight_scheme("Q4_K_M").default_type, DType::Q4_K);
  EXPECT_EQ(parse_weight_scheme("MXFP4_MOE").file_type, 38u);
  EXPECT_EQ(parse_weight_scheme("Q8_0").file_type, 7u);
  EXPECT_EQ(parse_weight_scheme("f16").file_type, 1u);
  EXPECT_EQ(parse_weight_scheme("BF16").file_type, 32u);
  EXPECT_EQ(parse_weight_scheme("F32").file_type, 0u);
  EXPECT_EQ(parse_weight_scheme("Q5_0").file_type, 8u);
  EXPECT_EQ(parse_weight_scheme("Q6_K").file_type, 18u);
  EXPECT_EQ(parse_weight_scheme("q4_k").name, "Q4_K");
  EXPECT_THROW(parse_weight_scheme("Q8_K"), Error);  // no reference
  EXPECT_THROW(parse_weight_scheme("IQ4_XS"), Error);
  EXPECT_THROW(parse_weight_scheme(""), Error);
  for (const auto& n : weight_scheme_names()) EXPECT_NO_THROW(parse_weight_scheme(n)) << n;
}

// Dense models: the attn_v counter and the ffn_down counter both follow the layer order.
TEST(SynthQuantMix, Q4KMUsesMoreBitsOnTheLayersLlamaCppPicks) {
  std::vector<std::string> names = {"output.weight", "output_norm.weight", "token_embd.weight"};
  const int n_layer = 10;
  for (int il = 0; il < n_layer; ++il)
    for (const char* t : {"attn_k", "attn_norm", "attn_output", "attn_q", "attn_v", "ffn_down", "ffn_gate", "ffn_up"})
      names.push_back("blk." + std::to_string(il) + "." + t + ".weight");
  std::vector<std::vector<int64_t>> shapes;
  std::vector<QuantTensor> tensors;
  shapes.reserve(names.size());
  for (const auto& n : names)
    shapes.push_back(n.find("norm") != std::string::npos ? std::vector<int64_t>{4096} : std::vector<int64_t>{4096, 4096});
  for (size_t i = 0; i < names.size(); ++i) tensors.push_back({names[i], shapes[i]});
  const auto types = choose_tensor_types(parse_weight_scheme("Q4_K_M"), {"llama", n_layer, 0, false}, tensors);
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    DType want = DType::Q4_K;
    if (n == "output.weight") want = DType::Q6_K;
    if (n.find("norm") != std::string::npos) want = DType::F32;
    if (n.find("attn_v") != std::string::npos || n.find("ffn_down") != std::string::npos) {
      const int il = std::stoi(n.substr(4));
      want = more_bits(il, n_layer) ? DType::Q6_K : DType::Q4_K;
    }
    EXPECT_EQ(types[i], want) << n;
  }
  // A tied model (no output.weight): token_embd takes the output head's Q6_K.
  std::vector<QuantTensor> tied(tensors.begin() + 1, tensors.end());
  EXPECT_EQ(choose_tensor_types(parse_weight_scheme("Q4_K_M"), {"llama", n_layer, 0, false}, tied)[1], DType::Q6_K);
}

TEST_F(SynthDirTest, SynthQ4KMOnLlama3_8B) {
  const SynthResult r = run("llama", "llama3-8b", "Q4_K_M", "l.gguf", 1, true);
  const auto f = gguf::File::open(r.paths[0]);
  EXPECT_EQ(u32_of(f, "general.file_type"), 15u);
  EXPECT_EQ(type_of(f, "output.weight"), DType::Q6_K);
  EXPECT_EQ(type_of(f, "token_embd.weight"), DType::Q4_K);
  EXPECT_EQ(type_of(f, "rope_freqs.weight"), DType::F32);
  int n_q6 = 0;
  for (int il = 0; il < 32; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    const DType more = more_bits(il, 32) ? DType::Q6_K : DType::Q4_K;
    EXPECT_EQ(type_of(f, b + "attn_v.weight"), more) << il;
    EXPECT_EQ(type_of(f, b + "ffn_down.weight"), more) << il;
    EXPECT_EQ(type_of(f, b + "attn_q.weight"), DType::Q4_K);
    EXPECT_EQ(type_of(f, b + "ffn_up.weight"), DType::Q4_K);
    EXPECT_EQ(type_of(f, b + "attn_norm.weight"), DType::F32);
    n_q6 += more == DType::Q6_K;
  }
  EXPECT_EQ(n_q6, 16);  // layers 0-3, 6, 9, …, 27 and 28-31
  // Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf holds 4.92 GB of tensor data (4.58 GiB).
  EXPECT_NEAR(static_cast<double>(r.n_bytes), 4.92e9, 0.03e9);
  EXPECT_LT(std::filesystem::file_size(r.paths[0]), 16u << 20);
}

TEST_F(SynthDirTest, SynthGptOssMixes) {
  {
    // MXFP4_MOE: experts MXFP4, output and every other matrix Q8_0, router and 1-D tensors F32.
    const auto f = gguf::File::open(run("gpt-oss", "gpt-oss-20b", "MXFP4_MOE", "m.gguf", 1, true).paths[0]);
    EXPECT_EQ(u32_of(f, "general.file_type"), 38u);
    for (const char* e : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
      EXPECT_EQ(type_of(f, std::string("blk.5.") + e + ".weight"), DType::MXFP4) << e;
    EXPECT_EQ(type_of(f, "output.weight"), DType::Q8_0);
    EXPECT_EQ(type_of(f, "token_embd.weight"), DType::Q8_0);
    EXPECT_EQ(type_of(f, "blk.5.attn_q.weight"), DType::Q8_0);
    EXPECT_EQ(type_of(f, "blk.5.attn_v.weight"), DType::Q8_0);
    EXPECT_EQ(type_of(f, "blk.5.ffn_gate_inp.weight"), DType::F32);
    EXPECT_EQ(type_of(f, "blk.5.attn_sinks.weight"), DType::F32);
    EXPECT_EQ(type_of(f, "blk.5.ffn_down_exps.bias"), DType::F32);
    // ggml-org/gpt-oss-20b-GGUF (MXFP4 experts) is ~12 GB; ours has Q8_0 attention.
    EXPECT_GT(n_data_bytes(f), 11.0e9);
    EXPECT_LT(n_data_bytes(f), 12.5e9);
  }
  {
    // Q4_K_M with n_embd 2880 (not a multiple of 256): the fallbacks.
    const auto f = gguf::File::open(run("gpt-oss", "gpt-oss-20b", "Q4_K_M", "q.gguf", 1, true).paths[0]);
    EXPECT_EQ(type_of(f, "output.weight"), DType::Q8_0);      // nx % 256 != 0 -> Q8_0
    EXPECT_EQ(type_of(f, "token_embd.weight"), DType::Q5_0);  // Q4_K -> Q5_0
    EXPECT_EQ(type_of(f, "blk.1.attn_q.weight"), DType::Q5_0);
    EXPECT_EQ(type_of(f, "blk.1.ffn_gate_exps.weight"), DType::Q5_0);
    EXPECT_EQ(type_of(f, "blk.0.attn_v.weight"), DType::Q8_0);    // use_more_bits: Q6_K -> Q8_0
    EXPECT_EQ(type_of(f, "blk.4.attn_v.weight"), DType::Q5_0);    // 24 layers: 3 <= 4 < 21, (4-3)%3 != 2
    EXPECT_EQ(type_of(f, "blk.5.ffn_down_exps.weight"), DType::Q8_0);  // (5-3)%3 == 2
    EXPECT_EQ(type_of(f, "blk.6.ffn_down_exps.weight"), DType::Q5_0);
  }
}

TEST_F(SynthDirTest, SynthDeepSeekR1HeaderOnlyIsFastAndSmall) {
  const auto start = std::chrono::steady_clock::now();
  const SynthResult r = run("deepseek2", "deepseek-r1", "Q4_K_M", "r1.gguf", 1, true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 5.0);
  EXPECT_LT(std::filesystem::file_size(r.paths[0]), 32u << 20);
  const auto f = gguf::File::open(r.paths[0]);
  EXPECT_TRUE(f.header_only());
  // DeepSeek-R1 Q4_K_M files of the ecosystem are ~377-410 GB.
  EXPECT_GT(static_cast<double>(n_data_bytes(f)), 377e9);
  EXPECT_LT(static_cast<double>(n_data_bytes(f)), 410e9);
  // MLA tensors: attn_k_b rows are qk_nope = 128 wide -> Q4_K falls back to Q5_0.
  EXPECT_EQ(type_of(f, "blk.10.attn_k_b.weight"), DType::Q5_0);
  EXPECT_EQ(type_of(f, "blk.10.attn_v_b.weight"), DType::Q4_K);
  EXPECT_EQ(type_of(f, "blk.10.attn_kv_a_mqa.weight"), DType::Q4_K);
  EXPECT_EQ(type_of(f, "blk.10.ffn_gate_inp.weight"), DType::F32);
  EXPECT_EQ(type_of(f, "blk.10.exp_probs_b.bias"), DType::F32);
  // ffn_down layers from the name (MoE): 61 layers -> n/8 = 7, 7n/8 = 53.
  for (int il : {0, 2, 3, 6, 7, 9, 10, 12, 52, 53, 60}) {
    const DType want = more_bits(il, 61) ? DType::Q6_K : DType::Q4_K;
    const std::string b = "blk." + std::to_string(il) + ".";
    if (il < 3) {
      EXPECT_EQ(type_of(f, b + "ffn_down.weight"), want) << il;
    } else {
      EXPECT_EQ(type_of(f, b + "ffn_down_exps.weight"), want) << il;
      EXPECT_EQ(type_of(f, b + "ffn_down_shexp.weight"), want) << il;
    }
  }
}

TEST_F(SynthDirTest, SynthMxfp4MoeOnDeepSeekCoversTheMlaTensors) {
  const auto f = gguf::File::open(run("deepseek2", "deepseek-v2-lite", "MXFP4_MOE", "d.gguf", 1, true).paths[0]);
  // llama.cpp's MXFP4_MOE rule is "ne[2] > 1": the 3-D attn_k_b / attn_v_b go MXFP4 too.
  EXPECT_EQ(type_of(f, "blk.3.attn_k_b.weight"), DType::MXFP4);
  EXPECT_EQ(type_of(f, "blk.3.attn_v_b.weight"), DType::MXFP4);
  EXPECT_EQ(type_of(f, "blk.3.ffn_down_exps.weight"), DType::MXFP4);
  EXPECT_EQ(type_of(f, "blk.3.ffn_down_shexp.weight"), DType::Q8_0);
  EXPECT_EQ(type_of(f, "blk.0.ffn_down.weight"), DType::Q8_0);
  EXPECT_EQ(type_of(f, "blk.3.attn_q.weight"), DType::Q8_0);  // V2-Lite: no q LoRA
  EXPECT_EQ(f.find("deepseek2.attention.q_lora_rank"), nullptr);
  EXPECT_EQ(type_of(f, "output.weight"), DType::Q8_0);
}

TEST_F(SynthDirTest, SynthExpertCount8TriggersTheMixtralRules) {
  // qwen3moe tiny has 8 experts: attn_v and attn_k -> Q8_0, attn_output -> Q5_K.
  const auto f = gguf::File::open(run("qwen3moe", "tiny", "Q4_K_M", "q.gguf", 1, true).paths[0]);
  EXPECT_EQ(type_of(f, "blk.1.attn_v.weight"), DType::Q8_0);
  EXPECT_EQ(type_of(f, "blk.1.attn_k.weight"), DType::Q8_0);
  EXPECT_EQ(type_of(f, "blk.1.attn_output.weight"), DType::Q5_K);
  EXPECT_EQ(type_of(f, "blk.1.attn_q.weight"), DType::Q4_K);
  EXPECT_EQ(type_of(f, "output.weight"), DType::Q6_K);
}

struct Published {
  const char* arch;
  const char* preset;
  double n_params;  // published parameter count
};

class SynthFullSize : public SynthDirTest, public ::testing::WithParamInterface<Published> {};

// The parameter count of the header-only file against the model card, within 2%.
TEST_P(SynthFullSize, ParameterCountMatchesThePublishedModel) {
  const Published p = GetParam();
  const SynthResult r = run(p.arch, p.preset, "Q4_K_M", "m.gguf", 1, true);
  const auto f = gguf::File::open(r.paths[0]);
  const double n = static_cast<double>(n_params(f));
  EXPECT_NEAR(n / p.n_params, 1.0, 0.02) << p.preset << ": " << n;
  EXPECT_EQ(static_cast<uint64_t>(n), r.n_params);
  const auto& tokens = f.at("tokenizer.ggml.tokens").strings();
  EXPECT_EQ(static_cast<int64_t>(tokens.size()), testing::shape_of(f, "token_embd.weight").at(1));
}

INSTANTIATE_TEST_SUITE_P(Synth, SynthFullSize,
                         ::testing::Values(Published{"llama", "llama3-8b", 8.03e9}, Published{"llama", "llama3.2-1b", 1.24e9},
                                           Published{"qwen2", "qwen2.5-coder-32b", 32.8e9},
                                           Published{"qwen3", "qwen3-8b", 8.19e9},
                                           Published{"qwen3moe", "qwen3-30b-a3b", 30.5e9},
                                           Published{"gpt-oss", "gpt-oss-20b", 20.9e9},
                                           Published{"gpt-oss", "gpt-oss-120b", 116.8e9},
                                           Published{"deepseek2", "deepseek-v2-lite", 15.7e9},
                                           Published{"deepseek2", "deepseek-r1", 671e9}),
                         [](const auto& param_info) {
                           std::string s = param_info.param.preset;
                           for (char& c : s)
                             if (c == '-' || c == '.') c = '_';
                           return s;
                         });

}  // namespace
}  // namespace velocity::tools
