// The CUDA KV cache and attention kernels (engine/cuda/kernels.h) against references written
// here: kv_store against the CPU reference quantiser byte for byte; attention against a double-
// precision softmax(q k^T * scale) v over the cache's own values (the rows are quantised by the
// reference quantiser and dequantised by the reference dequantiser, so the quantisation error is
// not part of the comparison — only the kernels' arithmetic is). The cache is poisoned (0xFF
// bytes: NaN in every type) before the first write, so a kernel that reads a row it should not
// shows as NaN; outputs are poisoned with NaN before every run.
//
// Error bounds (max |out - ref| / max |ref| over a run): the kernels round Q (scaled), K and V
// (for caches that are not F16) and the softmax weights P to f16 (unit roundoff u = 2^-11) and
// accumulate in f32. A score moves by about u * |q| * |k| * scale, which for the scores here
// (standard deviation about 2) is a few u; the output moves by about that relative to its size,
// plus u from V and P. 1e-2 is several times the expected error for every type (the reference
// sees exactly the cache's values, so the cache type does not widen it) and far below what an
// indexing or masking bug gives (errors of order 1). The generic kernel computes in f32 and is
// held to the same bound.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/quant.h"
#include "engine/backend.h"
#include "engine/cuda/kernels.h"

namespace velocity::engine::cuda {
namespace {

constexpr double kBound = 1e-2;

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(fmt::format("{}: {}", what, cudaGetErrorString(e)));
}
#define CUDA_OK(call) cuda_ok((call), #call)

bool have_gpu() { return cuda_device_count() > 0; }

// Device memory for n elements of T, freed on destruction.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) { CUDA_OK(cudaMalloc(&p_, std::max<size_t>(1, n) * sizeof(T))); }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& v) {
    if (v.size() != n_) throw std::runtime_error("upload size");
    CUDA_OK(cudaMemcpy(p_, v.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    CUDA_OK(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  void fill_bytes(int byte) { CUDA_OK(cudaMemset(p_, byte, n_ * sizeof(T))); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

std::vector<float> random_vector(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Config {
  DType tk = DType::F16, tv = DType::F16;
  int dk = 128, dv = 128;
  int group = 4;  // query heads per KV head
  int n_head_kv = 2;
  int n_slots = 4;
  int n_ctx = 768;
  float q_std = 2.0f;
  int n_head() const { return group * n_head_kv; }
  std::string name() const {
    return fmt::format("k={} v={} dk={} dv={} group={} kv_heads={} n_ctx={}", dtype_name(tk), dtype_name(tv), dk, dv,
                       group, n_head_kv, n_ctx);
  }
};

struct Token {
  int32_t seq, pos;
};

// Positions [begin, end) of one sequence, as tokens.
std::vector<Token> run(int32_t seq, int32_t begin, int32_t end) {
  std::vector<Token> t;
  for (int32_t p = begin; p < end; ++p) t.push_back({seq, p});
  return t;
}
std::vector<Token> operator+(std::vector<Token> a, const std::vector<Token>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Rows of a token (K, V or Q), a function of (seed, seq, pos, what) only: a prompt gives the same
// cache and queries however it is chunked and whatever shares its calls.
std::vector<float> token_row(uint32_t seed, int32_t seq, int32_t pos, uint32_t what, size_t n, float stddev = 1.0f) {
  return random_vector(n,
                       seed * 2654435761u ^ (static_cast<uint32_t>(seq + 1) * 40503u) ^
                           (static_cast<uint32_t>(pos) * 2246822519u) ^ (what * 3266489917u),
                       stddev);
}

// A layer's cache on the device (poisoned before the first write), the same values dequantised
// on the host (NaN where nothing was written), and the steps run on it.
class Harness {
 public:
  explicit Harness(const Config& c)
      : c_(c),
        k_bytes_(dtype_row_bytes(c.tk, c.dk)),
        v_bytes_(dtype_row_bytes(c.tv, c.dv)),
        d_k_(static_cast<size_t>(c.n_slots) * c.n_head_kv * c.n_ctx * k_bytes_),
        d_v_(static_cast<size_t>(c.n_slots) * c.n_head_kv * c.n_ctx * v_bytes_),
        ref_k_(static_cast<size_t>(c.n_slots) * c.n_head_kv * c.n_ctx * c.dk, std::numeric_limits<float>::quiet_NaN()),
        ref_v_(static_cast<size_t>(c.n_slots) * c.n_head_kv * c.n_ctx * c.dv, std::numeric_limits<float>::quiet_NaN()) {
    d_k_.fill_bytes(0xFF);
    d_v_.fill_bytes(0xFF);
    layer_.k = d_k_.get();
    layer_.v = d_v_.get();
    layer_.type_k = c.tk;
    layer_.type_v = c.tv;
    layer_.n_slots = c.n_slots;
    layer_.n_ctx = c.n_ctx;
    layer_.n_head_kv = c.n_head_kv;
    layer_.head_dim_k = c.dk;
    layer_.head_dim_v = c.dv;
    ws_ = make_attention_workspace(kMaxTokens, c.n_head(), c.n_ctx, c.dv);
    CUDA_OK(cudaStreamCreate(&stream_));  // blocking: ordered after the legacy-stream copies and memsets above
  }
  ~Harness() { cudaStreamDestroy(stream_); }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  const Config& config() const { return c_; }
  size_t out_width() const { return static_cast<size_t>(c_.n_head()) * c_.dv; }

  // kv_store of the tokens' K/V rows; the host copy gets the reference quantiser's values.
  void store(const std::vector<Token>& toks, uint32_t seed) {
    for (size_t i = 0; i < toks.size(); i += kMaxTokens) {
      const std::vector<Token> part(toks.begin() + i, toks.begin() + std::min(toks.size(), i + kMaxTokens));
      const int64_t n = static_cast<int64_t>(part.size());
      std::vector<float> k, v;
      for (const Token& t : part) {
        const auto kr = token_row(seed, t.seq, t.pos, 0, static_cast<size_t>(c_.n_head_kv) * c_.dk);
        const auto vr = token_row(seed, t.seq, t.pos, 1, static_cast<size_t>(c_.n_head_kv) * c_.dv);
        k.insert(k.end(), kr.begin(), kr.end());
        v.insert(v.end(), vr.begin(), vr.end());
      }
      upload_tokens(part);
      DeviceArray<float> dk(k.size()), dv(v.size());
      dk.upload(k);
      dv.upload(v);
      kv_store(layer_, dk.get(), c_.n_head_kv * c_.dk, dv.get(), c_.n_head_kv * c_.dv, d_pos_->get(), d_seq_->get(), n,
               stream_);
      CUDA_OK(cudaStreamSynchronize(stream_));
      mirror(part, k, v);
    }
  }

  // One call: kv_store of the tokens' rows (when store_kv), then attention of every token with
  // its query; returns out [T, H * dv] (poisoned with NaN before the call).
  std::vector<float> step(const std::vector<Token>& toks, int n_decode, uint32_t seed, bool store_kv = true) {
    if (store_kv) store(toks, seed);
    const int64_t n = static_cast<int64_t>(toks.size());
    std::vector<float> q;
    for (const Token& t : toks) {
      const auto qr = token_row(seed, t.seq, t.pos, 2, static_cast<size_t>(c_.n_head()) * c_.dk, c_.q_std);
      q.insert(q.end(), qr.begin(), qr.end());
    }
    q_ = q;
    upload_tokens(toks);
    DeviceArray<float> dq(q.size()), dout(static_cast<size_t>(n) * out_width());
    dq.upload(q);
    dout.fill_bytes(0xFF);  // NaN
    attention(layer_, dq.get(), c_.n_head() * c_.dk, c_.n_head(), scale(), d_pos_->get(), d_seq_->get(), n, n_decode,
              dout.get(), c_.n_head() * c_.dv, *ws_, stream_);
    CUDA_OK(cudaStreamSynchronize(stream_));
    return dout.download();
  }
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(c_.dk)); }

  // Reference output [H * dv] of token t of the last step, and the gap between the two largest
  // scores of each head (natural-log units) in *gaps when given.
  std::vector<double> reference(const std::vector<Token>& toks, size_t t, std::vector<double>* gaps = nullptr) const {
    const Token tok = toks[t];
    std::vector<double> out(out_width(), 0.0);
    if (gaps) gaps->assign(c_.n_head(), 0.0);
    for (int h = 0; h < c_.n_head(); ++h) {
      const int hk = h / c_.group;
      const float* q = q_.data() + (t * c_.n_head() + h) * c_.dk;
      std::vector<double> s(tok.pos + 1);
      for (int j = 0; j <= tok.pos; ++j) {
        const float* kr = ref_k_.data() + row(tok.seq, hk, j) * c_.dk;
        double d = 0;
        for (int e = 0; e < c_.dk; ++e) d += double(q[e]) * kr[e];
        s[j] = d * scale();
      }
      std::vector<double> sorted = s;
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      if (gaps) (*gaps)[h] = sorted.size() > 1 ? sorted[0] - sorted[1] : 1e30;
      const double mx = sorted[0];
      double sum = 0;
      for (double& x : s) sum += x = std::exp(x - mx);
      for (int j = 0; j <= tok.pos; ++j) {
        const float* vr = ref_v_.data() + row(tok.seq, hk, j) * c_.dv;
        const double p = s[j] / sum;
        for (int d = 0; d < c_.dv; ++d) out[h * c_.dv + d] += p * vr[d];
      }
    }
    return out;
  }

 private:
  static constexpr size_t kMaxTokens = 512;

  size_t row(int seq, int head, int pos) const {
    return (static_cast<size_t>(seq) * c_.n_head_kv + head) * c_.n_ctx + pos;
  }
  void upload_tokens(const std::vector<Token>& toks) {
    std::vector<int32_t> pos, seq;
    for (const Token& t : toks) {
      pos.push_back(t.pos);
      seq.push_back(t.seq);
    }
    d_pos_ = std::make_unique<DeviceArray<int32_t>>(pos.size());
    d_seq_ = std::make_unique<DeviceArray<int32_t>>(seq.size());
    d_pos_->upload(pos);
    d_seq_->upload(seq);
  }
  void mirror(const std::vector<Token>& toks, const std::vector<float>& k, const std::vector<float>& v) {
    std::vector<uint8_t> qk(k_bytes_), qv(v_bytes_);
    for (size_t t = 0; t < toks.size(); ++t) {
      if (toks[t].seq < 0) continue;
      for (int h = 0; h < c_.n_head_kv; ++h) {
        const float* kr = k.data() + (t * c_.n_head_kv + h) * c_.dk;
        const float* vr = v.data() + (t * c_.n_head_kv + h) * c_.dv;
        quantize_row(c_.tk, kr, qk.data(), c_.dk);
        dequantize_row(c_.tk, qk.data(), ref_k_.data() + row(toks[t].seq, h, toks[t].pos) * c_.dk, c_.dk);
        quantize_row(c_.tv, vr, qv.data(), c_.dv);
        dequantize_row(c_.tv, qv.data(), ref_v_.data() + row(toks[t].seq, h, toks[t].pos) * c_.dv, c_.dv);
      }
    }
  }

  Config c_;
  int64_t k_bytes_, v_bytes_;
  DeviceArray<uint8_t> d_k_, d_v_;
  std::vector<float> ref_k_, ref_v_;
  KvLayer layer_;
  std::unique_ptr<AttentionWorkspace> ws_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceArray<int32_t>> d_pos_, d_seq_;
  std::vector<float> q_;
};

// Every real token's output against the reference; padding tokens' outputs finite.
void expect_matches(const Harness& hs, const std::vector<Token>& toks, const std::vector<float>& out,
                    const std::string& what) {
  const size_t width = hs.out_width();
  double max_err = 0, max_ref = 0;
  size_t bad = 0;
  for (size_t t = 0; t < toks.size(); ++t) {
    const float* o = out.data() + t * width;
    if (toks[t].seq < 0) {
      for (size_t i = 0; i < width; ++i) bad += std::isfinite(o[i]) ? 0 : 1;
      continue;
    }
    const auto ref = hs.reference(toks, t);
    for (size_t i = 0; i < width; ++i) {
      if (!std::isfinite(o[i])) {
        ++bad;
        continue;
      }
      max_err = std::max(max_err, std::abs(o[i] - ref[i]));
      max_ref = std::max(max_ref, std::abs(ref[i]));
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": non-finite outputs";
  EXPECT_LT(max_err / max_ref, kBound) << what << ": max_err " << max_err << " max_ref " << max_ref;
}

// The three mixes of a call, each on a fresh cache whose sequences have histories up to the
// call's first position: depths from 1 to 700, tiles (64 positions) and decode chunks (256)
// straddled, a padding token among the decode and among the prompt tokens, several sequences of
// different depths in one call, and prompt tiles (64 tokens) that hold two sequences.
enum class Mode { Decode, Prompt, Mixed };

void check_mode(const Config& c, Mode mode, uint32_t seed) {
  Harness hs(c);
  std::vector<Token> toks;
  int n_decode = 0;
  switch (mode) {
    case Mode::Decode:  // depths 1, 257, 700 and 64, and a padding token
      toks = {{0, 0}, {-1, 0}, {1, 256}, {2, 699}, {3, 63}};
      n_decode = 5;
      break;
    case Mode::Prompt:  // a 1-token prompt, 70 tokens across position 256, 60 tokens ending at 700
      toks = run(0, 0, 1) + run(1, 190, 260) + std::vector<Token>{{-1, 0}} + run(2, 640, 700);
      n_decode = 0;
      break;
    case Mode::Mixed:  // two decode tokens, a 130-token first chunk and a 20-token later chunk
      toks = std::vector<Token>{{0, 699}, {2, 63}} + run(1, 0, 130) + run(3, 500, 520);
      n_decode = 2;
      break;
  }
  std::vector<Token> history;
  for (int32_t s = 0; s < c.n_slots; ++s) {
    int32_t first = -1;
    for (const Token& t : toks)
      if (t.seq == s && (first < 0 || t.pos < first)) first = t.pos;
    if (first > 0) history = history + run(s, 0, first);
  }
  hs.store(history, seed);
  const auto out = hs.step(toks, n_decode, seed);
  const char* names[] = {"decode", "prompt", "mixed"};
  expect_matches(hs, toks, out, fmt::format("{} {}", c.name(), names[static_cast<int>(mode)]));
}

void check_all_modes(const Config& c, uint32_t seed) {
  for (Mode m : {Mode::Decode, Mode::Prompt, Mode::Mixed}) check_mode(c, m, seed += 10);
}

// Every head dim the kernels are instantiated for (80: F16/F32 only), GQA groups 1, 4 and 8.
void sweep(DType tk, DType tv, uint32_t seed) {
  const bool plain = (tk == DType::F16 || tk == DType::F32) && (tv == DType::F16 || tv == DType::F32);
  for (int d : {64, 80, 96, 128, 256}) {
    if (d == 80 && !plain) continue;
    for (int group : {1, 4, 8}) {
      Config c;
      c.tk = tk;
      c.tv = tv;
      c.dk = c.dv = d;
      c.group = group;
      SCOPED_TRACE(c.name());
      check_all_modes(c, seed += 1000);
    }
  }
}

#define REQUIRE_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU on this machine (velocity::engine::cuda_device_count() == 0)"

TEST(CudaAttention, F32MatchesReference) {
  REQUIRE_GPU();
  sweep(DType::F32, DType::F32, 1);
}
TEST(CudaAttention, F16MatchesReference) {
  REQUIRE_GPU();
  sweep(DType::F16, DType::F16, 2);
}
TEST(CudaAttention, Q8_0MatchesReference) {
  REQUIRE_GPU();
  sweep(DType::Q8_0, DType::Q8_0, 3);
}
TEST(CudaAttention, Q4_0MatchesReference) {
  REQUIRE_GPU();
  sweep(DType::Q4_0, DType::Q4_0, 4);
}
TEST(CudaAttention, Q4_1MatchesReference) {
  REQUIRE_GPU();
  sweep(DType::Q4_1, DType::Q4_1, 5);
}
TEST(CudaAttention, Q5_1MatchesReference) {
  REQUIRE_GPU();
  sweep(DType::Q5_1, DType::Q5_1, 6);
}
TEST(CudaAttention, F16KeysQ8_0ValuesMatchReference) {
  REQUIRE_GPU();
  sweep(DType::F16, DType::Q8_0, 7);
}
TEST(CudaAttention, Q8_0KeysF16ValuesMatchReference) {
  REQUIRE_GPU();
  sweep(DType::Q8_0, DType::F16, 8);
}

// Other type mixes (the same kernels: the cache types are runtime values), GQA groups 2, 16 and
// 32 (two blocks of 16 heads per KV head in the decode kernel), MHA with 8 KV heads.
TEST(CudaAttention, OtherMixesAndGroups) {
  REQUIRE_GPU();
  uint32_t seed = 9000;
  for (auto [tk, tv] :
       {std::pair{DType::Q4_0, DType::Q5_1}, std::pair{DType::F32, DType::Q4_1}, std::pair{DType::Q5_1, DType::F16}}) {
    Config c;
    c.tk = tk;
    c.tv = tv;
    SCOPED_TRACE(c.name());
    check_all_modes(c, seed += 100);
  }
  for (int group : {2, 16, 32}) {
    Config c;
    c.group = group;
    SCOPED_TRACE(c.name());
    check_all_modes(c, seed += 100);
  }
  Config mha;
  mha.group = 1;
  mha.n_head_kv = 8;
  mha.tk = mha.tv = DType::Q8_0;
  SCOPED_TRACE(mha.name());
  check_all_modes(mha, seed += 100);
}

// What the fast kernels do not take goes to the generic kernel: a head dim with no
// instantiation (32, 512), K and V head dims that differ, and (slot, head) runs that are not
// 16-byte aligned (n_ctx * row bytes not a multiple of 16).
TEST(CudaAttention, GenericKernelMatchesReference) {
  REQUIRE_GPU();
  Config d32;
  d32.dk = d32.dv = 32;
  Config split;
  split.dk = 128;
  split.dv = 64;
  split.tv = DType::Q8_0;
  Config unaligned;
  unaligned.tk = unaligned.tv = DType::Q4_0;
  unaligned.dk = unaligned.dv = 96;  // 54-byte rows
  unaligned.n_ctx = 701;
  Config d512;
  d512.dk = d512.dv = 512;
  d512.group = 1;
  uint32_t seed = 7000;
  for (const Config& c : {d32, split, unaligned, d512}) {
    SCOPED_TRACE(c.name());
    check_all_modes(c, seed += 100);
  }
}

// Queries so large that q * scale would overflow f16: the kernels scale such a head down by a
// power of two and undo it on the scores. The softmax is then one-hot; heads whose two largest
// scores are close (where the reference's choice is a matter of rounding) are not compared.
TEST(CudaAttention, HugeQueriesStayInRange) {
  REQUIRE_GPU();
  Config c;
  c.q_std = 5e4f;
  Harness hs(c);
  const std::vector<Token> toks = std::vector<Token>{{0, 300}, {2, 40}} + run(1, 0, 100);
  hs.store(run(0, 0, 300) + run(2, 0, 40), 77);
  const auto out = hs.step(toks, 2, 77);
  const size_t width = hs.out_width();
  double max_err = 0, max_ref = 0;
  int compared = 0;
  for (size_t t = 0; t < toks.size(); ++t) {
    std::vector<double> gaps;
    const auto ref = hs.reference(toks, t, &gaps);
    for (int h = 0; h < c.n_head(); ++h) {
      for (int d = 0; d < c.dv; ++d) ASSERT_TRUE(std::isfinite(out[t * width + h * c.dv + d])) << t << " " << h;
      if (gaps[h] < 1000) continue;  // exp(-1000) = 0: a clear winner
      ++compared;
      for (int d = 0; d < c.dv; ++d) {
        max_err = std::max(max_err, std::abs(out[t * width + h * c.dv + d] - ref[h * c.dv + d]));
        max_ref = std::max(max_ref, std::abs(ref[h * c.dv + d]));
      }
    }
  }
  EXPECT_GT(compared, 0);
  EXPECT_LT(max_err / max_ref, kBound) << "max_err " << max_err << " max_ref " << max_ref;
}

// ---- Bitwise determinism -------------------------------------------------------------------------

// Rows of `got` and `want` (width floats each) are the same bits.
void expect_same_rows(const std::vector<float>& got, size_t got_row, const std::vector<float>& want, size_t want_row,
                      size_t width, const std::string& what) {
  EXPECT_EQ(std::memcmp(got.data() + got_row * width, want.data() + want_row * width, width * sizeof(float)), 0)
      << what << ": row " << got_row << " differs from row " << want_row;
}

// A decode token's output is the same bits alone, beside 7 other decode tokens (at any index),
// with padding tokens, and in a call with a prompt.
void check_decode_determinism(DType type) {
  Config c;
  c.tk = c.tv = type;
  c.n_slots = 9;
  c.n_ctx = 1024;
  Harness hs(c);
  const uint32_t seed = 31;
  const int32_t depth[8] = {100, 900, 257, 1, 700, 513, 64, 1000};
  std::vector<Token> hist, all;
  for (int32_t s = 0; s < 8; ++s) {
    hist = hist + run(s, 0, depth[s]);
    all.push_back({s, depth[s] - 1});
  }
  hs.store(hist, seed);
  const size_t width = hs.out_width();
  const auto together = hs.step(all, 8, seed, false);
  for (size_t i = 0; i < all.size(); ++i) {
    const auto alone = hs.step({all[i]}, 1, seed, false);
    expect_same_rows(alone, 0, together, i, width, fmt::format("{} alone", i));
  }
  std::vector<Token> reversed(all.rbegin(), all.rend());
  reversed = reversed + std::vector<Token>{{-1, 0}, {-1, 5}, {-1, 0}};
  const auto padded = hs.step(reversed, 11, seed, false);
  for (size_t i = 0; i < all.size(); ++i) expect_same_rows(padded, 7 - i, together, i, width, "reversed and padded");
  const auto with_prompt = hs.step(std::vector<Token>{all[4]} + run(8, 0, 90), 1, seed, true);
  expect_same_rows(with_prompt, 0, together, 4, width, "beside a prompt");
}

TEST(CudaAttention, DecodeIsBitwiseDeterministic) {
  REQUIRE_GPU();
  for (DType t : {DType::F16, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(t));
    check_decode_determinism(t);
  }
}

// A prompt's outputs are the same bits whether it is processed in one call of 300 tokens or in
// chunks (store + attention per chunk), with other sequences' tokens sharing the calls.
void check_prompt_determinism(DType type, const std::vector<int32_t>& cuts) {
  Config c;
  c.tk = c.tv = type;
  c.n_ctx = 1024;
  const uint32_t seed = 57;
  const size_t width = static_cast<size_t>(c.n_head()) * c.dv;
  std::vector<float> whole;
  {
    Harness hs(c);
    whole = hs.step(run(0, 0, 300), 0, seed);
  }
  Harness hs(c);
  hs.store(run(1, 0, 410), seed);  // the decode tokens' history
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    // Call i: [a decode token of sequence 1 on odd calls] + chunk of sequence 0 + [a padding
    // token and 20 prompt tokens of sequence 2 on even calls]: the chunk lands at other offsets
    // of the prompt kernel's 64-token tiles, beside other sequences.
    const bool odd = i % 2 == 1;
    std::vector<Token> toks;
    if (odd) toks.push_back({1, 400 + static_cast<int32_t>(i)});
    const size_t first = toks.size();
    toks = toks + run(0, cuts[i], cuts[i + 1]);
    const int32_t p2 = 20 * static_cast<int32_t>(i / 2);
    if (!odd) toks = toks + std::vector<Token>{{-1, 0}} + run(2, p2, p2 + 20);
    const auto out = hs.step(toks, odd ? 1 : 0, seed);
    for (int32_t p = cuts[i]; p < cuts[i + 1]; ++p)
      expect_same_rows(out, first + (p - cuts[i]), whole, p, width, fmt::format("position {}", p));
  }
}

TEST(CudaAttention, PromptIsBitwiseDeterministicAcrossChunkings) {
  REQUIRE_GPU();
  for (DType t : {DType::F16, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(t));
    check_prompt_determinism(t, {0, 128, 256, 300});
    check_prompt_determinism(t, {0, 100, 250, 300});
    check_prompt_determinism(t, {0, 1, 2, 65, 300});
  }
}

// ---- kv_store and kv_copy_sequence ----------------------------------------------------------------

// Blocks of 32 values that probe each quantiser's corners: zeros, a constant (Q4_1/Q5_1 d = 0),
// magnitude ties of both signs (Q4_0 takes the first), signed zeros as the minimum (std::min
// keeps the first of equals), values near the f16 limits, and exact .5 ties for the rounding.
std::vector<float> probe_values(size_t n, uint32_t seed) {
  std::vector<float> x = random_vector(n, seed);
  for (size_t b = 0; b * 32 < n; ++b) {
    float* blk = x.data() + b * 32;
    switch (b % 9) {
      case 1: std::fill(blk, blk + 32, 0.0f); break;
      case 2: std::fill(blk, blk + 32, 0.75f); break;
      case 3:
        blk[3] = -2.5f;
        blk[10] = 2.5f;
        break;
      case 4:
        for (int j = 0; j < 32; ++j) blk[j] = std::abs(blk[j]);
        blk[0] = 0.0f;
        blk[1] = -0.0f;
        break;
      case 5:
        for (int j = 0; j < 32; ++j) blk[j] = std::abs(blk[j]);
        blk[0] = -0.0f;
        blk[1] = 0.0f;
        break;
      case 6:
        for (int j = 0; j < 32; ++j) blk[j] *= 3000.0f;
        break;
      case 7:
        for (int j = 0; j < 32; ++j) blk[j] *= 1e-6f;
        break;
      case 8:  // Q8_0: amax 127 gives d = 1 and x * id = j - 15.5 exactly
        for (int j = 0; j < 31; ++j) blk[j] = static_cast<float>(j) - 15.5f;
        blk[31] = 127.0f;
        break;
      default: break;
    }
  }
  return x;
}

TEST(CudaKvCache, StoreMatchesReferenceQuantiserBitForBit) {
  REQUIRE_GPU();
  for (DType type : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_1}) {
    for (int d : {64, 96, 128}) {
      SCOPED_TRACE(fmt::format("{} d={}", dtype_name(type), d));
      const int n_head_kv = 3, n_slots = 3, n_ctx = 40;
      const int64_t rb = dtype_row_bytes(type, d);
      const size_t bytes = static_cast<size_t>(n_slots) * n_head_kv * n_ctx * rb;
      DeviceArray<uint8_t> dk(bytes), dv(bytes);
      dk.fill_bytes(0xAB);
      dv.fill_bytes(0xAB);
      KvLayer layer;
      layer.k = dk.get();
      layer.v = dv.get();
      layer.type_k = layer.type_v = type;
      layer.n_slots = n_slots;
      layer.n_ctx = n_ctx;
      layer.n_head_kv = n_head_kv;
      layer.head_dim_k = layer.head_dim_v = d;
      const std::vector<Token> toks = {{0, 0}, {2, 39}, {-1, 3}, {1, 17}, {0, 1}, {2, 0}, {-1, 0}, {1, 18}};
      const int64_t n = static_cast<int64_t>(toks.size()), ld = n_head_kv * d;
      const auto k = probe_values(n * ld, 1), v = probe_values(n * ld, 2);
      DeviceArray<float> xk(k.size()), xv(v.size());
      xk.upload(k);
      xv.upload(v);
      std::vector<int32_t> pos, seq;
      for (const Token& t : toks) {
        pos.push_back(t.pos);
        seq.push_back(t.seq);
      }
      DeviceArray<int32_t> dpos(pos.size()), dseq(seq.size());
      dpos.upload(pos);
      dseq.upload(seq);
      kv_store(layer, xk.get(), ld, xv.get(), ld, dpos.get(), dseq.get(), n, nullptr);
      CUDA_OK(cudaDeviceSynchronize());
      for (int side = 0; side < 2; ++side) {
        std::vector<uint8_t> want(bytes, 0xAB);
        const auto& x = side == 0 ? k : v;
        for (size_t t = 0; t < toks.size(); ++t) {
          if (toks[t].seq < 0) continue;
          for (int h = 0; h < n_head_kv; ++h) {
            const size_t r = (static_cast<size_t>(toks[t].seq) * n_head_kv + h) * n_ctx + toks[t].pos;
            quantize_row(type, x.data() + t * ld + h * d, want.data() + r * rb, d);
          }
        }
        const auto got = (side == 0 ? dk : dv).download();
        size_t first_bad = bytes;
        for (size_t i = 0; i < bytes && first_bad == bytes; ++i)
          if (got[i] != want[i]) first_bad = i;
        EXPECT_EQ(first_bad, bytes) << (side == 0 ? "K" : "V") << ": first differing byte " << first_bad << " (row "
                                    << first_bad / rb << ", byte " << first_bad % rb << ")";
      }
    }
  }
}

TEST(CudaKvCache, CopySequenceCopiesOnlyThePrefix) {
  REQUIRE_GPU();
  for (DType type : {DType::F16, DType::Q4_1}) {
    SCOPED_TRACE(dtype_name(type));
    Config c;
    c.tk = c.tv = type;
    c.n_slots = 3;
    c.n_ctx = 48;
    c.n_head_kv = 3;
    const int64_t rb = dtype_row_bytes(type, c.dk);
    const size_t bytes = static_cast<size_t>(c.n_slots) * c.n_head_kv * c.n_ctx * rb;
    DeviceArray<uint8_t> dk(bytes), dv(bytes);
    KvLayer layer;
    layer.k = dk.get();
    layer.v = dv.get();
    layer.type_k = layer.type_v = type;
    layer.n_slots = c.n_slots;
    layer.n_ctx = c.n_ctx;
    layer.n_head_kv = c.n_head_kv;
    layer.head_dim_k = layer.head_dim_v = c.dk;
    std::vector<uint8_t> init_k(bytes), init_v(bytes);
    std::mt19937 rng(5);
    for (uint8_t& b : init_k) b = static_cast<uint8_t>(rng());
    for (uint8_t& b : init_v) b = static_cast<uint8_t>(rng());
    dk.upload(init_k);
    dv.upload(init_v);
    kv_copy_sequence(layer, 0, 2, 20, nullptr);
    kv_copy_sequence(layer, 1, 1, 20, nullptr);  // no-op
    kv_copy_sequence(layer, 1, 0, 0, nullptr);   // no-op
    CUDA_OK(cudaDeviceSynchronize());
    for (int side = 0; side < 2; ++side) {
      const std::vector<uint8_t>& init = side == 0 ? init_k : init_v;
      std::vector<uint8_t> want = init;
      for (int h = 0; h < c.n_head_kv; ++h)
        for (int p = 0; p < 20; ++p)
          std::memcpy(want.data() + ((2 * c.n_head_kv + h) * c.n_ctx + p) * rb,
                      init.data() + ((0 * c.n_head_kv + h) * c.n_ctx + p) * rb, rb);
      EXPECT_TRUE((side == 0 ? dk : dv).download() == want) << (side == 0 ? "K" : "V");
    }
  }
}

}  // namespace
}  // namespace velocity::engine::cuda
