// The CUDA backend against the CPU backend, op by op and block by block: the same weights and
// the same random inputs go to both, the GPU's outputs are poisoned (NaN) before each op, and
// the results are compared with a relative-error bound per op. The kernels' own tests
// (matmul_test.cpp, attention_test.cpp) cover every type and size; this file checks the
// backend's plumbing around them (shapes, strides, the step's inputs, decode/prompt rows,
// padding and graphs) with the ops a model uses.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "core/quant.h"
#include "engine/backend.h"
#include "engine/cuda/kernels.h"

namespace velocity::engine {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// max |a - b| / max |b|
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    ref = std::max(ref, std::abs(double(b[i])));
  }
  return ref > 0 ? err / ref : err;
}

class GpuOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU on this machine";
    cpu = make_cpu_backend(2);
    gpu = make_cuda_backend(0);
  }

  void reserve(const StepShape& s) {
    cpu->reserve(s);
    gpu->reserve(s);
  }
  void begin(const Batch& b) {
    cpu->begin_step(b);
    gpu->begin_step(b);
  }

  // The same weight on both backends: quantised from random values (host bytes kept alive).
  struct Pair {
    Weight c, g;
  };
  // With `cpu_f32`, the CPU gets the dequantised values as F32 instead: it then multiplies in f32
  // (no Q8 activations), so the comparison measures the GPU's products, not the CPU's rounding.
  Pair weight(DType type, std::vector<int64_t> shape, uint32_t seed, float scale = 0.1f, bool cpu_f32 = false) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const int64_t rows = n / shape[0], row_bytes = dtype_row_bytes(type, shape[0]);
    const auto values = random_vector(static_cast<size_t>(n), seed, scale);
    uint8_t* bytes = keep.emplace_back(static_cast<size_t>(rows * row_bytes)).data();  // stays put as keep grows
    for (int64_t r = 0; r < rows; ++r) quantize_row(type, values.data() + r * shape[0], bytes + r * row_bytes, shape[0]);
    names.push_back(fmt::format("w{}", names.size()));
    if (!cpu_f32)
      return {cpu->upload(names.back(), type, shape, bytes), gpu->upload(names.back(), type, shape, bytes)};
    auto* dequant = reinterpret_cast<float*>(keep.emplace_back(static_cast<size_t>(n) * sizeof(float)).data());
    for (int64_t r = 0; r < rows; ++r) dequantize_row(type, bytes + r * row_bytes, dequant + r * shape[0], shape[0]);
    return {cpu->upload(names.back(), DType::F32, shape, reinterpret_cast<const uint8_t*>(dequant)),
            gpu->upload(names.back(), type, shape, bytes)};
  }
  struct Acts {
    Act c, g;
  };
  Acts act(const std::vector<float>& data, int64_t rows, int64_t cols) {
    Acts a{cpu->alloc(rows, cols), gpu->alloc(rows, cols)};
    cpu->write(a.c, data.data(), rows);
    gpu->write(a.g, data.data(), rows);
    return a;
  }
  Acts empty(int64_t rows, int64_t cols) {
    Acts a{cpu->alloc(rows, cols), gpu->alloc(rows, cols)};
    poison(a.g, rows);
    return a;
  }
  void poison(Act& a, int64_t rows) {
    std::vector<float> nan(static_cast<size_t>(rows * a.n_cols), std::numeric_limits<float>::quiet_NaN());
    gpu->write(a, nan.data(), rows);
  }
  std::vector<float> host(Backend& b, const Act& a) {
    std::vector<float> out(static_cast<size_t>(a.n_rows * a.n_cols));
    b.read(a, out.data());
    return out;
  }
  double compare(const Acts& a) { return rel_err(host(*gpu, a.g), host(*cpu, a.c)); }

  static StepShape shape() {
    StepShape s;
    s.max_tokens = 40;
    s.max_logits = 40;
    s.n_embd = 256;
    s.n_vocab = 1000;
    s.n_layer = 2;
    s.n_head = 8;
    s.n_head_kv = 2;
    s.head_dim_k = 64;
    s.head_dim_v = 64;
    s.n_ff = 512;
    s.n_slots = 4;
    s.n_ctx = 300;
    s.cache_type_k = DType::F16;
    s.cache_type_v = DType::F16;
    return s;
  }

  std::unique_ptr<Backend> cpu, gpu;
  std::vector<std::vector<uint8_t>> keep;
  std::vector<std::string> names;  // weight names (the backends keep views)
};

