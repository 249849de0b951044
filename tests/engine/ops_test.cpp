// CPU backend primitive ops and blocks against double-precision formulas written here,
// independently of the backend's code.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/quant.h"
#include "engine/backend.h"

namespace velocity::engine {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<CpuIsa> available_isas() {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512})
    if (cpu_supports(cpu_features(), isa)) isas.push_back(isa);
  return isas;
}

struct Fixture {
  std::unique_ptr<Backend> backend = make_cpu_backend(2);
  std::vector<std::vector<float>> keep;  // weight storage (the backend keeps pointers)

  Weight weight(const std::vector<float>& data, std::vector<int64_t> shape) {
    keep.push_back(data);
    return backend->upload("w", DType::F32, shape, reinterpret_cast<const uint8_t*>(keep.back().data()));
  }
  Act act(const std::vector<float>& data, int64_t rows, int64_t cols) {
    Act a = backend->alloc(rows, cols);
    a.n_rows = rows;
    std::copy(data.begin(), data.end(), a.data);
    return a;
  }
};

StepShape small_shape() {
  StepShape s;
  s.max_tokens = 16;
  s.max_logits = 16;
  s.n_embd = 32;
  s.n_vocab = 50;
  s.n_layer = 2;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim_k = 32;
  s.head_dim_v = 32;
  s.n_ff = 48;
  s.n_slots = 3;
  s.n_ctx = 20;
  s.cache_type_k = DType::F32;
  s.cache_type_v = DType::F32;
  return s;
}

TEST(CpuOps, RmsNormMatchesFormula) {
  Fixture f;
  f.backend->reserve(small_shape());
  const auto x = random_vector(3 * 32, 1), w = random_vector(32, 2);
  Act in = f.act(x, 3, 32), out = f.backend->alloc(3, 32);
  f.backend->rms_norm(in, f.weight(w, {32}), 1e-5f, out);
  for (int t = 0; t < 3; ++t) {
    double ss = 0;
    for (int i = 0; i < 32; ++i) ss += double(x[t * 32 + i]) * x[t * 32 + i];
    const double s = 1 / std::sqrt(ss / 32 + 1e-5);
    for (int i = 0; i < 32; ++i) EXPECT_NEAR(out.row(t)[i], x[t * 32 + i] * s * w[i], 1e-5);
  }
}

// Every ISA's kernel, on gates from -120 to 120 (past the ends of float exp) and a row length
// that leaves vector tails, in place (out aliasing gate, as the MoE path calls it) too.
TEST(CpuOps, SwigluMatchesFormula) {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512})
    if (cpu_supports(cpu_features(), isa)) isas.push_back(isa);
  for (CpuIsa isa : isas) {
    SCOPED_TRACE(std::string(cpu_isa_name(isa)));
    set_cpu_isa_for_testing(isa);
    Fixture f;
    f.backend->reserve(small_shape());
    const int64_t cols = 47;
    auto g = random_vector(2 * cols, 3, 3);
    const auto u = random_vector(2 * cols, 4);
    for (int64_t i = 0; i < 9; ++i) g[i] = -120.0f + 30.0f * i;  // -120, -90, ..., 120
    for (bool in_place : {false, true}) {
      Act ga = f.act(g, 2, cols), ua = f.act(u, 2, cols), out = in_place ? ga : f.backend->alloc(2, cols);
      f.backend->swiglu(ga, ua, out);
      for (size_t i = 0; i < g.size(); ++i) {
        const double ref = g[i] / (1 + std::exp(-double(g[i]))) * u[i];
        EXPECT_NEAR(out.data[i], ref, 1e-6 * std::max(1.0, std::abs(ref))) << "g " << g[i] << " in place " << in_place;
      }
    }
    set_cpu_isa_for_testing(std::nullopt);
  }
}

// gpt-oss's clamped SwiGLU, every ISA's backend, values on both sides of the limit.
TEST(CpuOps, SwigluClampedMatchesFormula) {
  for (CpuIsa isa : available_isas()) {
    SCOPED_TRACE(std::string(cpu_isa_name(isa)));
    set_cpu_isa_for_testing(isa);
    Fixture f;
    f.backend->reserve(small_shape());
    const int64_t cols = 47;
    const auto g = random_vector(2 * cols, 3, 6), u = random_vector(2 * cols, 4, 6);
    int clamped = 0;
    for (bool in_place : {false, true}) {
      Act ga = f.act(g, 2, cols), ua = f.act(u, 2, cols), out = in_place ? ga : f.backend->alloc(2, cols);
      f.backend->swiglu_clamped(ga, ua, ExpertGlu{ExpertGlu::Kind::Clamped, 1.702f, 7.0f}, out);
      for (size_t i = 0; i < g.size(); ++i) {
        const double gc = std::min(double(g[i]), 7.0), uc = std::clamp(double(u[i]), -7.0, 7.0);
        clamped += gc != g[i] || uc != u[i];
        const double ref = (uc + 1) * gc / (1 + std::exp(-1.702 * gc));
        EXPECT_NEAR(out.data[i], ref, 1e-5 * std::max(1.0, std::abs(ref))) << "g " << g[i] << " u " << u[i];
      }
    }
    EXPECT_GT(clamped, 10);  // the clamp is exercised
    set_cpu_isa_for_testing(std::nullopt);
  }
}

