// Converted tiny models run through velocity's own loader and forward pass, against an
// independent float64 implementation of the Hugging Face models on the original (unconverted)
// weights: rotate_half RoPE (with Llama 3 frequency scaling as transformers computes it), GQA,
// RMSNorm, SwiGLU, QKV biases (Qwen2), per-head Q/K norms (Qwen3) and softmax-top-k-renormalised
// experts (Mixtral, Qwen3-MoE with norm_topk_prob). Logits of every position must agree: this
// checks names, shapes, keys and the llama Q/K permutation end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "convert_test_util.h"
#include "model/model.h"
#include "tools/convert.h"

namespace velocity::tools {
namespace {

namespace fs = std::filesystem;
using testing::HfDir;
using testing::TinySpec;
using Vec = std::vector<double>;

constexpr double kEps = 1e-5;          // fill_tiny's rms_norm_eps
constexpr double kRopeTheta = 500000;  // fill_tiny's rope_theta
// Llama 3 scaling with original_max_position_embeddings 64 instead of 8192, so that with 16-wide
// heads the three bands (unscaled, blended, divided by the factor) all show within 8 positions.
constexpr int64_t kLlama3OrigCtx = 64;

// w {rows, x.size()} row-major (PyTorch) times x.
Vec matvec(const std::vector<float>& w, const Vec& x, int64_t rows, size_t offset = 0) {
  Vec y(static_cast<size_t>(rows), 0.0);
  for (size_t r = 0; r < y.size(); ++r)
    for (size_t c = 0; c < x.size(); ++c) y[r] += double(w[offset + r * x.size() + c]) * x[c];
  return y;
}

Vec rms_norm(const Vec& x, const std::vector<float>& g) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double scale = 1 / std::sqrt(ss / double(x.size()) + kEps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * g[i];
  return y;
}

struct Rope {
  Vec inv_freq;  // [head_dim / 2]

  // transformers' default and llama3 (_compute_llama3_parameters) inverse frequencies.
  Rope(int64_t hd, bool llama3, double old_ctx) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      double f = 1 / std::pow(kRopeTheta, 2.0 * double(i) / double(hd));
      if (llama3) {
        const double factor = 8, low = 1, high = 4;
        const double wavelen = 2 * std::numbers::pi / f;
        if (wavelen > old_ctx / low) {
          f /= factor;
        } else if (wavelen >= old_ctx / high) {
          const double smooth = (old_ctx / wavelen - low) / (high - low);
          f = (1 - smooth) * f / factor + smooth * f;
        }
      }
      inv_freq.push_back(f);
    }
  }
  // rotate_half: dimension i pairs with i + head_dim/2, within each head.
  void apply(Vec& v, int64_t pos) const {
    const size_t hd = inv_freq.size() * 2;
    for (size_t h = 0; h < v.size() / hd; ++h)
      for (size_t i = 0; i < hd / 2; ++i) {
        const double c = std::cos(double(pos) * inv_freq[i]), s = std::sin(double(pos) * inv_freq[i]);
        const double a = v[h * hd + i], b = v[h * hd + i + hd / 2];
        v[h * hd + i] = a * c - b * s;
        v[h * hd + i + hd / 2] = b * c + a * s;
      }
  }
};