Batch prompt_batch(int64_t n, int32_t seq = 0, int32_t start = 0) {
  Batch b;
  for (int64_t i = 0; i < n; ++i) b.add(static_cast<int32_t>((i * 37 + 5) % 1000), start + static_cast<int32_t>(i), seq, true);
  return b;
}

TEST_F(GpuOps, ElementwiseOpsMatchCpu) {
  reserve(shape());
  const Batch b = prompt_batch(7);
  begin(b);
  const int64_t n = 7, d = 256;
  auto x = act(random_vector(n * d, 1), n, d);
  auto out = empty(n, d);
  auto w = weight(DType::F32, {d}, 2, 1.0f);
  cpu->rms_norm(x.c, w.c, 1e-5f, out.c);
  gpu->rms_norm(x.g, w.g, 1e-5f, out.g);
  EXPECT_LT(compare(out), 1e-5) << "rms_norm";

  auto hw = weight(DType::F32, {64}, 3, 1.0f);
  auto xh = act(random_vector(n * d, 4), n, d);
  cpu->rms_norm_heads(xh.c, 64, hw.c, 1e-6f);
  gpu->rms_norm_heads(xh.g, 64, hw.g, 1e-6f);
  EXPECT_LT(compare(xh), 1e-5) << "rms_norm_heads";

  auto g = act(random_vector(n * d, 5, 3.0f), n, d), u = act(random_vector(n * d, 6), n, d);
  auto s = empty(n, d);
  cpu->swiglu(g.c, u.c, s.c);
  gpu->swiglu(g.g, u.g, s.g);
  EXPECT_LT(compare(s), 1e-5) << "swiglu";
  cpu->swiglu(g.c, u.c, g.c);  // in place
  gpu->swiglu(g.g, u.g, g.g);
  EXPECT_LT(compare(g), 1e-5) << "swiglu in place";

  auto a = act(random_vector(n * d, 7), n, d), y = act(random_vector(n * d, 8), n, d);
  cpu->add(a.c, y.c);
  gpu->add(a.g, y.g);
  EXPECT_LT(compare(a), 1e-7) << "add";
  auto bias = weight(DType::F16, {d}, 9, 1.0f);  // 1-D weights become F32 on both
  cpu->add_bias(a.c, bias.c);
  gpu->add_bias(a.g, bias.g);
  EXPECT_LT(compare(a), 1e-7) << "add_bias";
}

TEST_F(GpuOps, RopeMatchesCpuAtLargePositions) {
  StepShape s = shape();
  s.n_ctx = 131072;
  s.n_layer = 0;  // no KV cache needed
  reserve(s);
  Batch b;
  for (int32_t p : {0, 1, 17, 4095, 65000, 131071}) b.add(1, p, 0, false);
  begin(b);
  const int64_t n = 6, hd = 128, heads = 4;
  for (RopeType type : {RopeType::Normal, RopeType::Neox}) {
    for (bool factors : {false, true}) {
      auto x = act(random_vector(n * heads * hd, 10), n, heads * hd);
      RopeParams rc, rg;
      rc.type = rg.type = type;
      rc.n_rot = rg.n_rot = 96;  // partial rotation
      rc.freq_base = rg.freq_base = 500000.0f;
      rc.freq_scale = rg.freq_scale = 0.25f;
      if (factors) {
        std::vector<float> f(48);
        for (size_t i = 0; i < f.size(); ++i) f[i] = 1.0f + 0.37f * static_cast<float>(i);
        auto& bytes = keep.emplace_back(f.size() * 4);
        std::memcpy(bytes.data(), f.data(), bytes.size());
        const int64_t shape1[] = {48};
        rc.freq_factors = cpu->upload("factors", DType::F32, shape1, bytes.data());
        rg.freq_factors = gpu->upload("factors", DType::F32, shape1, bytes.data());
      }
      cpu->rope(x.c, hd, rc);
      gpu->rope(x.g, hd, rg);
      EXPECT_LT(compare(x), 1e-5) << "rope " << (type == RopeType::Neox ? "neox" : "normal") << " factors " << factors;
    }
  }
}

