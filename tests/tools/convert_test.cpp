// `velocity convert` on tiny Hugging Face directories built here (convert_test_util.h): names,
// shapes, types and keys as llama.cpp's converter writes them; values exact in F32 and within
// rounding in F16/BF16/Q8_0 (read back through core's dequantize_row); the llama Q/K permutation
// against numpy's reshape/swapaxes written out as index loops, and against RoPE itself; experts
// stacked in order; the Llama 3 RoPE factors against their formula; and the errors a user sees.
#include "tools/convert.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <numbers>
#include <sstream>

#include "convert_test_util.h"
#include "core/error.h"
#include "core/quant.h"
#include "gguf/file.h"
#include "tools/convert_arch.h"
#include "tools/safetensors.h"

namespace velocity::tools {
namespace {

namespace fs = std::filesystem;
using testing::HfDir;
using testing::TinySpec;
using Matrix = std::vector<float>;

class Convert : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("velocity-convert-" + std::to_string(::getpid()) + "-" + info->test_suite_name() + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  HfDir tiny(const TinySpec& spec, const std::string& name = "TinyModel") {
    HfDir d(dir_ / name);
    testing::fill_tiny(d, spec);
    return d;
  }

  ConvertResult convert(const HfDir& d, DType type = DType::F32, uint64_t split = 0) {
    ConvertOptions o;
    o.input_dir = d.path().string();
    o.output = (dir_ / "out.gguf").string();
    o.type = type;
    o.split_max_bytes = split;
    o.quiet = true;
    return convert_hf(o);
  }
  gguf::File convert_and_open(const HfDir& d, DType type = DType::F32) {
    convert(d, type);
    return gguf::File::open((dir_ / "out.gguf").string());
  }
  // The message of the Error convert throws (the test fails when it succeeds).
  std::string convert_error(const HfDir& d, DType type = DType::F32) {
    fs::remove(dir_ / "out.gguf");  // from an earlier, successful conversion
    try {
      convert(d, type);
    } catch (const Error& e) {
      EXPECT_FALSE(fs::exists(dir_ / "out.gguf")) << "no partial output after an error";
      return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
  }

  fs::path dir_;
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A GGUF tensor's values as float, row by row through core's dequantize_row.
Matrix values(const gguf::File& f, const std::string& name) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  const int64_t n = t->shape[0];
  const int64_t row_bytes = dtype_row_bytes(t->type, n);
  Matrix out(static_cast<size_t>(t->n_elements));
  for (int64_t r = 0; r < t->n_rows(); ++r) {
    const uint8_t* src = t->data + r * row_bytes;
    if (t->type == DType::F32) {
      std::memcpy(out.data() + r * n, src, static_cast<size_t>(n) * 4);
    } else {
      dequantize_row(t->type, src, out.data() + r * n, n);
    }
  }
  return out;
}

uint64_t u(const gguf::File& f, const std::string& key) { return f.at(key).get<uint32_t>(); }
float fl(const gguf::File& f, const std::string& key) { return f.at(key).get<float>(); }

// numpy: w.reshape(n_head, 2, hd/2, n_in).swapaxes(1, 2).reshape(w.shape), as index loops:
// out[h][i][j][c] = in[h][j][i][c].
Matrix numpy_permute(const Matrix& w, int64_t n_rows, int64_t n_in, int64_t n_head) {
  const int64_t half = n_rows / n_head / 2;
  Matrix out(w.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t c = 0; c < n_in; ++c)
          out[static_cast<size_t>(((h * half + i) * 2 + j) * n_in + c)] =
              w[static_cast<size_t>(((h * 2 + j) * half + i) * n_in + c)];
  return out;
}

// Concatenation of the HF experts' matrices, expert 0 first.
Matrix stacked(const HfDir& d, const std::string& pattern, int64_t n_expert) {
  Matrix out;
  for (int64_t e = 0; e < n_expert; ++e) {
    const Matrix& m = d.tensors.at(fmt::format(fmt::runtime(pattern), e)).values;
    out.insert(out.end(), m.begin(), m.end());
  }
  return out;
}

TEST_F(Convert, LlamaF32NamesShapesMetadataAndExactValues) {
  TinySpec spec;
  HfDir d = tiny(spec);
  d.write(/*n_shards=*/2);
  const ConvertResult result = convert(d);
  EXPECT_EQ(result.arch, "llama");
  EXPECT_EQ(result.n_tensors, 3 + 9 * spec.n_layer);
  ASSERT_EQ(result.paths.size(), 1u);
  const gguf::File f = gguf::File::open(result.paths[0]);

  // Order: token_embd, blocks, output_norm, output.
  std::vector<std::string> names;
  for (const auto& t : f.tensors()) names.push_back(t.name);
  const std::vector<std::string> block0 = {"blk.0.attn_norm.weight", "blk.0.attn_q.weight",      "blk.0.attn_k.weight",
                                           "blk.0.attn_v.weight",    "blk.0.attn_output.weight", "blk.0.ffn_norm.weight",
                                           "blk.0.ffn_gate.weight",  "blk.0.ffn_up.weight",      "blk.0.ffn_down.weight"};
  ASSERT_EQ(names.size(), 21u);
  EXPECT_EQ(names.front(), "token_embd.weight");
  EXPECT_EQ(std::vector<std::string>(names.begin() + 1, names.begin() + 10), block0);
  EXPECT_EQ(names[19], "output_norm.weight");
  EXPECT_EQ(names[20], "output.weight");

  auto shape = [&](const std::string& n) { return f.find_tensor(n)->shape; };
  using S = std::vector<int64_t>;
  EXPECT_EQ(shape("token_embd.weight"), (S{64, 40}));
  EXPECT_EQ(shape("output.weight"), (S{64, 40}));
  EXPECT_EQ(shape("blk.1.attn_q.weight"), (S{64, 64}));
  EXPECT_EQ(shape("blk.1.attn_k.weight"), (S{64, 32}));
  EXPECT_EQ(shape("blk.1.attn_v.weight"), (S{64, 32}));
  EXPECT_EQ(shape("blk.1.attn_output.weight"), (S{64, 64}));
  EXPECT_EQ(shape("blk.1.ffn_gate.weight"), (S{64, 80}));
  EXPECT_EQ(shape("blk.1.ffn_down.weight"), (S{80, 64}));
  EXPECT_EQ(shape("blk.1.attn_norm.weight"), (S{64}));
  for (const auto& t : f.tensors()) EXPECT_EQ(t.type, DType::F32) << t.name;

  EXPECT_EQ(f.at("general.architecture").as_string(), "llama");
  EXPECT_EQ(f.at("general.name").as_string(), "TinyModel");
  EXPECT_EQ(u(f, "general.file_type"), 0u);
  EXPECT_EQ(u(f, "general.quantization_version"), 2u);
  EXPECT_EQ(u(f, "llama.block_count"), 2u);
  EXPECT_EQ(u(f, "llama.context_length"), 4096u);
  EXPECT_EQ(u(f, "llama.embedding_length"), 64u);
  EXPECT_EQ(u(f, "llama.feed_forward_length"), 80u);
  EXPECT_EQ(u(f, "llama.attention.head_count"), 4u);
  EXPECT_EQ(u(f, "llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(u(f, "llama.vocab_size"), 40u);
  EXPECT_EQ(u(f, "llama.rope.dimension_count"), 16u);
  EXPECT_EQ(fl(f, "llama.rope.freq_base"), 500000.0f);
  EXPECT_EQ(fl(f, "llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_EQ(f.find("llama.attention.key_length"), nullptr);  // no head_dim in config.json
  EXPECT_EQ(f.find("llama.rope.scaling.type"), nullptr);

  // Tokenizer: padded to vocab_size with UNUSED "[PAD<id>]" tokens.
  const auto& tokens = f.at("tokenizer.ggml.tokens").strings();
  ASSERT_EQ(tokens.size(), 40u);
  EXPECT_EQ(tokens[3], "ab");
  EXPECT_EQ(tokens[9], "<|eos|>");
  EXPECT_EQ(tokens[39], "[PAD39]");
  const auto types = f.at("tokenizer.ggml.token_type").int_array();
  EXPECT_EQ(types[9], 3);   // CONTROL
  EXPECT_EQ(types[10], 5);  // UNUSED
  EXPECT_EQ(f.at("tokenizer.ggml.model").as_string(), "gpt2");

  // Exact values: unpermuted tensors are the HF bytes; Q and K are permuted per head.
  EXPECT_EQ(values(f, "token_embd.weight"), d.tensors.at("model.embed_tokens.weight").values);
  EXPECT_EQ(values(f, "output.weight"), d.tensors.at("lm_head.weight").values);
  EXPECT_EQ(values(f, "output_norm.weight"), d.tensors.at("model.norm.weight").values);
  for (int il = 0; il < 2; ++il) {
    const std::string hf = "model.layers." + std::to_string(il) + ".";
    const std::string blk = "blk." + std::to_string(il) + ".";
    EXPECT_EQ(values(f, blk + "attn_q.weight"), numpy_permute(d.tensors.at(hf + "self_attn.q_proj.weight").values, 64, 64, 4));
    EXPECT_EQ(values(f, blk + "attn_k.weight"), numpy_permute(d.tensors.at(hf + "self_attn.k_proj.weight").values, 32, 64, 2));
    EXPECT_EQ(values(f, blk + "attn_v.weight"), d.tensors.at(hf + "self_attn.v_proj.weight").values);
    EXPECT_EQ(values(f, blk + "attn_output.weight"), d.tensors.at(hf + "self_attn.o_proj.weight").values);
    EXPECT_EQ(values(f, blk + "ffn_gate.weight"), d.tensors.at(hf + "mlp.gate_proj.weight").values);
    EXPECT_EQ(values(f, blk + "ffn_up.weight"), d.tensors.at(hf + "mlp.up_proj.weight").values);
    EXPECT_EQ(values(f, blk + "ffn_down.weight"), d.tensors.at(hf + "mlp.down_proj.weight").values);
    EXPECT_EQ(values(f, blk + "attn_norm.weight"), d.tensors.at(hf + "input_layernorm.weight").values);
    EXPECT_EQ(values(f, blk + "ffn_norm.weight"), d.tensors.at(hf + "post_attention_layernorm.weight").values);
  }
  // The brief's closed form: output row r of a head comes from HF row
  // head*hd + (r_in_head % 2) * hd/2 + r_in_head / 2.
  const Matrix q = values(f, "blk.0.attn_q.weight");
  const Matrix& q_hf = d.tensors.at("model.layers.0.self_attn.q_proj.weight").values;
  for (int64_t r = 0; r < 64; ++r) {
    const int64_t hd = 16, head = r / hd, in_head = r % hd;
    const int64_t hf_row = head * hd + (in_head % 2) * (hd / 2) + in_head / 2;
    for (int64_t c = 0; c < 64; ++c) ASSERT_EQ(q[r * 64 + c], q_hf[hf_row * 64 + c]) << r << "," << c;
  }
}

// The point of the permutation: ggml's adjacent-pair RoPE on the permuted Q and K gives the same
// attention scores as HF's rotate_half RoPE on the original ones.
TEST_F(Convert, LlamaPermutationMakesAdjacentPairRopeEqualRotateHalf) {
  TinySpec spec;
  HfDir d = tiny(spec);
  d.write();
  const gguf::File f = convert_and_open(d);
  const int64_t n_embd = 64, hd = 16;
  const Matrix x = d.tensors.at("model.layers.0.input_layernorm.weight").values;  // any vector
  auto matvec = [&](const Matrix& w, int64_t rows) {
    std::vector<double> y(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n_embd; ++c) y[r] += double(w[r * n_embd + c]) * x[c];
    return y;
  };
  auto theta = [&](int64_t pos, int64_t i) { return pos * std::pow(500000.0, -2.0 * i / hd); };
  // HF: pairs (i, i + hd/2).
  auto rope_hf = [&](std::vector<double> v, int64_t pos) {
    for (size_t h = 0; h < v.size() / hd; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        double& a = v[h * hd + i];
        double& b = v[h * hd + i + hd / 2];
        const double c = std::cos(theta(pos, i)), s = std::sin(theta(pos, i));
        const double a0 = a;
        a = a0 * c - b * s;
        b = b * c + a0 * s;
      }
    return v;
  };
  // ggml normal: pairs (2i, 2i + 1).
  auto rope_ggml = [&](std::vector<double> v, int64_t pos) {
    for (size_t h = 0; h < v.size() / hd; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        double& a = v[h * hd + 2 * i];
        double& b = v[h * hd + 2 * i + 1];
        const double c = std::cos(theta(pos, i)), s = std::sin(theta(pos, i));
        const double a0 = a;
        a = a0 * c - b * s;
        b = b * c + a0 * s;
      }
    return v;
  };
  const auto q_hf = rope_hf(matvec(d.tensors.at("model.layers.0.self_attn.q_proj.weight").values, 64), 7);
  const auto k_hf = rope_hf(matvec(d.tensors.at("model.layers.0.self_attn.k_proj.weight").values, 32), 3);
  const auto q_gg = rope_ggml(matvec(values(f, "blk.0.attn_q.weight"), 64), 7);
  const auto k_gg = rope_ggml(matvec(values(f, "blk.0.attn_k.weight"), 32), 3);
  for (int64_t h = 0; h < 4; ++h) {  // query head h reads kv head h / 2 (GQA)
    double s_hf = 0, s_gg = 0;
    for (int64_t i = 0; i < hd; ++i) {
      s_hf += q_hf[h * hd + i] * k_hf[(h / 2) * hd + i];
      s_gg += q_gg[h * hd + i] * k_gg[(h / 2) * hd + i];
    }
    EXPECT_NEAR(s_hf, s_gg, 1e-9 * (1 + std::fabs(s_hf))) << "head " << h;
  }
}

TEST_F(Convert, OutputTypesRoundAsExpected) {
  TinySpec spec;
  spec.dtype = "BF16";
  HfDir d = tiny(spec);
  d.write();
  const Matrix& gate = d.tensors.at("model.layers.1.mlp.gate_proj.weight").values;
  const Matrix& down = d.tensors.at("model.layers.1.mlp.down_proj.weight").values;
  const Matrix& norm = d.tensors.at("model.layers.1.input_layernorm.weight").values;

  struct Case { DType type; uint32_t file_type; };
  for (const Case c : {Case{DType::F16, 1}, Case{DType::BF16, 32}, Case{DType::Q8_0, 7}, Case{DType::F32, 0}}) {
    SCOPED_TRACE(std::string(dtype_name(c.type)));
    const gguf::File f = convert_and_open(d, c.type);
    EXPECT_EQ(u(f, "general.file_type"), c.file_type);
    EXPECT_EQ(f.find_tensor("blk.1.ffn_gate.weight")->type, c.type);
    EXPECT_EQ(f.find_tensor("blk.1.attn_norm.weight")->type, DType::F32);
    EXPECT_EQ(f.find_tensor("output_norm.weight")->type, DType::F32);
    // ffn_down rows are 80 long, not a multiple of Q8_0's 32: gguf-py falls back to F16.
    EXPECT_EQ(f.find_tensor("blk.1.ffn_down.weight")->type, c.type == DType::Q8_0 ? DType::F16 : c.type);

    EXPECT_EQ(values(f, "blk.1.attn_norm.weight"), norm);
    const Matrix got = values(f, "blk.1.ffn_gate.weight");
    ASSERT_EQ(got.size(), gate.size());
    for (size_t i = 0; i < gate.size(); ++i) {
      if (c.type == DType::Q8_0) {
        float amax = 0;  // Q8_0: error at most half a step of the block's scale amax/127 (+ F16 scale rounding)
        for (size_t j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) amax = std::max(amax, std::fabs(gate[j]));
        ASSERT_LE(std::fabs(got[i] - gate[i]), amax / 127 * 0.5f + amax * 2e-3f) << i;
      } else {
        // BF16 sources are exact in F32 and BF16, and round to nearest-even into F16.
        ASSERT_EQ(got[i], testing::round_to(c.type == DType::F16 ? "F16" : "F32", gate[i])) << i;
      }
    }
    const Matrix got_down = values(f, "blk.1.ffn_down.weight");
    for (size_t i = 0; i < down.size(); ++i)
      ASSERT_EQ(got_down[i], testing::round_to(c.type == DType::BF16 || c.type == DType::F32 ? "F32" : "F16", down[i]));
  }
}

TEST_F(Convert, Llama3RopeFreqsMatchTheFormula) {
  TinySpec spec;
  HfDir d = tiny(spec);
  d.config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                              {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  d.write();
  const gguf::File f = convert_and_open(d, DType::F16);
  ASSERT_EQ(f.tensors().front().name, "rope_freqs.weight");  // generate_extra_tensors comes first
  const gguf::TensorInfo* t = f.find_tensor("rope_freqs.weight");
  EXPECT_EQ(t->type, DType::F32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(f.find("llama.rope.scaling.type"), nullptr);  // llama3 scaling is the tensor, not keys

  const Matrix got = values(f, "rope_freqs.weight");
  const double dim = 16, base = 500000, factor = 8, low = 1, high = 4, old_ctx = 8192;
  int n_smooth = 0;
  for (int i = 0; i < 8; ++i) {
    const double freq = 1.0 / std::pow(base, 2 * i / dim);
    const double wavelen = 2 * std::numbers::pi / freq;
    double want;
    if (wavelen < old_ctx / high) {
      want = 1;
    } else if (wavelen > old_ctx / low) {
      want = factor;
    } else {
      const double smooth = (old_ctx / wavelen - low) / (high - low);
      want = 1 / ((1 - smooth) / factor + smooth);
      ++n_smooth;
    }
    EXPECT_NEAR(got[i], want, 1e-5 * want) << i;
  }
  EXPECT_GT(n_smooth, 0) << "the test should cover the blended band";
  EXPECT_EQ(got.front(), 1.0f);
  EXPECT_EQ(got.back(), 8.0f);
}

TEST_F(Convert, LinearAndYarnRopeScalingKeys) {
  TinySpec spec;
  HfDir d = tiny(spec);
  d.config["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  d.write();
  {
    const gguf::File f = convert_and_open(d);
    EXPECT_EQ(f.at("llama.rope.scaling.type").as_string(), "linear");
    EXPECT_EQ(fl(f, "llama.rope.scaling.factor"), 4.0f);
  }
  d.config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 1024},
                              {"beta_fast", 32.0}};
  d.write();
  const gguf::File f = convert_and_open(d);
  EXPECT_EQ(f.at("llama.rope.scaling.type").as_string(), "yarn");
  EXPECT_EQ(u(f, "llama.rope.scaling.original_context_length"), 1024u);
  EXPECT_EQ(fl(f, "llama.rope.scaling.yarn_beta_fast"), 32.0f);
  EXPECT_EQ(f.find("llama.rope.scaling.yarn_beta_slow"), nullptr);
}

TEST_F(Convert, TiedEmbeddingsWriteNoOutput) {
  TinySpec spec;
  spec.tied = true;
  HfDir d = tiny(spec);
  d.write();
  const gguf::File f = convert_and_open(d);
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  EXPECT_NE(f.find_tensor("token_embd.weight"), nullptr);
}

TEST_F(Convert, MixtralExpertsStackedInOrderAndRouterF32) {
  TinySpec spec;
  spec.hf_arch = "MixtralForCausalLM";
  spec.n_expert = 3;
  spec.n_expert_used = 2;
  spec.n_ff = 96;
  HfDir d = tiny(spec);
  d.write();
  const gguf::File f = convert_and_open(d, DType::F16);
  EXPECT_EQ(f.at("general.architecture").as_string(), "llama");
  EXPECT_EQ(u(f, "llama.expert_count"), 3u);
  EXPECT_EQ(u(f, "llama.expert_used_count"), 2u);
  EXPECT_EQ(u(f, "llama.feed_forward_length"), 96u);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate.weight"), nullptr);
  const gguf::TensorInfo* router = f.find_tensor("blk.1.ffn_gate_inp.weight");
  EXPECT_EQ(router->type, DType::F32);
  EXPECT_EQ(router->shape, (std::vector<int64_t>{64, 3}));
  EXPECT_EQ(values(f, "blk.1.ffn_gate_inp.weight"), d.tensors.at("model.layers.1.block_sparse_moe.gate.weight").values);
  EXPECT_EQ(f.find_tensor("blk.1.ffn_gate_exps.weight")->shape, (std::vector<int64_t>{64, 96, 3}));
  EXPECT_EQ(f.find_tensor("blk.1.ffn_down_exps.weight")->shape, (std::vector<int64_t>{96, 64, 3}));
  auto rounded = [](Matrix m) {
    for (float& v : m) v = testing::round_to("F16", v);
    return m;
  };
  const std::string e = "model.layers.1.block_sparse_moe.experts.{}.";
  EXPECT_EQ(values(f, "blk.1.ffn_gate_exps.weight"), rounded(stacked(d, e + "w1.weight", 3)));
  EXPECT_EQ(values(f, "blk.1.ffn_up_exps.weight"), rounded(stacked(d, e + "w3.weight", 3)));
  EXPECT_EQ(values(f, "blk.1.ffn_down_exps.weight"), rounded(stacked(d, e + "w2.weight", 3)));
  // Mixtral is a llama: Q is permuted.
  EXPECT_EQ(values(f, "blk.0.attn_q.weight"),
            rounded(numpy_permute(d.tensors.at("model.layers.0.self_attn.q_proj.weight").values, 64, 64, 4)));
}

TEST_F(Convert, Qwen2BiasesAndNoPermutation) {
  TinySpec spec;
  spec.hf_arch = "Qwen2ForCausalLM";
  HfDir d = tiny(spec);
  d.write();
  const gguf::File f = convert_and_open(d, DType::F16);
  EXPECT_EQ(f.at("general.architecture").as_string(), "qwen2");
  EXPECT_EQ(u(f, "qwen2.block_count"), 2u);
  EXPECT_EQ(f.find("qwen2.vocab_size"), nullptr);            // LlamaModel-only keys
  EXPECT_EQ(f.find("qwen2.rope.dimension_count"), nullptr);
  for (const char* b : {"attn_q.bias", "attn_k.bias", "attn_v.bias"}) {
    const gguf::TensorInfo* t = f.find_tensor(std::string("blk.1.") + b);
    ASSERT_NE(t, nullptr) << b;
    EXPECT_EQ(t->type, DType::F32) << b;
  }
  EXPECT_EQ(f.find_tensor("blk.1.attn_k.bias")->shape, (std::vector<int64_t>{32}));
  EXPECT_EQ(values(f, "blk.1.attn_q.bias"), d.tensors.at("model.layers.1.self_attn.q_proj.bias").values);
  Matrix q = d.tensors.at("model.layers.1.self_attn.q_proj.weight").values;
  for (float& v : q) v = testing::round_to("F16", v);
  EXPECT_EQ(values(f, "blk.1.attn_q.weight"), q);  // NEOX RoPE: rows as HF has them
}

TEST_F(Convert, Qwen3HeadDimAndQkNorms) {
  TinySpec spec;
  spec.hf_arch = "Qwen3ForCausalLM";
  spec.head_dim = 32;  // 4 heads x 32 = 128, wider than hidden_size 64
  HfDir d = tiny(spec);
  d.write();
  const gguf::File f = convert_and_open(d);
  EXPECT_EQ(f.at("general.architecture").as_string(), "qwen3");
  EXPECT_EQ(u(f, "qwen3.attention.key_length"), 32u);
  EXPECT_EQ(u(f, "qwen3.attention.value_length"), 32u);
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->shape, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_k.weight")->shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_output.weight")->shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_q_norm.weight")->shape, (std::vector<int64_t>{32}));
  EXPECT_EQ(values(f, "blk.0.attn_k_norm.weight"), d.tensors.at("model.layers.0.self_attn.k_norm.weight").values);
  EXPECT_EQ(values(f, "blk.0.attn_q.weight"), d.tensors.at("model.layers.0.self_attn.q_proj.weight").values);
}

TEST_F(Convert, Qwen3MoeExpertsAndNormTopkProb) {
  TinySpec spec;
  spec.hf_arch = "Qwen3MoeForCausalLM";
  spec.head_dim = 16;
  spec.n_expert = 4;
  spec.n_expert_used = 2;
  spec.n_ff_exp = 48;
  HfDir d = tiny(spec);
  d.write();
  const gguf::File f = convert_and_open(d, DType::BF16);
  EXPECT_EQ(f.at("general.architecture").as_string(), "qwen3moe");
  EXPECT_EQ(u(f, "qwen3moe.expert_count"), 4u);
  EXPECT_EQ(u(f, "qwen3moe.expert_used_count"), 2u);
  EXPECT_EQ(u(f, "qwen3moe.expert_feed_forward_length"), 48u);
  EXPECT_EQ(u(f, "qwen3moe.feed_forward_length"), 80u);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate_inp.weight")->type, DType::F32);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_up_exps.weight")->type, DType::BF16);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate_exps.weight")->shape, (std::vector<int64_t>{64, 48, 4}));
  EXPECT_EQ(f.find_tensor("blk.0.ffn_down_exps.weight")->shape, (std::vector<int64_t>{48, 64, 4}));
  EXPECT_NE(f.find_tensor("blk.1.attn_q_norm.weight"), nullptr);
  const std::string e = "model.layers.0.mlp.experts.{}.";
  Matrix down = stacked(d, e + "down_proj.weight", 4);
  for (float& v : down) v = testing::round_to("BF16", v);
  EXPECT_EQ(values(f, "blk.0.ffn_down_exps.weight"), down);

  d.config["norm_topk_prob"] = false;
  d.write();
  const std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, "config.json")) << err;
  EXPECT_TRUE(contains(err, "norm_topk_prob")) << err;
  d.config.erase("norm_topk_prob");  // Qwen3MoeConfig's default is false
  d.write();
  EXPECT_TRUE(contains(convert_error(d), "norm_topk_prob"));
}

TEST_F(Convert, SplitOutput) {
  TinySpec spec;
  HfDir d = tiny(spec);
  d.write();
  const ConvertResult r = convert(d, DType::F32, /*split=*/40000);
  ASSERT_GT(r.paths.size(), 1u);
  const gguf::File f = gguf::File::open(r.paths[0]);
  EXPECT_EQ(static_cast<int64_t>(f.tensors().size()), r.n_tensors);
  EXPECT_EQ(values(f, "output.weight"), d.tensors.at("lm_head.weight").values);
}

// --- errors: each names the file and the field or tensor ---

TEST_F(Convert, ErrorMissingConfigField) {
  HfDir d = tiny(TinySpec{});
  d.config.erase("hidden_size");
  d.write();
  const std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, (d.path() / "config.json").string())) << err;
  EXPECT_TRUE(contains(err, "'hidden_size'")) << err;