// YaRN as Hugging Face computes it (transformers modeling_rope_utils, yarn with truncate False,
// written out here): inv_freq = interp * (1 - extrapolation_factor) + extrap * extrapolation_factor,
// extrapolation_factor = 1 - clamp((i - low) / (high - low), 0, 1), cos and sin scaled by
// 0.1 ln(factor) + 1. With n_rot 32, base 1.5e5, original context 64: low = 0, high = 3.116, so
// pair 0 keeps its frequency, pairs 1..3 blend, pairs 4.. are divided by the factor.
TEST(CpuOps, RopeYarnMatchesHuggingFace) {
  for (bool truncate : {false, true}) {
    Fixture f;
    f.backend->reserve(small_shape());
    Batch batch;
    const std::vector<int32_t> positions = {0, 3, 19};
    for (int32_t p : positions) batch.add(1, p, 0, false);
    f.backend->begin_step(batch);
    const int64_t hd = 32, n_heads = 2;
    const auto x = random_vector(3 * n_heads * hd, 5);
    Act a = f.act(x, 3, n_heads * hd);
    RopeParams rp;
    rp.type = RopeType::Neox;
    rp.n_rot = 32;
    rp.freq_base = 150000.0f;
    rp.yarn_factor = 4.0f;
    rp.yarn_orig_ctx = 64;
    rp.yarn_beta_fast = 32.0f;
    rp.yarn_beta_slow = 1.0f;
    rp.yarn_truncate = truncate;
    rp.attn_factor = static_cast<float>(0.1 * std::log(4.0) + 1.0);
    f.backend->rope(a, hd, rp);
    auto corr = [](double rot) { return 32 * std::log(64 / (rot * 2 * M_PI)) / (2 * std::log(150000.0)); };
    double low = corr(32), high = corr(1);
    if (truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0), high = std::min(high, 31.0);
    ASSERT_NEAR(high, truncate ? 4.0 : 3.1158, 1e-3);
    for (int t = 0; t < 3; ++t)
      for (int h = 0; h < n_heads; ++h) {
        const float* in = x.data() + (t * n_heads + h) * hd;
        const float* out = a.row(t) + h * hd;
        for (int i = 0; i < 16; ++i) {
          const double pos_freq = std::pow(150000.0, 2.0 * i / 32);
          const double extrap = 1 / pos_freq, interp = 1 / (4 * pos_freq);
          const double extrapolation_factor = 1 - std::clamp((i - low) / (high - low), 0.0, 1.0);
          const double inv = interp * (1 - extrapolation_factor) + extrap * extrapolation_factor;
          if (i == 0) {
            EXPECT_EQ(inv, extrap);
          }
          if (i >= 4) {
            EXPECT_DOUBLE_EQ(inv, interp);
          }
          const double theta = positions[t] * inv, m = 0.1 * std::log(4.0) + 1;
          EXPECT_NEAR(out[i], (in[i] * std::cos(theta) - in[i + 16] * std::sin(theta)) * m, 1e-5);
          EXPECT_NEAR(out[i + 16], (in[i + 16] * std::cos(theta) + in[i] * std::sin(theta)) * m, 1e-5);
        }
      }
  }
}

// RoPE as complex rotation: pair (a, b) of dim i -> (a + ib) * e^{i p theta_i}.
void check_rope(RopeType type, const float* factors) {
  Fixture f;
  f.backend->reserve(small_shape());
  Batch batch;
  const std::vector<int32_t> positions = {0, 1, 7, 19};
  for (int32_t p : positions) batch.add(1, p, 0, false);
  f.backend->begin_step(batch);
  const int64_t hd = 32, n_heads = 2, n_rot = 24;  // partial rotation: dims 24..31 untouched
  const auto x = random_vector(4 * n_heads * hd, 5);
  Act a = f.act(x, 4, n_heads * hd);
  RopeParams rp;
  rp.type = type;
  rp.n_rot = n_rot;
  rp.freq_base = 500.0f;
  rp.freq_scale = 0.5f;
  if (factors) rp.freq_factors = f.weight(std::vector<float>(factors, factors + n_rot / 2), {n_rot / 2});
  f.backend->rope(a, hd, rp);
  for (int t = 0; t < 4; ++t)
    for (int h = 0; h < n_heads; ++h) {
      const float* in = x.data() + (t * n_heads + h) * hd;
      const float* out = a.row(t) + h * hd;
      for (int i = 0; i < n_rot / 2; ++i) {
        const int ia = type == RopeType::Neox ? i : 2 * i, ib = type == RopeType::Neox ? i + n_rot / 2 : 2 * i + 1;
        double theta = positions[t] * 0.5 * std::pow(500.0, -2.0 * i / n_rot);
        if (factors) theta /= factors[i];
        const double ra = in[ia] * std::cos(theta) - in[ib] * std::sin(theta);
        const double rb = in[ia] * std::sin(theta) + in[ib] * std::cos(theta);
        EXPECT_NEAR(out[ia], ra, 1e-5);
        EXPECT_NEAR(out[ib], rb, 1e-5);
      }
      for (int i = n_rot; i < hd; ++i) EXPECT_EQ(out[i], in[i]);
    }
}

