// engine::cpu::Matmul against an independent reference, for every weight type on every ISA this
// CPU has: the weights are quantised with velocity::quantize_row, dequantised with
// dequantize_row, and multiplied with the F32 activations in double. y is poisoned (NaN) first.
//
// Tolerance. F32/F16/BF16 weights meet the activations unquantised; the only error is float
// accumulation (16 partial sums of at most n_in/16 terms, then a tree), well under
// 1e-6 * sum_i |w_i x_i| for these sizes. The quantised formats multiply with activations
// quantised to 8 bits per block (quant_act.h): each x_i moves by at most amax(block of i) / 254
// (half a step of d = amax/127), so the result moves by at most
//     sum_i |w_i| * amax(block of i) / 254,
// a rigorous bound (typically ~10x above the actual error, which is a random walk); plus 1e-5 *
// sum |w_i x_i| for the float accumulation and the fp16 scales' products.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "engine/cpu/matmul.h"
#include "engine/cpu/matmul_packed.h"
#include "engine/cpu/quant_act.h"

namespace velocity::engine::cpu {
namespace {

const std::vector<DType>& all_types() {
  static const std::vector<DType> types = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                                           DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K,
                                           DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4};
  return types;
}

std::vector<CpuIsa> available_isas() {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512})
    if (cpu_supports(cpu_features(), isa)) isas.push_back(isa);
  return isas;
}

// Forces an ISA for the lifetime of the object.
struct IsaScope {
  explicit IsaScope(CpuIsa isa) { set_cpu_isa_for_testing(isa); }
  ~IsaScope() { set_cpu_isa_for_testing(std::nullopt); }
  IsaScope(const IsaScope&) = delete;
  IsaScope& operator=(const IsaScope&) = delete;
};

// A quantised weight matrix with its dequantised copy.
struct TestWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> dequant;  // n_out * n_in
  Weight w;
};

TestWeight make_weight(DType type, int64_t n_in, int64_t n_out, std::mt19937& rng) {
  TestWeight t;
  t.w.name = "test.weight";
  t.w.type = type;
  t.w.n_in = n_in;
  t.w.n_out = n_out;
  t.w.row_bytes = t.w.stride = dtype_row_bytes(type, n_in);
  t.bytes.resize((size_t)(t.w.row_bytes * n_out));
  t.dequant.resize((size_t)(n_in * n_out));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> row_scale(0.05f, 2.0f);
  std::vector<float> row(n_in);
  for (int64_t r = 0; r < n_out; ++r) {
    const float s = row_scale(rng);
    for (float& v : row) v = normal(rng) * s;
    quantize_row(type, row.data(), t.bytes.data() + r * t.w.row_bytes, n_in);
    dequantize_row(type, t.bytes.data() + r * t.w.row_bytes, t.dequant.data() + r * n_in, n_in);
  }
  t.w.data = t.bytes.data();
  return t;
}

std::vector<float> make_acts(int64_t n_tokens, int64_t ldx, std::mt19937& rng) {
  std::vector<float> x((size_t)(n_tokens * ldx), std::numeric_limits<float>::quiet_NaN());  // padding stays NaN
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t n_in = ldx - 5;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t i = 0; i < n_in; ++i) x[t * ldx + i] = normal(rng) * (i % 97 == 0 ? 8.0f : 1.0f);  // a few outliers
  return x;
}