  d.config["hidden_size"] = "sixty-four";
  d.write();
  EXPECT_TRUE(contains(convert_error(d), "'hidden_size'"));
}

TEST_F(Convert, ErrorUnknownArchitecture) {
  HfDir d = tiny(TinySpec{});
  d.config["architectures"] = {"GPT2LMHeadModel"};
  d.write();
  std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, "config.json")) << err;
  EXPECT_TRUE(contains(err, "'architectures'")) << err;
  EXPECT_TRUE(contains(err, "GPT2LMHeadModel")) << err;
  EXPECT_TRUE(contains(err, "Qwen3MoeForCausalLM")) << err;  // lists what is supported

  d.config.erase("architectures");
  d.write();
  err = convert_error(d);
  EXPECT_TRUE(contains(err, "'architectures'")) << err;
}

TEST_F(Convert, ErrorMissingTensor) {
  HfDir d = tiny(TinySpec{});
  d.tensors.erase("model.layers.1.mlp.up_proj.weight");
  d.write();
  const std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, "'model.layers.1.mlp.up_proj.weight'")) << err;
  EXPECT_TRUE(contains(err, "[80, 64]")) << err;
}

TEST_F(Convert, ErrorWrongShape) {
  HfDir d = tiny(TinySpec{});
  d.add("model.layers.0.self_attn.k_proj.weight", {64, 64});
  d.write();
  const std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, "model.safetensors")) << err;
  EXPECT_TRUE(contains(err, "'model.layers.0.self_attn.k_proj.weight'")) << err;
  EXPECT_TRUE(contains(err, "[64, 64]")) << err;
  EXPECT_TRUE(contains(err, "expected [32, 64]")) << err;
}