// The HF model's logits [n_tokens][n_vocab] for one sequence at positions 0, 1, ...
std::vector<Vec> hf_forward(const HfDir& d, const TinySpec& s, const std::vector<int>& ids, bool llama3) {
  auto w = [&](const std::string& n) -> const std::vector<float>& { return d.tensors.at(n).values; };
  auto has = [&](const std::string& n) { return d.tensors.contains(n); };
  const int64_t hd = s.hd(), n_q = s.n_head * hd, n_kv = s.n_head_kv * hd, n_embd = s.n_embd;
  const bool qwen3 = s.hf_arch.starts_with("Qwen3");
  const Rope rope(hd, llama3, kLlama3OrigCtx);
  const size_t n = ids.size();

  std::vector<Vec> x(n, Vec(static_cast<size_t>(n_embd)));
  for (size_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < n_embd; ++i) x[t][i] = w("model.embed_tokens.weight")[ids[t] * n_embd + i];

  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = "model.layers." + std::to_string(il) + ".";
    auto head_norm = [&](Vec& v, const std::string& name) {
      for (size_t h = 0; h < v.size() / hd; ++h) {
        Vec sub(v.begin() + h * hd, v.begin() + (h + 1) * hd);
        sub = rms_norm(sub, w(name));
        std::copy(sub.begin(), sub.end(), v.begin() + h * hd);
      }
    };
    auto add_bias = [&](Vec& v, const std::string& name) {
      if (has(name))
        for (size_t i = 0; i < v.size(); ++i) v[i] += w(name)[i];
    };
    std::vector<Vec> q(n), k(n), v(n);
    for (size_t t = 0; t < n; ++t) {
      const Vec h = rms_norm(x[t], w(p + "input_layernorm.weight"));
      q[t] = matvec(w(p + "self_attn.q_proj.weight"), h, n_q);
      k[t] = matvec(w(p + "self_attn.k_proj.weight"), h, n_kv);
      v[t] = matvec(w(p + "self_attn.v_proj.weight"), h, n_kv);
      add_bias(q[t], p + "self_attn.q_proj.bias");
      add_bias(k[t], p + "self_attn.k_proj.bias");
      add_bias(v[t], p + "self_attn.v_proj.bias");
      if (qwen3) {
        head_norm(q[t], p + "self_attn.q_norm.weight");
        head_norm(k[t], p + "self_attn.k_norm.weight");
      }
      rope.apply(q[t], int64_t(t));
      rope.apply(k[t], int64_t(t));
    }
    for (size_t t = 0; t < n; ++t) {
      Vec attn(static_cast<size_t>(n_q), 0.0);
      for (int64_t h = 0; h < s.n_head; ++h) {
        const int64_t kh = h / (s.n_head / s.n_head_kv);
        Vec score(t + 1);
        for (size_t u = 0; u <= t; ++u) {
          for (int64_t i = 0; i < hd; ++i) score[u] += q[t][h * hd + i] * k[u][kh * hd + i];
          score[u] /= std::sqrt(double(hd));
        }
        const double mx = *std::max_element(score.begin(), score.end());
        double sum = 0;
        for (double& a : score) sum += (a = std::exp(a - mx));
        for (size_t u = 0; u <= t; ++u)
          for (int64_t i = 0; i < hd; ++i) attn[h * hd + i] += score[u] / sum * v[u][kh * hd + i];
      }
      const Vec o = matvec(w(p + "self_attn.o_proj.weight"), attn, n_embd);
      for (int64_t i = 0; i < n_embd; ++i) x[t][i] += o[i];

      const Vec h = rms_norm(x[t], w(p + "post_attention_layernorm.weight"));
      auto swiglu = [&](const std::string& gate, const std::string& up, const std::string& down, int64_t n_ff) {
        Vec g = matvec(w(gate), h, n_ff);
        const Vec u = matvec(w(up), h, n_ff);
        for (int64_t i = 0; i < n_ff; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
        return matvec(w(down), g, n_embd);
      };
      Vec ffn(static_cast<size_t>(n_embd), 0.0);
      if (s.n_expert == 0) {
        ffn = swiglu(p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight", s.n_ff);
      } else {
        const bool mixtral = s.hf_arch == "MixtralForCausalLM";
        const std::string e = p + (mixtral ? "block_sparse_moe." : "mlp.");
        Vec prob = matvec(w(e + "gate.weight"), h, s.n_expert);
        const double mx = *std::max_element(prob.begin(), prob.end());
        for (double& a : prob) a = std::exp(a - mx);
        std::vector<int64_t> order(static_cast<size_t>(s.n_expert));
        for (int64_t i = 0; i < s.n_expert; ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return prob[a] > prob[b]; });
        double top_sum = 0;
        for (int64_t j = 0; j < s.n_expert_used; ++j) top_sum += prob[order[j]];
        for (int64_t j = 0; j < s.n_expert_used; ++j) {
          const std::string x_e = e + "experts." + std::to_string(order[j]) + ".";
          const Vec y = mixtral ? swiglu(x_e + "w1.weight", x_e + "w3.weight", x_e + "w2.weight", s.n_ff)
                                : swiglu(x_e + "gate_proj.weight", x_e + "up_proj.weight", x_e + "down_proj.weight",
                                         s.n_ff_exp);
          for (int64_t i = 0; i < n_embd; ++i) ffn[i] += prob[order[j]] / top_sum * y[i];
        }
      }
      for (int64_t i = 0; i < n_embd; ++i) x[t][i] += ffn[i];
    }
  }
  std::vector<Vec> logits;
  for (const Vec& xt : x)
    logits.push_back(matvec(w(s.tied ? "model.embed_tokens.weight" : "lm_head.weight"),
                            rms_norm(xt, w("model.norm.weight")), s.n_vocab));
  return logits;
}