TEST(CpuOps, RopeNormalMatchesRotation) { check_rope(RopeType::Normal, nullptr); }
TEST(CpuOps, RopeNeoxMatchesRotation) { check_rope(RopeType::Neox, nullptr); }
TEST(CpuOps, RopeFrequencyFactors) {
  std::vector<float> factors(12);
  for (size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + 0.7f * i;
  check_rope(RopeType::Normal, factors.data());
}

// Naive attention in double over explicitly kept K/V histories, per sequence, for one ISA's
// kernel, cache types, head dim and GQA grouping. Histories reach 41 positions, so vector loops
// and their tails (8 and 16 floats) are both exercised.
struct AttentionCase {
  CpuIsa isa;
  DType cache_k, cache_v;
  int64_t hd, nh, nkv;
  int64_t window = 0;  // sliding window (0: none)
  bool sinks = false;  // random per-head sink logits
};

void check_attention(const AttentionCase& c) {
  set_cpu_isa_for_testing(c.isa);
  Fixture f;
  StepShape s = small_shape();
  s.cache_type_k = c.cache_k;
  s.cache_type_v = c.cache_v;
  s.n_head = c.nh;
  s.n_head_kv = c.nkv;
  s.head_dim_k = s.head_dim_v = c.hd;
  s.max_tokens = s.max_logits = 40;
  s.n_ctx = 48;
  f.backend->reserve(s);
  const int64_t hd = c.hd, nh = c.nh, nkv = c.nkv;
  AttentionParams p;
  p.layer = 1;
  p.n_head = nh;
  p.n_head_kv = nkv;
  p.head_dim_k = p.head_dim_v = hd;
  p.window = c.window;
  const auto sinks = random_vector(nh, 99, 2.0f);
  if (c.sinks) p.sinks = f.weight(sinks, {nh});
  // History per sequence: k/v rows [pos][kv head][hd].
  std::vector<std::vector<float>> hist_k(3), hist_v(3);
  std::vector<int32_t> next_pos(3, 0);
  // Step 1: prefill seq 0 (5 tokens) and seq 2 (3 tokens); step 2: decode 1 token on 0, 1, 2;
  // step 3: a 33-token chunk on seq 0; then decode on 0 and 2.
  std::vector<std::vector<int32_t>> steps = {{0, 0, 0, 0, 0, 2, 2, 2}, {0, 1, 2}, std::vector<int32_t>(33, 0), {2, 0}};
  double max_err = 0, max_ref = 0;
  uint32_t seed = 10;
  for (const auto& seqs : steps) {
    Batch b;
    for (int32_t sq : seqs) b.add(0, next_pos[sq]++, sq, false);
    f.backend->begin_step(b);
    const int64_t n = b.size();
    const auto q = random_vector(n * nh * hd, seed++), k = random_vector(n * nkv * hd, seed++),
               v = random_vector(n * nkv * hd, seed++);
    Act qa = f.act(q, n, nh * hd), ka = f.act(k, n, nkv * hd), va = f.act(v, n, nkv * hd),
        out = f.backend->alloc(n, nh * hd);
    f.backend->attention(p, qa, ka, va, out);
    for (int64_t t = 0; t < n; ++t) {
      const int32_t sq = b.seq_ids[t];
      hist_k[sq].insert(hist_k[sq].end(), k.begin() + t * nkv * hd, k.begin() + (t + 1) * nkv * hd);
      hist_v[sq].insert(hist_v[sq].end(), v.begin() + t * nkv * hd, v.begin() + (t + 1) * nkv * hd);
    }
    for (int64_t t = 0; t < n; ++t) {
      const int32_t sq = b.seq_ids[t], pos = b.positions[t];
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t hk = h / (nh / nkv);
        // Positions in the window (all of [0, pos] without one); -inf for the others, as a mask.
        std::vector<double> sc(pos + 1, -INFINITY);
        for (int j = 0; j <= pos; ++j) {
          if (c.window > 0 && pos - j >= c.window) continue;
          double d = 0;
          for (int i = 0; i < hd; ++i) d += double(q[(t * nh + h) * hd + i]) * hist_k[sq][(j * nkv + hk) * hd + i];
          sc[j] = d / std::sqrt(double(hd));
        }
        double mx = *std::max_element(sc.begin(), sc.end());
        if (c.sinks) mx = std::max(mx, double(sinks[h]));
        double sum = c.sinks ? std::exp(sinks[h] - mx) : 0.0;  // the sink takes mass, adds no value
        for (double& x : sc) sum += x = std::exp(x - mx);
        for (int i = 0; i < hd; ++i) {
          double o = 0;
          for (int j = 0; j <= pos; ++j) o += sc[j] / sum * hist_v[sq][(j * nkv + hk) * hd + i];
          max_err = std::max(max_err, std::abs(o - out.row(t)[h * hd + i]));
          max_ref = std::max(max_ref, std::abs(o));
        }
      }
    }
  }
  set_cpu_isa_for_testing(std::nullopt);
  // F32 cache: float rounding only. F16: 2^-11 relative per element. Q8_0: 1/254 of a block's
  // max per element; Q5_1: 1/62 of a block's range; Q4_0 and Q4_1: 1/16 and 1/30 of it — errors
  // average out over the softmax but scores move by |q||dk|, so the bounds are loose and checked
  // to be orders apart.
  auto is = [&](DType t) { return c.cache_k == t || c.cache_v == t; };
  const double bound = is(DType::Q4_0) || is(DType::Q4_1) ? 0.4
                       : is(DType::Q5_1)                  ? 0.2
                       : is(DType::Q8_0)                  ? 3e-2
                       : is(DType::F16)                   ? 3e-3
                                                          : 1e-5;
  EXPECT_LT(max_err / max_ref, bound) << "max_err " << max_err << " max_ref " << max_ref;
}