TEST_F(Convert, ErrorUnsupportedDtype) {
  HfDir d = tiny(TinySpec{});
  d.tensors["model.layers.0.mlp.gate_proj.weight"].dtype = "I32";
  d.write();
  const std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, "model.safetensors")) << err;
  EXPECT_TRUE(contains(err, "'model.layers.0.mlp.gate_proj.weight'")) << err;
  EXPECT_TRUE(contains(err, "I32")) << err;
}

TEST_F(Convert, ErrorUnexpectedTensorAndIgnoredOnes) {
  HfDir d = tiny(TinySpec{});
  d.add("model.layers.0.self_attn.rotary_emb.inv_freq", {8});  // dropped, as the converter does
  d.write();
  EXPECT_NO_THROW(convert(d));
  d.add("model.layers.0.mlp.extra_proj.weight", {8, 8});
  d.write();
  const std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, "'model.layers.0.mlp.extra_proj.weight'")) << err;
  EXPECT_TRUE(contains(err, "model.safetensors")) << err;
}

TEST_F(Convert, ErrorMissingFiles) {
  HfDir d = tiny(TinySpec{});
  d.write();
  fs::remove(d.path() / "tokenizer.json");
  std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, "tokenizer.json")) << err;
  fs::remove(d.path() / "config.json");
  err = convert_error(d);
  EXPECT_TRUE(contains(err, "config.json")) << err;
}