TEST_F(GpuOps, MatmulEveryTypeDecodeAndPromptRows) {
  StepShape s = shape();
  s.n_layer = 0;
  reserve(s);
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                     DType::Q5_1, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4}) {
    // All prompt rows; 3 decode rows then 6 prompt rows; 4 decode rows only (a graph-sized step).
    for (auto [n, n_decode] : {std::pair<int64_t, int64_t>{9, 0}, {9, 3}, {4, 4}}) {
      Batch b;
      for (int64_t i = 0; i < n_decode; ++i) b.add(1, 5, static_cast<int32_t>(i), true);
      for (int64_t i = n_decode; i < n; ++i) b.add(1, static_cast<int32_t>(5 + i), 3, true);
      b.n_decode = n_decode;
      begin(b);
      const int64_t n_in = 512, n_out = 777;
      auto w = weight(type, {n_in, n_out}, 20 + static_cast<uint32_t>(type));
      auto x = act(random_vector(n * n_in, 21), n, n_in);
      auto y = empty(n, n_out);
      cpu->matmul(w.c, x.c, y.c);
      gpu->matmul(w.g, x.g, y.g);
      // The CPU quantises activations to Q8 for quantised types; the GPU rounds them to f16.
      const double bound = type == DType::F32 ? 2e-3 : 2e-2;
      EXPECT_LT(compare(y), bound) << dtype_name(type) << " n_decode " << n_decode;
    }
  }
}

TEST_F(GpuOps, EmbedEveryType) {
  StepShape s = shape();
  s.n_layer = 0;
  reserve(s);
  const Batch b = prompt_batch(11);
  begin(b);
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K,
                     DType::Q5_K, DType::Q2_K, DType::Q3_K, DType::MXFP4, DType::Q5_0, DType::Q4_1, DType::Q5_1}) {
    auto table = weight(type, {256, 1000}, 30 + static_cast<uint32_t>(type));
    auto out = empty(11, 256);
    cpu->embed(table.c, out.c);
    gpu->embed(table.g, out.g);
    EXPECT_EQ(rel_err(host(*gpu, out.g), host(*cpu, out.c)), 0.0) << dtype_name(type) << ": dequantisation is exact";
  }
}

TEST_F(GpuOps, AttentionBlockOverStepsAndSequences) {
  for (DType cache : {DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_1, DType::F32}) {
    StepShape s = shape();
    s.cache_type_k = s.cache_type_v = cache;
    cpu = make_cpu_backend(2);
    gpu = make_cuda_backend(0);
    if (!cpu->supports_cache_type(cache)) continue;
    reserve(s);
    const int64_t d = 256;
    AttentionLayer lc, lg;
    auto norm = weight(DType::F32, {d}, 40, 1.0f);
    // F16 projections: the CPU multiplies Q8_0 weights with Q8 activations (about 1e-2 apart from
    // the GPU's F16 activations after two products), which would hide the attention's own error.
    auto wq = weight(DType::F16, {d, 8 * 64}, 41), wk = weight(DType::F16, {d, 2 * 64}, 42),
         wv = weight(DType::F16, {d, 2 * 64}, 43), wo = weight(DType::F16, {8 * 64, d}, 44);
    lc = {norm.c, wq.c, wk.c, wv.c, wo.c, {}, {}, {}, {}, {}};
    lg = {norm.g, wq.g, wk.g, wv.g, wo.g, {}, {}, {}, {}, {}};
    AttentionParams p;
    p.layer = 1;
    p.n_head = 8;
    p.n_head_kv = 2;
    p.head_dim_k = p.head_dim_v = 64;
    p.rope.type = RopeType::Neox;
    p.rope.n_rot = 64;
    // Prompts of 37 and 150 tokens (chunks of 40), then decode steps of 2 sequences.
    std::vector<int32_t> pos(4, 0);
    double worst = 0;
    uint32_t seed = 50;
    auto step = [&](Batch b) {
      begin(b);
      auto x = act(random_vector(b.size() * d, seed++), b.size(), d);
      cpu->attention_block(lc, p, x.c);
      gpu->attention_block(lg, p, x.g);
      worst = std::max(worst, compare(x));
    };
    for (int32_t seq : {0, 2}) {
      const int32_t len = seq == 0 ? 37 : 150;
      for (int32_t c0 = 0; c0 < len; c0 += 40) {
        Batch b;
        for (int32_t i = c0; i < std::min(len, c0 + 40); ++i) b.add(1, i, seq, false);
        step(b);
      }
      pos[seq] = len;
    }
    for (int t = 0; t < 5; ++t) {
      Batch b;
      b.add(1, pos[0]++, 0, true);
      b.add(1, pos[2]++, 2, true);
      b.n_decode = 2;
      step(b);
    }
    const double bound = cache == DType::F32 || cache == DType::F16 ? 2e-2 : cache == DType::Q8_0 ? 3e-2 : 0.1;
    EXPECT_LT(worst, bound) << dtype_name(cache);
  }
}