// Runs W x and checks every output against the double-precision reference with the tolerance
// of the header; returns y.
std::vector<float> run_and_check(ThreadPool& pool, const TestWeight& tw, const std::vector<float>& x, int64_t ldx, int64_t n_tokens,
                                 const std::string& what) {
  const Weight& w = tw.w;
  const int64_t ldy = w.n_out + 3;
  std::vector<float> y((size_t)(n_tokens * ldy), std::numeric_limits<float>::quiet_NaN());
  Matmul mm(pool, n_tokens, w.n_in);
  mm.run(w, x.data(), ldx, n_tokens, y.data(), ldy);
  const ActKind kind = act_kind(w.type);
  const int64_t act_block = kind == ActKind::F32 ? 1 : act_block_size(kind);
  int failures = 0;
  for (int64_t t = 0; t < n_tokens && failures < 5; ++t) {
    const float* xt = x.data() + t * ldx;
    std::vector<double> block_amax((size_t)(w.n_in / act_block), 0.0);
    for (int64_t i = 0; i < w.n_in; ++i)
      block_amax[i / act_block] = std::max(block_amax[i / act_block], (double)std::fabs(xt[i]));
    for (int64_t r = 0; r < w.n_out && failures < 5; ++r) {
      const float* wr = tw.dequant.data() + r * w.n_in;
      double ref = 0, abs_sum = 0, quant_bound = 0;
      for (int64_t i = 0; i < w.n_in; ++i) {
        ref += (double)wr[i] * xt[i];
        abs_sum += std::fabs((double)wr[i] * xt[i]);
        quant_bound += std::fabs((double)wr[i]) * block_amax[i / act_block] / 254.0;
      }
      const double tol = kind == ActKind::F32 ? 1e-6 * abs_sum + 1e-30 : quant_bound + 1e-5 * abs_sum + 1e-30;
      const float got = y[t * ldy + r];
      if (!(std::fabs(got - ref) <= tol)) {
        ADD_FAILURE() << what << ": token " << t << " row " << r << ": got " << got << ", reference " << ref << ", tolerance "
                      << tol << " (sum |w x| " << abs_sum << ")";
        ++failures;
      }
    }
    for (int64_t r = w.n_out; r < ldy; ++r) EXPECT_TRUE(std::isnan(y[t * ldy + r])) << what << ": wrote past n_out";
  }
  return y;
}

std::string label(CpuIsa isa, DType type, int64_t n_in, int64_t n_out, int64_t n_tokens) {
  return std::string(cpu_isa_name(isa)) + " " + std::string(dtype_name(type)) + " n_in " + std::to_string(n_in) + " n_out " +
         std::to_string(n_out) + " tokens " + std::to_string(n_tokens);
}

std::vector<int64_t> n_in_cases(DType type) {
  if (dtype_block_size(type) == 256) return {256, 512, 2816};
  if (dtype_block_size(type) == 1) return {256, 512, 2880, 1001};  // F32/F16/BF16: any length
  return {256, 512, 2880, 96};
}

TEST(Matmul, EveryTypeEveryIsaMatchesReference) {
  ThreadPool pool(2);
  std::mt19937 rng(1234);
  for (CpuIsa isa : available_isas()) {
    IsaScope scope(isa);
    for (DType type : all_types()) {
      for (int64_t n_in : n_in_cases(type)) {
        const int64_t n_out = n_in == 2880 || n_in == 2816 ? 45 : 67;  // not multiples of any tile
        const TestWeight tw = make_weight(type, n_in, n_out, rng);
        for (int64_t n_tokens : {1, 3, 8, 17}) {
          const int64_t ldx = n_in + 5;
          const std::vector<float> x = make_acts(n_tokens, ldx, rng);
          run_and_check(pool, tw, x, ldx, n_tokens, label(isa, type, n_in, n_out, n_tokens));
        }
      }
    }
  }
}