TEST_F(Convert, ErrorRopeScalingUnsupported) {
  HfDir d = tiny(TinySpec{});
  d.config["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
  d.write();
  std::string err = convert_error(d);
  EXPECT_TRUE(contains(err, "rope_scaling.rope_type")) << err;
  EXPECT_TRUE(contains(err, "longrope")) << err;

  TinySpec qwen;
  qwen.hf_arch = "Qwen2ForCausalLM";
  HfDir q = tiny(qwen, "Qwen");
  q.config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  q.write();
  err = convert_error(q);
  EXPECT_TRUE(contains(err, "llama3")) << err;
}

// --- the real binary ---

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(Convert, CliConvertsAndReportsErrors) {
  HfDir d = tiny(TinySpec{});
  d.write();
  const fs::path out = dir_ / "cli.gguf";
  auto run = [&](const std::string& args, std::string& err) {
    const std::string cmd = shell_quote(VELOCITY_BINARY) + " " + args + " >" + shell_quote((dir_ / "o.txt").string()) +
                            " 2>" + shell_quote((dir_ / "e.txt").string());
    const int status = std::system(cmd.c_str());
    err = slurp(dir_ / "e.txt");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  std::string err;
  ASSERT_EQ(run("convert " + shell_quote(d.path().string()) + " -o " + shell_quote(out.string()) + " --type Q8_0", err), 0)
      << err;
  EXPECT_TRUE(contains(slurp(dir_ / "o.txt"), "wrote " + out.string()));
  EXPECT_TRUE(contains(err, "blk.0.attn_q.weight")) << err;  // progress
  const gguf::File f = gguf::File::open(out.string());
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->type, DType::Q8_0);
  EXPECT_EQ(u(f, "general.file_type"), 7u);

  EXPECT_EQ(run("convert " + shell_quote(d.path().string()) + " -o " + shell_quote(out.string()) + " --type q4_k", err), 2);
  EXPECT_EQ(run("convert " + shell_quote(d.path().string()), err), 2);  // no -o

  d.config["architectures"] = {"BertModel"};
  d.write();
  ASSERT_EQ(run("convert -q " + shell_quote(d.path().string()) + " -o " + shell_quote((dir_ / "bad.gguf").string()), err), 1);
  EXPECT_TRUE(err.starts_with("velocity: error: ")) << err;
  EXPECT_TRUE(contains(err, "BertModel")) << err;
  EXPECT_FALSE(fs::exists(dir_ / "bad.gguf"));
}

}  // namespace
}  // namespace velocity::tools