// gpt-oss's attention (Q/K/V/O biases, a learned sink per head, a sliding window, YaRN RoPE)
// and MoE (router and expert biases, the clamped SwiGLU) against the CPU. The window (100) is
// shorter than the second prompt (600 positions): its prompt rows mask and skip tiles, and its
// decode tokens start in chunk 1 of the split-KV kernel and combine chunks 1 and 2.
TEST_F(GpuOps, GptOssAttentionAndMoeBlocks) {
  auto upload_bias = [&](std::vector<int64_t> shape, uint32_t seed, float scale) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const auto values = random_vector(static_cast<size_t>(n), seed, scale);
    auto* bytes = keep.emplace_back(static_cast<size_t>(n) * sizeof(float)).data();
    std::memcpy(bytes, values.data(), static_cast<size_t>(n) * sizeof(float));
    names.push_back(fmt::format("blk.{}.bias", names.size()));  // ".bias": F32 rows on both backends
    return Pair{cpu->upload(names.back(), DType::F32, shape, bytes), gpu->upload(names.back(), DType::F32, shape, bytes)};
  };
  for (DType cache : {DType::F16, DType::Q8_0}) {
    StepShape s = shape();
    s.n_ctx = 700;
    s.cache_type_k = s.cache_type_v = cache;
    cpu = make_cpu_backend(2);
    gpu = make_cuda_backend(0);
    ASSERT_TRUE(gpu->supports(Feature::AttentionSinks) && gpu->supports(Feature::SlidingWindow) &&
                gpu->supports(Feature::YarnRope) && gpu->supports(Feature::AttentionOutputBias));
    reserve(s);
    const int64_t d = 256;
    auto norm = weight(DType::F32, {d}, 70, 1.0f);
    auto wq = weight(DType::F16, {d, 8 * 64}, 71), wk = weight(DType::F16, {d, 2 * 64}, 72),
         wv = weight(DType::F16, {d, 2 * 64}, 73), wo = weight(DType::F16, {8 * 64, d}, 74);
    auto bq = upload_bias({8 * 64}, 75, 0.2f), bk = upload_bias({2 * 64}, 76, 0.2f), bv = upload_bias({2 * 64}, 77, 0.2f),
         bo = upload_bias({d}, 78, 0.2f), sinks = upload_bias({8}, 79, 2.0f);
    AttentionLayer lc{norm.c, wq.c, wk.c, wv.c, wo.c, bq.c, bk.c, bv.c, {}, {}, bo.c};
    AttentionLayer lg{norm.g, wq.g, wk.g, wv.g, wo.g, bq.g, bk.g, bv.g, {}, {}, bo.g};
    AttentionParams pc;
    pc.layer = 1;
    pc.n_head = 8;
    pc.n_head_kv = 2;
    pc.head_dim_k = pc.head_dim_v = 64;
    pc.rope.type = RopeType::Neox;
    pc.rope.n_rot = 64;
    pc.rope.freq_base = 150000.0f;
    pc.rope.yarn_factor = 32.0f;
    pc.rope.yarn_orig_ctx = 64;
    pc.rope.yarn_truncate = false;
    pc.rope.attn_factor = 0.1f * std::log(32.0f) + 1.0f;
    pc.window = 100;
    AttentionParams pg = pc;
    pc.sinks = sinks.c;
    pg.sinks = sinks.g;
    std::vector<int32_t> pos(4, 0);
    double worst = 0;
    uint32_t seed = 80;
    auto step = [&](Batch b) {
      begin(b);
      auto x = act(random_vector(b.size() * d, seed++), b.size(), d);
      cpu->attention_block(lc, pc, x.c);
      gpu->attention_block(lg, pg, x.g);
      worst = std::max(worst, compare(x));
    };
    for (int32_t seq : {0, 2}) {
      const int32_t len = seq == 0 ? 37 : 600;
      for (int32_t c0 = 0; c0 < len; c0 += 40) {
        Batch b;
        for (int32_t i = c0; i < std::min(len, c0 + 40); ++i) b.add(1, i, seq, false);
        step(b);
      }
      pos[seq] = len;
    }
    for (int t = 0; t < 5; ++t) {
      Batch b;
      b.add(1, pos[0]++, 0, true);
      b.add(1, pos[2]++, 2, true);
      b.n_decode = 2;
      step(b);
    }
    EXPECT_LT(worst, cache == DType::F16 ? 2e-2 : 3e-2) << "gpt-oss attention block, cache " << dtype_name(cache);
  }

  // MoE: 8 experts, top 2, every bias present, the clamped SwiGLU; experts in MXFP4 and Q8_0
  // (the CPU gets them as F32: the GPU's activation rounding is then the only difference).
  StepShape s = shape();
  s.n_expert = 8;
  s.n_expert_used = 2;
  s.n_ff_expert = 256;
  cpu = make_cpu_backend(2);
  gpu = make_cuda_backend(0);
  ASSERT_TRUE(gpu->supports(Feature::ExpertBiases) && gpu->supports(Feature::ClampedSwiglu));
  reserve(s);
  const int64_t d = 256;
  for (DType type : {DType::MXFP4, DType::Q8_0}) {
    for (bool decode : {false, true}) {
      Batch b;
      if (decode) {
        for (int32_t q = 0; q < 4; ++q) b.add(1, 3, q, true);
        b.n_decode = 4;
      } else {
        b = prompt_batch(23);
      }
      begin(b);
      const int64_t n = b.size();
      auto norm = weight(DType::F32, {d}, 90, 1.0f);
      auto router = weight(DType::F32, {d, 8}, 91, 1.0f);
      auto ge = weight(type, {d, 256, 8}, 92, 0.3f, true), ue = weight(type, {d, 256, 8}, 93, 0.3f, true),
           de = weight(type, {256, d, 8}, 94, 0.1f, true);
      auto rb = upload_bias({8}, 95, 0.5f), gb = upload_bias({256, 8}, 96, 0.5f), ub = upload_bias({256, 8}, 97, 0.5f),
           db = upload_bias({d, 8}, 98, 0.5f);
      MoeLayer mc{norm.c, router.c, ge.c, ue.c, de.c, rb.c, gb.c, ub.c, db.c, {}};
      MoeLayer mg{norm.g, router.g, ge.g, ue.g, de.g, rb.g, gb.g, ub.g, db.g, {}};
      mc.glu.kind = mg.glu.kind = ExpertGlu::Kind::Clamped;
      MoeParams mp{8, 2, true};
      auto x = act(random_vector(n * d, 99, 2.0f), n, d);
      cpu->moe_block(mc, mp, 1e-6f, x.c);
      gpu->moe_block(mg, mp, 1e-6f, x.g);
      // Near-tied experts can swap between the backends: bound by most rows, not the worst.
      const auto hg = host(*gpu, x.g), hc = host(*cpu, x.c);
      int bad_rows = 0;
      for (int64_t t = 0; t < n; ++t) {
        std::vector<float> rg(hg.begin() + t * d, hg.begin() + (t + 1) * d), rc(hc.begin() + t * d, hc.begin() + (t + 1) * d);
        bad_rows += rel_err(rg, rc) > 1e-2;
      }
      EXPECT_LE(bad_rows, n / 8) << "gpt-oss moe " << dtype_name(type) << " decode " << decode;
    }
  }

  // The clamped SwiGLU alone, with values past the limit on both sides.
  reserve(shape());
  Batch b = prompt_batch(7);
  begin(b);
  auto g = act(random_vector(7 * 256, 100, 12.0f), 7, 256), u = act(random_vector(7 * 256, 101, 12.0f), 7, 256);
  auto o = empty(7, 256);
  ExpertGlu glu;
  glu.kind = ExpertGlu::Kind::Clamped;
  cpu->swiglu_clamped(g.c, u.c, glu, o.c);
  gpu->swiglu_clamped(g.g, u.g, glu, o.g);
  EXPECT_LT(compare(o), 1e-6) << "swiglu_clamped";
}