TEST(CpuOps, AttentionMatchesNaiveAcrossSequencesAndSteps) {
  for (CpuIsa isa : available_isas()) {
    for (DType cache : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_1}) {
      for (auto [hd, nh, nkv] : {std::tuple{32, 4, 2}, std::tuple{64, 8, 1}, std::tuple{96, 3, 3}, std::tuple{128, 8, 2}}) {
        SCOPED_TRACE(fmt::format("{} {} hd={} heads={}/{}", cpu_isa_name(isa), dtype_name(cache), hd, nh, nkv));
        check_attention({isa, cache, cache, hd, nh, nkv});
      }
    }
    // Head dims that are not a multiple of any vector width (float caches only), and mixed K/V types.
    for (DType cache : {DType::F32, DType::F16}) {
      SCOPED_TRACE(fmt::format("{} {} hd=36", cpu_isa_name(isa), dtype_name(cache)));
      check_attention({isa, cache, cache, 36, 4, 2});
    }
    SCOPED_TRACE(fmt::format("{} k=q8_0 v=f16", cpu_isa_name(isa)));
    check_attention({isa, DType::Q8_0, DType::F16, 64, 4, 2});
    SCOPED_TRACE(fmt::format("{} k=q4_1 v=q5_1", cpu_isa_name(isa)));
    check_attention({isa, DType::Q4_1, DType::Q5_1, 64, 4, 2});
  }
}

// gpt-oss attention: a sliding window shorter than the histories (3, 8: a window inside one 32-
// position kernel block and one that is not) and per-head sinks, alone and together, with the
// 33-token chunk crossing the window's edge many times.
TEST(CpuOps, AttentionWindowAndSinksMatchNaive) {
  for (CpuIsa isa : available_isas()) {
    for (DType cache : {DType::F32, DType::F16}) {
      for (auto [window, sinks] : {std::tuple{int64_t{3}, false}, std::tuple{int64_t{8}, false},
                                   std::tuple{int64_t{0}, true}, std::tuple{int64_t{8}, true}}) {
        for (auto [hd, nh, nkv] : {std::tuple{64, 8, 2}, std::tuple{36, 4, 2}}) {
          SCOPED_TRACE(fmt::format("{} {} hd={} window={} sinks={}", cpu_isa_name(isa), dtype_name(cache), hd, window,
                                   sinks));
          check_attention({isa, cache, cache, hd, nh, nkv, window, sinks});
        }
      }
    }
  }
}

// The window and the sinks change the result (the naive reference above could otherwise agree
// with an engine that ignores them only because both ignore them).
TEST(CpuOps, AttentionWindowAndSinksMatter) {
  auto run = [](int64_t window, bool with_sinks) {
    Fixture f;
    StepShape s = small_shape();
    f.backend->reserve(s);
    Batch b;
    for (int32_t i = 0; i < 12; ++i) b.add(0, i, 0, false);
    f.backend->begin_step(b);
    AttentionParams p;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.head_dim_k = p.head_dim_v = 32;
    p.window = window;
    if (with_sinks) p.sinks = f.weight(std::vector<float>{1.0f, -1.0f, 2.0f, 0.5f}, {4});
    Act q = f.act(random_vector(12 * 128, 1), 12, 128), k = f.act(random_vector(12 * 64, 2), 12, 64),
        v = f.act(random_vector(12 * 64, 3), 12, 64), out = f.backend->alloc(12, 128);
    f.backend->attention(p, q, k, v, out);
    return std::vector<float>(out.row(11), out.row(11) + 128);
  };
  const auto plain = run(0, false);
  EXPECT_NE(plain, run(4, false));
  EXPECT_NE(plain, run(0, true));
  EXPECT_EQ(plain, run(12, false));  // a window as long as the history is no window
}