namespace velocity::tools {
namespace {

// gpt-oss from the HF-reference fixture's directory (hub layout): the fused experts split and
// transposed as llama.cpp's GptOssModel does (gate = even columns of gate_up_proj [E, H, 2I],
// up = odd ones, down_proj [E, I, H] transposed), checked element by element; the keys; and
// the config fields whose other values would make another model.
TEST(ConvertGptOss, ExpertsSplitTransposedAndConfigChecked) {
  const fs::path fixture = fs::path(VELOCITY_SOURCE_DIR) / "tests" / "fixtures" / "hf" / "gptoss";
  if (!fs::exists(fixture / "config.json")) GTEST_SKIP() << fixture << " is missing";
  const fs::path dir = fs::temp_directory_path() / ("velocity-convert-gptoss-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "in");
  fs::copy(fixture, dir / "in", fs::copy_options::recursive);
  ConvertOptions o{.input_dir = (dir / "in").string(), .output = (dir / "out.gguf").string(), .type = DType::F32,
                   .quiet = true};
  convert_hf(o);
  const gguf::File f = gguf::File::open(o.output);
  const SafetensorsFile st = SafetensorsFile::open((fixture / "model.safetensors").string());
  auto hf = [&](const std::string& name, int64_t i) {
    const SafeTensor* t = st.find(name);
    EXPECT_NE(t, nullptr) << name;
    float v;
    std::memcpy(&v, t->data.data() + 4 * i, 4);
    return v;
  };
  const int64_t e_n = 4, h_n = 64, i_n = 32;
  const std::string x = "model.layers.2.mlp.experts.";
  const Matrix gate = values(f, "blk.2.ffn_gate_exps.weight"), up = values(f, "blk.2.ffn_up_exps.weight"),
               down = values(f, "blk.2.ffn_down_exps.weight"), gate_b = values(f, "blk.2.ffn_gate_exps.bias"),
               up_b = values(f, "blk.2.ffn_up_exps.bias");
  for (int64_t e = 0; e < e_n; ++e)
    for (int64_t r = 0; r < i_n; ++r) {
      for (int64_t k = 0; k < h_n; ++k) {
        ASSERT_EQ(gate[(e * i_n + r) * h_n + k], hf(x + "gate_up_proj", (e * h_n + k) * 2 * i_n + 2 * r));
        ASSERT_EQ(up[(e * i_n + r) * h_n + k], hf(x + "gate_up_proj", (e * h_n + k) * 2 * i_n + 2 * r + 1));
        ASSERT_EQ(down[(e * h_n + k) * i_n + r], hf(x + "down_proj", (e * i_n + r) * h_n + k));
      }
      ASSERT_EQ(gate_b[e * i_n + r], hf(x + "gate_up_proj_bias", e * 2 * i_n + 2 * r));
      ASSERT_EQ(up_b[e * i_n + r], hf(x + "gate_up_proj_bias", e * 2 * i_n + 2 * r + 1));
    }
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate_exps.weight")->shape, (std::vector<int64_t>{64, 32, 4}));
  EXPECT_EQ(f.find_tensor("blk.0.ffn_down_exps.weight")->shape, (std::vector<int64_t>{32, 64, 4}));
  EXPECT_EQ(f.find_tensor("blk.0.ffn_down_exps.bias")->shape, (std::vector<int64_t>{64, 4}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_sinks.weight")->shape, (std::vector<int64_t>{4}));
  EXPECT_NE(f.find_tensor("blk.0.post_attention_norm.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_norm.weight"), nullptr);
  EXPECT_EQ(f.at("general.architecture").as_string(), "gpt-oss");
  EXPECT_EQ(u(f, "gpt-oss.attention.sliding_window"), 8u);
  EXPECT_EQ(u(f, "gpt-oss.expert_feed_forward_length"), 32u);
  EXPECT_EQ(u(f, "gpt-oss.attention.key_length"), 32u);
  EXPECT_EQ(u(f, "gpt-oss.rope.scaling.original_context_length"), 64u);
  EXPECT_EQ(f.at("gpt-oss.rope.scaling.type").as_string(), "yarn");
  // Q8_0: experts quantised, router, biases and sinks F32.
  o.type = DType::Q8_0;
  convert_hf(o);
  const gguf::File q = gguf::File::open(o.output);
  EXPECT_EQ(q.find_tensor("blk.1.ffn_up_exps.weight")->type, DType::Q8_0);
  for (const char* name : {"blk.1.ffn_gate_inp.weight", "blk.1.ffn_up_exps.bias", "blk.1.attn_sinks.weight",
                           "blk.1.attn_output.bias"})
    EXPECT_EQ(q.find_tensor(name)->type, DType::F32) << name;

  // Config fields llama.cpp's gpt-oss fixes.
  const std::string text = [&] {
    std::ifstream in(fixture / "config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }();
  auto error_with = [&](const std::string& from, const std::string& to) {
    std::string edited = text;
    const size_t at = edited.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    edited.replace(at, from.size(), to);
    std::ofstream(dir / "in" / "config.json") << edited;
    try {
      convert_hf(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_TRUE(contains(error_with("\"truncate\": false", "\"truncate\": true"), "truncate"));
  EXPECT_TRUE(contains(error_with("\"attention_bias\": true", "\"attention_bias\": false"), "attention_bias"));
  EXPECT_TRUE(contains(error_with("\"sliding_attention\",\n    \"full_attention\"", "\"full_attention\",\n    \"sliding_attention\""),
                       "layer_types"));
  // transformers 5.17's save_pretrained leaves swiglu_limit out (the hub configs say 7.0): a
  // different limit, added, is refused.
  EXPECT_TRUE(contains(error_with("{", "{\n  \"swiglu_limit\": 5.0,"), "swiglu_limit"));
  fs::remove_all(dir);
}

// deepseek2 from the HF-reference fixture's directory (hub layout): kv_b_proj [H*(nope+v), R]
// split into attn_k_b {nope, R, H} (each head's key rows transposed) and attn_v_b {R, v, H} as
// llama.cpp's DeepseekV2Model does, element by element; the MLA keys; the MTP layers dropped;
// the YaRN fields whose other values would make another model.
TEST(ConvertDeepseek2, KvBSplitKeysAndConfigChecked) {
  const fs::path fixture = fs::path(VELOCITY_SOURCE_DIR) / "tests" / "fixtures" / "hf" / "deepseek3";
  if (!fs::exists(fixture / "config.json")) GTEST_SKIP() << fixture << " is missing";
  const fs::path dir = fs::temp_directory_path() / ("velocity-convert-ds2-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "in");
  fs::copy(fixture, dir / "in", fs::copy_options::recursive);
  ConvertOptions o{.input_dir = (dir / "in").string(), .output = (dir / "out.gguf").string(), .type = DType::F32,
                   .quiet = true};
  convert_hf(o);
  const gguf::File f = gguf::File::open(o.output);
  const SafetensorsFile st = SafetensorsFile::open((fixture / "model.safetensors").string());
  const SafeTensor* kv_b = st.find("model.layers.1.self_attn.kv_b_proj.weight");
  ASSERT_NE(kv_b, nullptr);
  auto hf = [&](int64_t i) {
    float v;
    std::memcpy(&v, kv_b->data.data() + 4 * i, 4);
    return v;
  };
  const int64_t h_n = 4, r = 32, nope = 32, dv = 32, per_head = nope + dv;
  const Matrix k_b = values(f, "blk.1.attn_k_b.weight"), v_b = values(f, "blk.1.attn_v_b.weight");
  for (int64_t h = 0; h < h_n; ++h)
    for (int64_t c = 0; c < r; ++c) {
      for (int64_t i = 0; i < nope; ++i) ASSERT_EQ(k_b[(h * r + c) * nope + i], hf((h * per_head + i) * r + c));
      for (int64_t j = 0; j < dv; ++j) ASSERT_EQ(v_b[(h * dv + j) * r + c], hf((h * per_head + nope + j) * r + c));
    }
  EXPECT_EQ(f.find_tensor("blk.1.attn_k_b.weight")->shape, (std::vector<int64_t>{32, 32, 4}));
  EXPECT_EQ(f.find_tensor("blk.1.attn_v_b.weight")->shape, (std::vector<int64_t>{32, 32, 4}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_kv_b.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("blk.1.attn_q_b.weight")->shape, (std::vector<int64_t>{48, 4 * 48}));
  EXPECT_EQ(f.find_tensor("blk.2.exp_probs_b.bias")->shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(f.find_tensor("blk.2.ffn_gate_shexp.weight")->shape, (std::vector<int64_t>{64, 32}));
  EXPECT_NE(f.find_tensor("blk.0.ffn_gate.weight"), nullptr);  // first_k_dense_replace 1
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate_inp.weight"), nullptr);
  EXPECT_EQ(f.at("general.architecture").as_string(), "deepseek2");
  EXPECT_EQ(u(f, "deepseek2.attention.head_count_kv"), 1u);
  EXPECT_EQ(u(f, "deepseek2.attention.key_length"), 48u);  // kv_lora_rank + rope
  EXPECT_EQ(u(f, "deepseek2.attention.value_length"), 32u);
  EXPECT_EQ(u(f, "deepseek2.attention.key_length_mla"), 48u);  // nope + rope
  EXPECT_EQ(u(f, "deepseek2.attention.value_length_mla"), 32u);
  EXPECT_EQ(u(f, "deepseek2.attention.q_lora_rank"), 48u);
  EXPECT_EQ(u(f, "deepseek2.rope.dimension_count"), 16u);
  EXPECT_EQ(u(f, "deepseek2.leading_dense_block_count"), 1u);
  EXPECT_EQ(u(f, "deepseek2.expert_gating_func"), 2u);
  EXPECT_EQ(u(f, "deepseek2.expert_group_count"), 4u);
  EXPECT_EQ(u(f, "deepseek2.expert_group_used_count"), 2u);
  EXPECT_FLOAT_EQ(fl(f, "deepseek2.expert_weights_scale"), 2.5f);
  EXPECT_TRUE(f.at("deepseek2.expert_weights_norm").get<bool>());
  EXPECT_FLOAT_EQ(fl(f, "deepseek2.rope.scaling.yarn_log_multiplier"), 0.1f);
  // Q8_0: the router and the selection bias stay F32.
  o.type = DType::Q8_0;
  convert_hf(o);
  const gguf::File q = gguf::File::open(o.output);
  EXPECT_EQ(q.find_tensor("blk.1.attn_k_b.weight")->type, DType::Q8_0);
  for (const char* name : {"blk.1.ffn_gate_inp.weight", "blk.1.exp_probs_b.bias", "blk.1.attn_kv_a_norm.weight"})
    EXPECT_EQ(q.find_tensor(name)->type, DType::F32) << name;

  // V3's MTP layer (model.layers.N, N = num_hidden_layers) is dropped, as llama.cpp drops it.
  const convert::HfConfig c = convert::read_hf_config((fixture / "config.json").string());
  EXPECT_TRUE(convert::is_ignored_source(c, "model.layers.3.eh_proj.weight"));
  EXPECT_TRUE(convert::is_ignored_source(c, "model.layers.3.mlp.experts.0.up_proj.weight"));
  EXPECT_FALSE(convert::is_ignored_source(c, "model.layers.2.mlp.experts.0.up_proj.weight"));
  EXPECT_FALSE(convert::is_ignored_source(c, "model.layers.x.foo"));

  const std::string text = [&] {
    std::ifstream in(fixture / "config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }();
  auto error_with = [&](const std::string& from, const std::string& to) {
    std::string edited = text;
    const size_t at = edited.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    edited.replace(at, from.size(), to);
    std::ofstream(dir / "in" / "config.json") << edited;
    try {
      convert_hf(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_TRUE(contains(error_with("\"mscale\": 1.0", "\"mscale\": 0.707"), "mscale_all_dim"));
  EXPECT_TRUE(contains(error_with("\"max_position_embeddings\": 256", "\"max_position_embeddings\": 512"),
                       "original_max_position_embeddings"));
  EXPECT_TRUE(contains(error_with("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 2"), "num_key_value_heads"));
  EXPECT_TRUE(contains(error_with("\"scoring_func\": \"sigmoid\"", "\"scoring_func\": \"tanh\""), "scoring_func"));
  fs::remove_all(dir);
}

// The same checkpoint with transformers 5's fused experts (gate_up_proj [E, 2F, D], gate rows
// first; down_proj [E, D, F]) converts to the same GGUF tensors as the hub's per-expert form.
TEST(ConvertDeepseek2, FusedExpertsEqualPerExpert) {
  const fs::path fixture = fs::path(VELOCITY_SOURCE_DIR) / "tests" / "fixtures" / "hf" / "deepseek2lite";
  if (!fs::exists(fixture / "config.json")) GTEST_SKIP() << fixture << " is missing";
  const fs::path dir = fs::temp_directory_path() / ("velocity-convert-ds2-fused-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "fused");
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) fs::copy(fixture / f, dir / "fused" / f);
  const SafetensorsFile st = SafetensorsFile::open((fixture / "model.safetensors").string());
  auto floats = [&](const std::string& name) {
    const SafeTensor* t = st.find(name);
    EXPECT_NE(t, nullptr) << name;
    std::vector<float> v(t->data.size() / 4);
    std::memcpy(v.data(), t->data.data(), t->data.size());
    return v;
  };
  const int64_t n_expert = 4, f = 32, d = 64;
  std::map<std::string, testing::HfTensor> out;
  for (const SafeTensor& t : st.tensors())
    if (t.name.find(".mlp.experts.") == std::string::npos) out[t.name] = {"F32", t.shape, floats(t.name)};
  for (int il = 1; il < 3; ++il) {
    const std::string x = "model.layers." + std::to_string(il) + ".mlp.experts.";
    testing::HfTensor gate_up{"F32", {n_expert, 2 * f, d}, {}}, down{"F32", {n_expert, d, f}, {}};
    for (int64_t e = 0; e < n_expert; ++e) {
      for (const char* part : {"gate_proj", "up_proj"}) {
        const auto v = floats(x + std::to_string(e) + "." + part + ".weight");
        gate_up.values.insert(gate_up.values.end(), v.begin(), v.end());
      }
      const auto v = floats(x + std::to_string(e) + ".down_proj.weight");
      down.values.insert(down.values.end(), v.begin(), v.end());
    }
    out[x + "gate_up_proj"] = gate_up;
    out[x + "down_proj"] = down;
  }
  testing::write_safetensors(dir / "fused" / "model.safetensors", out);
  ConvertOptions o{.input_dir = fixture.string(), .output = (dir / "hub.gguf").string(), .type = DType::F32,
                   .quiet = true};
  convert_hf(o);
  o.input_dir = (dir / "fused").string();
  o.output = (dir / "fused.gguf").string();
  convert_hf(o);
  const gguf::File hub = gguf::File::open((dir / "hub.gguf").string()), fused = gguf::File::open(o.output);
  ASSERT_EQ(hub.tensors().size(), fused.tensors().size());
  for (const gguf::TensorInfo& t : hub.tensors()) {
    const gguf::TensorInfo* u = fused.find_tensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.shape, u->shape) << t.name;
    EXPECT_TRUE(std::equal(t.bytes().begin(), t.bytes().end(), u->bytes().begin(), u->bytes().end())) << t.name;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace velocity::tools