class ConvertModel : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("velocity-convert-model-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void check(const TinySpec& spec, bool llama3 = false) {
    HfDir d(dir_ / "hf");
    testing::fill_tiny(d, spec);
    if (llama3)
      d.config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                  {"high_freq_factor", 4.0}, {"original_max_position_embeddings", kLlama3OrigCtx}};
    d.write();
    ConvertOptions o;
    o.input_dir = d.path().string();
    o.output = (dir_ / "m.gguf").string();
    o.type = DType::F32;
    o.quiet = true;
    convert_hf(o);

    model::LoadOptions lo;
    lo.cache_type_k = DType::F32;
    lo.cache_type_v = DType::F32;
    lo.n_threads = 1;
    const auto m = model::Model::load(o.output, lo);
    const std::vector<int> ids = {1, 8, 3, 5, 7, 2, 0, 9};
    engine::Batch batch;
    for (size_t i = 0; i < ids.size(); ++i) batch.add(ids[i], static_cast<int32_t>(i), 0, true);
    const std::span<const float> got = m->forward(batch);
    const std::vector<Vec> want = hf_forward(d, spec, ids, llama3);

    double max_err = 0, max_ref = 0;
    for (size_t t = 0; t < ids.size(); ++t)
      for (int64_t v = 0; v < spec.n_vocab; ++v) {
        max_err = std::max(max_err, std::fabs(got[t * spec.n_vocab + v] - want[t][v]));
        max_ref = std::max(max_ref, std::fabs(want[t][v]));
      }
    EXPECT_LT(max_err, 1e-4 * max_ref) << "max |logit| " << max_ref;
  }

  fs::path dir_;
};

TEST_F(ConvertModel, Llama) { check(TinySpec{}); }

TEST_F(ConvertModel, Llama3RopeScaling) { check(TinySpec{}, /*llama3=*/true); }

TEST_F(ConvertModel, MistralTiedEmbeddings) {
  TinySpec s;
  s.hf_arch = "MistralForCausalLM";
  s.tied = true;
  check(s);
}

TEST_F(ConvertModel, Mixtral) {
  TinySpec s;
  s.hf_arch = "MixtralForCausalLM";
  s.n_expert = 4;
  s.n_expert_used = 2;
  check(s);
}

TEST_F(ConvertModel, Qwen2) {
  TinySpec s;
  s.hf_arch = "Qwen2ForCausalLM";
  check(s);
}

TEST_F(ConvertModel, Qwen3WithWideHeads) {
  TinySpec s;
  s.hf_arch = "Qwen3ForCausalLM";
  s.head_dim = 32;
  check(s);
}

TEST_F(ConvertModel, Qwen3Moe) {
  TinySpec s;
  s.hf_arch = "Qwen3MoeForCausalLM";
  s.head_dim = 16;
  s.n_expert = 4;
  s.n_expert_used = 2;
  s.n_ff_exp = 48;
  check(s);
}

}  // namespace
}  // namespace velocity::tools