TEST_F(GpuOps, FfnAndMoeBlocks) {
  StepShape s = shape();
  s.n_expert = 16;
  s.n_expert_used = 4;
  s.n_ff_expert = 256;  // a K-quant row holds whole 256-value blocks (128 tripped a dtype check)
  reserve(s);
  const int64_t d = 256;
  for (DType type : {DType::Q4_K, DType::Q8_0, DType::MXFP4, DType::F16}) {
    for (bool decode : {false, true}) {
      Batch b;
      if (decode) {
        for (int32_t q = 0; q < 4; ++q) b.add(1, 3, q, true);
        b.n_decode = 4;
      } else {
        b = prompt_batch(23);
      }
      begin(b);
      const int64_t n = b.size();
      auto norm = weight(DType::F32, {d}, 60, 1.0f);
      // The CPU multiplies the same weights in f32: the GPU's F16 activations are the only rounding.
      // Where the GPU's decode takes int8 activations (Q4_K: the CPU's Q8_K rounding), the CPU gets
      // the quantised weights, so that both sides round the activations alike.
      const bool f32 = !(decode && cuda::matmul_decode_int8(type));
      auto gate = weight(type, {d, 512}, 61, 0.1f, f32), up = weight(type, {d, 512}, 62, 0.1f, f32),
           down = weight(type, {512, d}, 63, 0.1f, f32);
      FfnLayer fc{norm.c, gate.c, up.c, down.c}, fg{norm.g, gate.g, up.g, down.g};
      auto x = act(random_vector(n * d, 64), n, d);
      cpu->ffn_block(fc, 1e-6f, x.c);
      gpu->ffn_block(fg, 1e-6f, x.g);
      EXPECT_LT(compare(x), 1e-2) << "ffn " << dtype_name(type) << " decode " << decode;

      auto router = weight(DType::F32, {d, 16}, 65, 1.0f);
      auto ge = weight(type, {d, 256, 16}, 66, 0.1f, f32), ue = weight(type, {d, 256, 16}, 67, 0.1f, f32),
           de = weight(type, {256, d, 16}, 68, 0.1f, f32);
      MoeLayer mc{norm.c, router.c, ge.c, ue.c, de.c}, mg{norm.g, router.g, ge.g, ue.g, de.g};
      MoeParams mp{16, 4, true};
      auto xm = act(random_vector(n * d, 69), n, d);
      cpu->moe_block(mc, mp, 1e-6f, xm.c);
      gpu->moe_block(mg, mp, 1e-6f, xm.g);
      // Near-tied experts can swap between the backends: bound by most rows, not the worst.
      const auto hg = host(*gpu, xm.g), hc = host(*cpu, xm.c);
      int bad_rows = 0;
      for (int64_t t = 0; t < n; ++t) {
        std::vector<float> rg(hg.begin() + t * d, hg.begin() + (t + 1) * d), rc(hc.begin() + t * d, hc.begin() + (t + 1) * d);
        bad_rows += rel_err(rg, rc) > 1e-2;
      }
      EXPECT_LE(bad_rows, n / 8) << "moe " << dtype_name(type) << " decode " << decode;
    }
  }
}