TEST(CpuOps, MoeRouteTopKMatchesSort) {
  Fixture f;
  StepShape s = small_shape();
  s.n_expert = 8;
  s.n_expert_used = 3;
  s.n_ff_expert = 16;
  f.backend->reserve(s);
  const auto logits = random_vector(5 * 8, 21, 2);
  Act la = f.act(logits, 5, 8);
  for (bool norm : {true, false}) {
    MoeParams p{8, 3, norm};
    std::vector<int32_t> ids(15);
    std::vector<float> w(15);
    MoeRoute r{ids.data(), w.data(), 5, 3};
    f.backend->moe_route(la, p, r);
    for (int t = 0; t < 5; ++t) {
      std::vector<int> order(8);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[t * 8 + a] > logits[t * 8 + b]; });
      double z = 0, picked = 0;
      for (int e = 0; e < 8; ++e) z += std::exp(double(logits[t * 8 + e]));
      for (int j = 0; j < 3; ++j) picked += std::exp(double(logits[t * 8 + order[j]])) / z;
      for (int j = 0; j < 3; ++j) {
        EXPECT_EQ(ids[t * 3 + j], order[j]);
        const double pj = std::exp(double(logits[t * 8 + order[j]])) / z;
        EXPECT_NEAR(w[t * 3 + j], norm ? pj / picked : pj, 1e-6);
      }
    }
  }
}

// DeepSeek's routing: sigmoid scores, a selection-only bias, 4 groups of 2 ranked by the sum of
// their two best (biased) scores with 2 groups used, renormalised then scaled weights; and softmax
// without renormalisation, scaled. Against a sort written here.
TEST(CpuOps, MoeRouteGroupedSigmoidMatchesSort) {
  Fixture f;
  StepShape s = small_shape();
  s.n_expert = 8;
  s.n_expert_used = 3;
  s.n_ff_expert = 16;
  f.backend->reserve(s);
  const int n = 6, ne = 8, k = 3;
  const auto logits = random_vector(n * ne, 23, 1.5f), bias = random_vector(ne, 24, 0.3f);
  Act la = f.act(logits, n, ne);
  for (bool sigmoid : {true, false}) {
    MoeParams p{ne, k, sigmoid};
    p.scoring = sigmoid ? MoeParams::Scoring::Sigmoid : MoeParams::Scoring::Softmax;
    p.weights_scale = 2.5f;
    if (sigmoid) {
      p.selection_bias = f.weight(bias, {ne});
      p.n_group = 4;
      p.n_group_used = 2;
    }
    std::vector<int32_t> ids(n * k);
    std::vector<float> w(n * k);
    MoeRoute r{ids.data(), w.data(), n, k};
    f.backend->moe_route(la, p, r);
    int group_mattered = 0;
    for (int t = 0; t < n; ++t) {
      std::vector<double> score(ne), choice(ne);
      double z = 0;
      for (int e = 0; e < ne; ++e) z += std::exp(double(logits[t * ne + e]));
      for (int e = 0; e < ne; ++e) {
        const double l = logits[t * ne + e];
        score[e] = sigmoid ? 1 / (1 + std::exp(-l)) : std::exp(l) / z;
        choice[e] = score[e] + (sigmoid ? bias[e] : 0.0);
      }
      std::vector<int> allowed(ne, 1);
      if (sigmoid) {
        std::vector<std::pair<double, int>> groups;
        for (int g = 0; g < 4; ++g) groups.push_back({-(choice[2 * g] + choice[2 * g + 1]), g});
        std::sort(groups.begin(), groups.end());
        std::fill(allowed.begin(), allowed.end(), 0);
        for (int j = 0; j < 2; ++j) allowed[2 * groups[j].second] = allowed[2 * groups[j].second + 1] = 1;
      }
      std::vector<int> order;
      for (int e = 0; e < ne; ++e)
        if (allowed[e]) order.push_back(e);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return choice[a] > choice[b]; });
      std::vector<int> unrestricted(ne);
      std::iota(unrestricted.begin(), unrestricted.end(), 0);
      std::stable_sort(unrestricted.begin(), unrestricted.end(), [&](int a, int b) { return choice[a] > choice[b]; });
      double picked = 0;
      for (int j = 0; j < k; ++j) picked += score[order[j]];
      for (int j = 0; j < k; ++j) {
        EXPECT_EQ(ids[t * k + j], order[j]) << "token " << t;
        group_mattered += order[j] != unrestricted[j];
        const double expect = (sigmoid ? score[order[j]] / picked : score[order[j]]) * 2.5;
        EXPECT_NEAR(w[t * k + j], expect, 1e-6);
      }
    }
    if (sigmoid) {
      EXPECT_GT(group_mattered, 0) << "the groups never changed a choice: the check would not see them";
    }
  }
}