// n_tokens = 8 at once gives the same bits as 8 calls of one token, and the thread count does
// not change a bit either (kernels fix each output's order of operations).
TEST(Matmul, BatchAndThreadCountDoNotChangeResults) {
  ThreadPool pool1(1), pool2(2);
  std::mt19937 rng(99);
  for (CpuIsa isa : available_isas()) {
    IsaScope scope(isa);
    for (DType type : all_types()) {
      const int64_t n_in = 512, n_out = 301, n_tokens = 8, ldx = n_in + 5, ldy = n_out;
      const TestWeight tw = make_weight(type, n_in, n_out, rng);
      const std::vector<float> x = make_acts(n_tokens, ldx, rng);
      std::vector<float> batch((size_t)(n_tokens * ldy)), single((size_t)(n_tokens * ldy)), one_thread((size_t)(n_tokens * ldy));
      Matmul mm2(pool2, n_tokens, n_in), mm1(pool1, n_tokens, n_in);
      mm2.run(tw.w, x.data(), ldx, n_tokens, batch.data(), ldy);
      for (int64_t t = 0; t < n_tokens; ++t) mm2.run(tw.w, x.data() + t * ldx, ldx, 1, single.data() + t * ldy, ldy);
      mm1.run(tw.w, x.data(), ldx, n_tokens, one_thread.data(), ldy);
      const std::string what = label(isa, type, n_in, n_out, n_tokens);
      EXPECT_EQ(0, std::memcmp(batch.data(), single.data(), batch.size() * 4)) << what << ": batch vs one token at a time";
      EXPECT_EQ(0, std::memcmp(batch.data(), one_thread.data(), batch.size() * 4)) << what << ": 2 threads vs 1";
    }
  }
}