// The CUDA backend's fused blocks (the RMS norm and SwiGLU inside the products' activation
// converter, the residual adds in the products' outputs) against the reference composition on
// the same GPU, bit for bit: `cpu` here is a second CUDA backend made with VELOCITY_CUDA_FUSE=0.
TEST_F(GpuOps, FusedBlocksEqualTheReferenceComposition) {
  setenv("VELOCITY_CUDA_FUSE", "0", 1);
  cpu = make_cuda_backend(0);
  unsetenv("VELOCITY_CUDA_FUSE");
  reserve(shape());
  const int64_t d = 256;
  auto same_bits = [&](const Acts& a) {
    const auto fused = host(*gpu, a.g), ref = host(*cpu, a.c);
    return fused.size() == ref.size() && std::memcmp(fused.data(), ref.data(), fused.size() * sizeof(float)) == 0;
  };
  uint32_t seed = 90;
  for (DType type : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16}) {
    for (bool decode : {false, true}) {
      Batch b;
      if (decode) {
        for (int32_t q = 0; q < 4; ++q) b.add(1, 30, q, true);  // 4: a captured step size
        b.n_decode = 4;
      } else {
        b = prompt_batch(23);
      }
      begin(b);
      const int64_t n = b.size();
      auto norm = weight(DType::F32, {d}, seed++, 1.0f);
      auto wq = weight(type, {d, 8 * 64}, seed++), wk = weight(type, {d, 2 * 64}, seed++),
           wv = weight(type, {d, 2 * 64}, seed++), wo = weight(type, {8 * 64, d}, seed++);
      AttentionLayer lc{norm.c, wq.c, wk.c, wv.c, wo.c, {}, {}, {}, {}, {}},
          lg{norm.g, wq.g, wk.g, wv.g, wo.g, {}, {}, {}, {}, {}};
      AttentionParams p;
      p.layer = 0;
      p.n_head = 8;
      p.n_head_kv = 2;
      p.head_dim_k = p.head_dim_v = 64;
      p.rope.type = RopeType::Neox;
      p.rope.n_rot = 64;
      auto x = act(random_vector(n * d, seed++), n, d);
      cpu->attention_block(lc, p, x.c);
      gpu->attention_block(lg, p, x.g);
      EXPECT_TRUE(same_bits(x)) << "attention " << dtype_name(type) << " decode " << decode;

      auto gate = weight(type, {d, 512}, seed++), up = weight(type, {d, 512}, seed++),
           down = weight(type, {512, d}, seed++);
      FfnLayer fc{norm.c, gate.c, up.c, down.c}, fg{norm.g, gate.g, up.g, down.g};
      auto y = act(random_vector(n * d, seed++), n, d);
      cpu->ffn_block(fc, 1e-6f, y.c);
      gpu->ffn_block(fg, 1e-6f, y.g);
      EXPECT_TRUE(same_bits(y)) << "ffn " << dtype_name(type) << " decode " << decode;
    }
  }
}