// Multi-head latent attention (absorbed, over the latent cache) against the plain per-head form
// written here in double: k_nope[h] = W_uk[h] c, v[h] = W_uv[h] c with c = rms_norm(latent) * w,
// the shared rope key rotated, scores scale * (q_nope . k_nope + q_rope . k_rope), over prefill,
// decode and a long chunk on three sequences, for the cache types MLA's latent takes.
void check_mla(CpuIsa isa, DType cache) {
  set_cpu_isa_for_testing(isa);
  Fixture f;
  const int64_t nh = 4, r = 64, rope = 32, nope = 16, dv = 24, dq = nope + rope, dk = r + rope, d = 32;
  StepShape s = small_shape();
  s.n_embd = d;
  s.n_head = nh;
  s.n_head_kv = 1;
  s.head_dim_k = dk;
  s.head_dim_v = r;
  s.kv_shared_v = true;
  s.mla_q_dim = nh * dq;
  s.mla_out_dim = nh * dv;
  s.cache_type_k = s.cache_type_v = cache;
  s.max_tokens = s.max_logits = 40;
  s.n_ctx = 48;
  f.backend->reserve(s);
  const auto k_b = random_vector(nh * r * nope, 61, 0.3f), v_b = random_vector(nh * dv * r, 62, 0.3f),
             norm_w = random_vector(r, 63, 0.5f);
  MlaLayer layer;
  layer.wk_b = f.weight(k_b, {nope, r, nh});
  layer.wv_b = f.weight(v_b, {r, dv, nh});
  layer.kv_a_norm = f.weight(norm_w, {r});
  MlaParams p;
  p.layer = 1;
  p.n_head = nh;
  p.kv_lora_rank = r;
  p.qk_nope = nope;
  p.qk_rope = rope;
  p.v_head_dim = dv;
  p.norm_eps = 1e-6f;
  p.scale = 0.17f;
  p.rope.type = RopeType::Normal;
  p.rope.n_rot = static_cast<int32_t>(rope);
  p.rope.freq_base = 10000.0f;
  auto rotate = [&](std::vector<double>& x, int pos) {  // pairs (2i, 2i+1), theta = pos * base^(-2i/rope)
    for (int i = 0; i < rope / 2; ++i) {
      const double th = pos * std::pow(10000.0, -2.0 * i / rope), c = std::cos(th), sn = std::sin(th);
      const double a = x[2 * i], b = x[2 * i + 1];
      x[2 * i] = a * c - b * sn;
      x[2 * i + 1] = a * sn + b * c;
    }
  };
  // Per sequence and position: the normed latent c [r] and the rotated rope key [rope].
  std::vector<std::vector<std::vector<double>>> hist_c(3), hist_kr(3);
  std::vector<int32_t> next_pos(3, 0);
  std::vector<std::vector<int32_t>> steps = {{0, 0, 0, 0, 0, 2, 2, 2}, {0, 1, 2}, std::vector<int32_t>(33, 0), {2, 0}};
  double max_err = 0, max_ref = 0;
  uint32_t seed = 70;
  for (const auto& seqs : steps) {
    Batch b;
    for (int32_t sq : seqs) b.add(0, next_pos[sq]++, sq, false);
    f.backend->begin_step(b);
    const int64_t n = b.size();
    const auto q = random_vector(n * nh * dq, seed++), kv = random_vector(n * dk, seed++);
    Act qa = f.act(q, n, nh * dq), kva = f.act(kv, n, dk), out = f.backend->alloc(n, nh * dv);
    f.backend->mla_attention(p, layer, qa, kva, out);
    for (int64_t t = 0; t < n; ++t) {
      const int32_t sq = b.seq_ids[t], pos = b.positions[t];
      double ss = 0;
      for (int i = 0; i < r; ++i) ss += double(kv[t * dk + i]) * kv[t * dk + i];
      std::vector<double> c(r), kr(kv.begin() + t * dk + r, kv.begin() + (t + 1) * dk);
      for (int i = 0; i < r; ++i) c[i] = kv[t * dk + i] / std::sqrt(ss / r + 1e-6) * norm_w[i];
      rotate(kr, pos);
      hist_c[sq].push_back(c);
      hist_kr[sq].push_back(kr);
    }
    for (int64_t t = 0; t < n; ++t) {
      const int32_t sq = b.seq_ids[t], pos = b.positions[t];
      for (int64_t h = 0; h < nh; ++h) {
        const float* qh = q.data() + (t * nh + h) * dq;
        std::vector<double> qr(qh + nope, qh + dq);
        rotate(qr, pos);
        std::vector<double> sc(pos + 1);
        for (int j = 0; j <= pos; ++j) {
          double dot = 0;
          for (int i = 0; i < nope; ++i) {
            double k_nope = 0;  // W_uk[h][i] . c_j, W_uk[h][i][c] = k_b[h][c][i]
            for (int cc = 0; cc < r; ++cc) k_nope += k_b[(h * r + cc) * nope + i] * hist_c[sq][j][cc];
            dot += qh[i] * k_nope;
          }
          for (int i = 0; i < rope; ++i) dot += qr[i] * hist_kr[sq][j][i];
          sc[j] = dot * 0.17;
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double sum = 0;
        for (double& x : sc) sum += x = std::exp(x - mx);
        for (int i = 0; i < dv; ++i) {
          double o = 0;
          for (int j = 0; j <= pos; ++j) {
            double v = 0;
            for (int cc = 0; cc < r; ++cc) v += v_b[(h * dv + i) * r + cc] * hist_c[sq][j][cc];
            o += sc[j] / sum * v;
          }
          max_err = std::max(max_err, std::abs(o - out.row(t)[h * dv + i]));
          max_ref = std::max(max_ref, std::abs(o));
        }
      }
    }
  }
  set_cpu_isa_for_testing(std::nullopt);
  const double bound = cache == DType::Q4_0 ? 0.4 : cache == DType::Q8_0 ? 3e-2 : cache == DType::F16 ? 3e-3 : 1e-5;
  EXPECT_LT(max_err / max_ref, bound) << "max_err " << max_err << " max_ref " << max_ref;
}

TEST(CpuOps, MlaAttentionMatchesPerHeadForm) {
  for (CpuIsa isa : available_isas())
    for (DType cache : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
      SCOPED_TRACE(fmt::format("{} {}", cpu_isa_name(isa), dtype_name(cache)));
      check_mla(isa, cache);
    }
}

// An MLA cache stores one row of kv_lora_rank + rope per token and layer, no V rows.
TEST(CpuOps, MlaCacheHoldsOnlyTheLatentRow) {
  StepShape s = small_shape();
  s.n_head_kv = 1;
  s.head_dim_k = 96;
  s.head_dim_v = 64;
  s.cache_type_k = s.cache_type_v = DType::F16;
  const uint64_t separate = Backend::kv_cache_bytes(s);
  s.kv_shared_v = true;
  EXPECT_EQ(Backend::kv_cache_bytes(s), static_cast<uint64_t>(s.n_layer * s.n_slots * s.n_ctx) * 96 * 2);
  EXPECT_LT(Backend::kv_cache_bytes(s), separate);
}

TEST(CpuOps, FfnBlockMatchesFormula) {
  Fixture f;
  f.backend->reserve(small_shape());
  Batch b;
  b.add(0, 0, 0, false);
  b.add(0, 1, 0, false);
  f.backend->begin_step(b);
  const int64_t d = 32, ff = 48;
  const auto x = random_vector(2 * d, 31), nw = random_vector(d, 32), g = random_vector(ff * d, 33, 0.2f),
             u = random_vector(ff * d, 34, 0.2f), dn = random_vector(d * ff, 35, 0.2f);
  FfnLayer layer{f.weight(nw, {d}), f.weight(g, {d, ff}), f.weight(u, {d, ff}), f.weight(dn, {ff, d})};
  Act xa = f.act(x, 2, d);
  f.backend->ffn_block(layer, 1e-6f, xa);
  for (int t = 0; t < 2; ++t) {
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += double(x[t * d + i]) * x[t * d + i];
    std::vector<double> h(d), a(ff);
    for (int i = 0; i < d; ++i) h[i] = x[t * d + i] / std::sqrt(ss / d + 1e-6) * nw[i];
    for (int r = 0; r < ff; ++r) {
      double gr = 0, ur = 0;
      for (int i = 0; i < d; ++i) gr += g[r * d + i] * h[i], ur += u[r * d + i] * h[i];
      a[r] = gr / (1 + std::exp(-gr)) * ur;
    }
    for (int r = 0; r < d; ++r) {
      double o = x[t * d + r];
      for (int i = 0; i < ff; ++i) o += dn[r * ff + i] * a[i];
      EXPECT_NEAR(xa.row(t)[r], o, 1e-4);
    }
  }
}

// gpt-oss's MoE block: router bias, top-2 then softmax over the two, per-expert gate/up/down
// biases and the clamped SwiGLU, against the formula (HF's GptOssMLP) in double.
TEST(CpuOps, MoeBlockWithBiasesAndClampedGlu) {
  Fixture f;
  StepShape s = small_shape();
  const int64_t d = 32, ff = 16, ne = 4, k = 2, n = 3;
  s.n_expert = ne;
  s.n_expert_used = k;
  s.n_ff_expert = ff;
  f.backend->reserve(s);
  Batch b;
  for (int32_t i = 0; i < n; ++i) b.add(0, i, 0, false);
  f.backend->begin_step(b);
  const auto x = random_vector(n * d, 41), nw = random_vector(d, 42), router = random_vector(ne * d, 43, 0.5f),
             rb = random_vector(ne, 44), g = random_vector(ne * ff * d, 45, 1.5f), u = random_vector(ne * ff * d, 46, 1.5f),
             dn = random_vector(ne * d * ff, 47, 0.3f), bg = random_vector(ne * ff, 48), bu = random_vector(ne * ff, 49),
             bd = random_vector(ne * d, 50);
  auto bias = [&](const std::vector<float>& v, std::vector<int64_t> shape) {
    f.keep.push_back(v);
    return f.backend->upload("blk.0.ffn_x.bias", DType::F32, shape, reinterpret_cast<const uint8_t*>(f.keep.back().data()));
  };
  MoeLayer layer;
  layer.norm = f.weight(nw, {d});
  layer.router = f.weight(router, {d, ne});
  layer.gate_exps = f.weight(g, {d, ff, ne});
  layer.up_exps = f.weight(u, {d, ff, ne});
  layer.down_exps = f.weight(dn, {ff, d, ne});
  layer.router_b = bias(rb, {ne});
  layer.gate_exps_b = bias(bg, {ff, ne});
  layer.up_exps_b = bias(bu, {ff, ne});
  layer.down_exps_b = bias(bd, {d, ne});
  layer.glu = {ExpertGlu::Kind::Clamped, 1.702f, 7.0f};
  Act xa = f.act(x, n, d);
  f.backend->moe_block(layer, MoeParams{ne, k, true}, 1e-5f, xa);
  int clamped = 0;
  for (int t = 0; t < n; ++t) {
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += double(x[t * d + i]) * x[t * d + i];
    std::vector<double> h(d), logit(ne);
    for (int i = 0; i < d; ++i) h[i] = x[t * d + i] / std::sqrt(ss / d + 1e-5) * nw[i];
    for (int e = 0; e < ne; ++e) {
      logit[e] = rb[e];
      for (int i = 0; i < d; ++i) logit[e] += router[e * d + i] * h[i];
    }
    std::vector<int> order(ne);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int c) { return logit[a] > logit[c]; });
    const double z = std::exp(logit[order[0]]) + std::exp(logit[order[1]]);
    std::vector<double> o(x.begin() + t * d, x.begin() + (t + 1) * d);
    for (int j = 0; j < k; ++j) {
      const int e = order[j];
      const double w = std::exp(logit[e]) / z;
      std::vector<double> a(ff);
      for (int r = 0; r < ff; ++r) {
        double gr = bg[e * ff + r], ur = bu[e * ff + r];
        for (int i = 0; i < d; ++i) gr += g[(e * ff + r) * d + i] * h[i], ur += u[(e * ff + r) * d + i] * h[i];
        clamped += gr > 7 || std::abs(ur) > 7;
        gr = std::min(gr, 7.0), ur = std::clamp(ur, -7.0, 7.0);
        a[r] = (ur + 1) * gr / (1 + std::exp(-1.702 * gr));
      }
      for (int r = 0; r < d; ++r) {
        double y = bd[e * d + r];
        for (int i = 0; i < ff; ++i) y += dn[(e * d + r) * ff + i] * a[i];
        o[r] += w * y;
      }
    }
    for (int r = 0; r < d; ++r) EXPECT_NEAR(xa.row(t)[r], o[r], 1e-4 * std::max(1.0, std::abs(o[r])));
  }
  EXPECT_GT(clamped, 0);
}