// The AVX2 and AVX-512 kernels do the same integer and float steps (matmul_x86.h).
TEST(Matmul, Avx2AndAvx512AgreeBitwise) {
  if (!cpu_supports(cpu_features(), CpuIsa::Avx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ThreadPool pool(2);
  std::mt19937 rng(7);
  for (DType type : all_types()) {
    const int64_t n_in = 768, n_out = 50, n_tokens = 5, ldx = n_in + 5;
    const TestWeight tw = make_weight(type, n_in, n_out, rng);
    const std::vector<float> x = make_acts(n_tokens, ldx, rng);
    std::vector<float> y2((size_t)(n_tokens * n_out)), y512(y2.size());
    Matmul mm(pool, n_tokens, n_in);
    {
      IsaScope scope(CpuIsa::Avx2);
      mm.run(tw.w, x.data(), ldx, n_tokens, y2.data(), n_out);
    }
    {
      IsaScope scope(CpuIsa::Avx512);
      mm.run(tw.w, x.data(), ldx, n_tokens, y512.data(), n_out);
    }
    EXPECT_EQ(0, std::memcmp(y2.data(), y512.data(), y2.size() * 4)) << dtype_name(type);
  }
}

// The load-time packed layout (matmul_packed.h) of a TestWeight: same dequantised values.
TestWeight packed_copy(const TestWeight& tw) {
  TestWeight p;
  p.dequant = tw.dequant;
  p.bytes.resize((size_t)(tw.w.n_mat * tw.w.n_out * packed_row_bytes(tw.w.type, tw.w.n_in)));
  p.w = pack_weight(tw.w, p.bytes.data());
  return p;
}

// Packed weights on every ISA (the scalar and AVX2 builds read them too, should the ISA be
// forced after loading), with row counts that leave GGUF-layout tail rows and none.
TEST(Matmul, PackedMatchesReference) {
  ThreadPool pool(2);
  std::mt19937 rng(4321);
  for (CpuIsa isa : available_isas()) {
    IsaScope scope(isa);
    for (DType type : all_types()) {
      if (!has_packed_layout(type)) continue;
      for (int64_t n_in : dtype_block_size(type) == 256 ? std::vector<int64_t>{256, 2816} : std::vector<int64_t>{256, 2880, 96})
        for (int64_t n_out : {16, 67, 45}) {
          const TestWeight packed = packed_copy(make_weight(type, n_in, n_out, rng));
          ASSERT_EQ(packed.w.layout, WeightLayout::CpuPacked);
          ASSERT_NE(packed.w.stride, dtype_row_bytes(type, n_in));
          for (int64_t n_tokens : {1, 2, 3, 5, 8, 17}) {
            const int64_t ldx = n_in + 5;
            const std::vector<float> x = make_acts(n_tokens, ldx, rng);
            run_and_check(pool, packed, x, ldx, n_tokens, "packed " + label(isa, type, n_in, n_out, n_tokens));
          }
        }
    }
  }
}

// Packed weights keep the batch and thread-count properties, and rows read back (embedding
// lookups) as the GGUF rows' values; the matrices of a packed 3-D weight are its experts.
TEST(Matmul, PackedBatchThreadsRowsAndExperts) {
  ThreadPool pool1(1), pool2(2);
  std::mt19937 rng(77);
  for (DType type : all_types()) {
    if (!has_packed_layout(type)) continue;
    const int64_t n_in = 512, n_out = 301, n_tokens = 8, ldx = n_in + 5, ldy = n_out;
    const TestWeight plain = make_weight(type, n_in, 2 * n_out, rng);
    TestWeight experts = plain;
    experts.w.n_out = n_out;
    experts.w.n_mat = 2;
    const TestWeight packed = packed_copy(experts);
    const std::vector<float> x = make_acts(n_tokens, ldx, rng);
    std::vector<float> row((size_t)n_in);
    for (int64_t r = 0; r < 2 * n_out; ++r) {
      dequantize_weight_row(packed.w, r, row.data());
      ASSERT_EQ(0, std::memcmp(row.data(), plain.dequant.data() + r * n_in, (size_t)n_in * 4)) << "row " << r;
    }
    for (int64_t e = 0; e < 2; ++e) {
      const Weight w = packed.w.matrix(e);
      std::vector<float> batch((size_t)(n_tokens * ldy)), single(batch.size()), one_thread(batch.size()), unpacked(batch.size());
      Matmul mm2(pool2, n_tokens, n_in), mm1(pool1, n_tokens, n_in);
      mm2.run(w, x.data(), ldx, n_tokens, batch.data(), ldy);
      for (int64_t t = 0; t < n_tokens; ++t) mm2.run(w, x.data() + t * ldx, ldx, 1, single.data() + t * ldy, ldy);
      mm1.run(w, x.data(), ldx, n_tokens, one_thread.data(), ldy);
      mm2.run(experts.w.matrix(e), x.data(), ldx, n_tokens, unpacked.data(), ldy);
      const std::string what = std::string(dtype_name(type)) + " packed expert " + std::to_string(e);
      EXPECT_EQ(0, std::memcmp(batch.data(), single.data(), batch.size() * 4)) << what << ": batch vs one token at a time";
      EXPECT_EQ(0, std::memcmp(batch.data(), one_thread.data(), batch.size() * 4)) << what << ": 2 threads vs 1";
      // Packed and GGUF layouts sum the same exact block integers in different float orders.
      for (size_t i = 0; i < batch.size(); ++i)
        ASSERT_NEAR(batch[i], unpacked[i], 1e-4f * (1.0f + std::fabs(unpacked[i]))) << what << " output " << i;
    }
  }
}

TEST(Matmul, RejectsBadArguments) {
  ThreadPool pool(2);
  std::mt19937 rng(5);
  TestWeight tw = make_weight(DType::Q8_0, 256, 4, rng);
  std::vector<float> x(256 * 4, 1.0f), y(64, 0.0f);
  Matmul mm(pool, 2, 256);
  EXPECT_THROW(mm.run(tw.w, x.data(), 256, 3, y.data(), 4), Error);  // more tokens than sized for
  Weight experts = tw.w;
  experts.n_mat = 2;
  EXPECT_THROW(mm.run(experts, x.data(), 256, 1, y.data(), 4), Error);
  Matmul small(pool, 2, 128);
  EXPECT_THROW(small.run(tw.w, x.data(), 256, 1, y.data(), 4), Error);  // n_in larger than sized for
  Weight unsupported = tw.w;
  unsupported.type = DType::IQ2_XXS;
  EXPECT_FALSE(matmul_supports(DType::IQ2_XXS));
  EXPECT_THROW(mm.run(unsupported, x.data(), 256, 1, y.data(), 4), Error);
  Weight bad_row = tw.w;
  bad_row.stride += 1;
  EXPECT_THROW(mm.run(bad_row, x.data(), 256, 1, y.data(), 4), Error);
  mm.run(tw.w, x.data(), 256, 2, y.data(), 4);  // and a good call still works afterwards
  EXPECT_TRUE(std::isfinite(y[0]));
}

}  // namespace
}  // namespace velocity::engine::cpu