TEST_F(GpuOps, MoeRouteMatchesCpu) {
  StepShape s = shape();
  s.n_expert = 128;
  s.n_expert_used = 8;
  s.n_ff_expert = 64;
  s.n_layer = 0;
  reserve(s);
  begin(prompt_batch(13));
  auto logits = act(random_vector(13 * 128, 70, 2.0f), 13, 128);
  std::vector<int32_t> ids_c(13 * 8);
  std::vector<float> w_c(13 * 8);
  MoeRoute rc{ids_c.data(), w_c.data(), 13, 8};
  cpu->moe_route(logits.c, {128, 8, true}, rc);
  int32_t* d_ids = nullptr;
  float* d_w = nullptr;
  ASSERT_EQ(cudaMalloc(&d_ids, ids_c.size() * sizeof(int32_t)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_w, w_c.size() * sizeof(float)), cudaSuccess);
  MoeRoute rg{d_ids, d_w, 13, 8};
  gpu->moe_route(logits.g, {128, 8, true}, rg);
  gpu->synchronize();
  std::vector<int32_t> ids_g(ids_c.size());
  std::vector<float> w_g(w_c.size());
  ASSERT_EQ(cudaMemcpy(ids_g.data(), d_ids, ids_g.size() * sizeof(int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(w_g.data(), d_w, w_g.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_ids);
  cudaFree(d_w);
  EXPECT_EQ(ids_g, ids_c);
  for (size_t i = 0; i < w_c.size(); ++i) EXPECT_NEAR(w_g[i], w_c[i], 1e-5) << i;
}

TEST_F(GpuOps, OutputBlockLogitsAndArgmax) {
  reserve(shape());
  Batch b;
  for (int i = 0; i < 6; ++i) b.add(1, i, 0, i % 2 == 0 ? Output::Logits : (i == 5 ? Output::Token : Output::None));
  begin(b);
  const int64_t d = 256;
  auto norm = weight(DType::F32, {d}, 80, 1.0f);
  auto head = weight(DType::Q6_K, {d, 1000}, 81);
  auto x = act(random_vector(6 * d, 82), 6, d);
  cpu->output_block(norm.c, head.c, 1e-5f, x.c);
  gpu->output_block(norm.g, head.g, 1e-5f, x.g);
  const StepOutput oc = cpu->read_output(), og = gpu->read_output();
  ASSERT_EQ(oc.n_rows, 4);
  ASSERT_EQ(og.n_rows, 4);
  for (int64_t j = 0; j < 3; ++j) {
    std::vector<float> rg(og.row(j).begin(), og.row(j).end()), rc(oc.row(j).begin(), oc.row(j).end());
    EXPECT_LT(rel_err(rg, rc), 2e-2) << "logits row " << j;
  }
  // Row 3 asked for its token: the GPU's argmax of its own logits equals the CPU's unless two
  // logits are within rounding of each other.
  EXPECT_GE(og.tokens[3], 0);
  EXPECT_EQ(og.tokens[3], oc.tokens[3]);
}

}  // namespace
}  // namespace velocity::engine