TEST(CpuOps, BeginStepRejectsBadBatches) {
  Fixture f;
  f.backend->reserve(small_shape());
  auto expect_error = [&](Batch b, const char* needle) {
    try {
      f.backend->begin_step(b);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Batch b;
  expect_error(b, "empty");
  b.add(0, 20, 0, false);
  expect_error(b, "context length of 20");
  b.clear();
  b.add(50, 0, 0, false);
  expect_error(b, "vocabulary");
  b.clear();
  b.add(0, 0, 3, false);
  expect_error(b, "sequence id");
  b.clear();
  for (int i = 0; i < 17; ++i) b.add(0, i, 0, false);
  expect_error(b, "exceeds the maximum");
}

TEST(CpuOps, QuantisedCacheNeedsWholeBlocks) {
  auto backend = make_cpu_backend(1);
  StepShape s = small_shape();
  s.head_dim_k = s.head_dim_v = 48;  // not a multiple of 32
  s.n_embd = 48 * 4;
  s.cache_type_k = DType::Q8_0;
  EXPECT_THROW(backend->reserve(s), Error);
  s.cache_type_k = DType::Q4_K;
  s.head_dim_k = s.head_dim_v = 256;
  EXPECT_THROW(backend->reserve(s), Error);
}

}  // namespace
}  // namespace velocity::engine
