// The CUDA matrix products (engine/cuda/kernels.h "Weights" and "Matrix products") against an
// independent reference: weights quantised with velocity::quantize_row and expanded with
// dequantize_row, multiplied with the activations in double.
//
// MatmulLayout.* run on the host (no GPU needed): the CUDA weight layout (weights.cu) read back
// by the very decoders the kernels use (quant_device.cuh, compiled here for the host), element
// by element, must give the reference dequantisation bit for bit. Every other test needs a GPU
// and skips with a message without one.
//
// Tolerance of the products. The decode path multiplies the exact weight levels (integers in
// f16, scales applied in f32) with activations rounded to f16 after an exact power-of-two
// scaling that puts each token's largest |x| in [2^13, 2^14): every x_i moves by at most 2^-11
// |x_i| (f16 normal range; smaller values are subnormal, off by at most 2^-25 of the scaled
// unit), so |y - y_ref| <= 2^-11 * S1 + 2^-25 * 2^-e * sum|w_i|, S1 = sum_i |w_i x_i|, plus the
// f32 accumulation (tensor-core and FMA sums over K <= 16K terms: 3e-5 * S1 covers it with a
// wide margin). The prompt path also rounds each weight s*q+o to f16 once: another 2^-11 * S1
// (2^-25 absolute per weight in the subnormal range). BF16 weights are converted to f16 in both
// paths (exact in f16's normal range). F32 weights (and F16/BF16 rows whose length is not a
// multiple of 64) take the f32 CUDA-core kernel: only the accumulation term.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/quant.h"
#include "engine/backend.h"
#include "engine/cuda/kernels.h"
#include "engine/cuda/matmul_gguf.cuh"
#include "engine/cuda/matmul_tile.cuh"
#include "engine/cuda/matmul_tuning.cuh"
#include "engine/cuda/quant_device.cuh"

namespace velocity::engine::cuda {
namespace {

using mm::Fmt;

const std::vector<DType>& all_types() {
  static const std::vector<DType> types = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                                           DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K,
                                           DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4};
  return types;
}

std::string type_name(DType t) { return std::string(dtype_name(t)); }

// Random rows of `type`: normal values times a per-row scale, quantised, and their reference
// dequantisation.
struct HostWeight {
  DType type = DType::F32;
  int64_t n_in = 0, n_rows = 0, row_bytes = 0;
  std::vector<uint8_t> gguf;   // n_rows * row_bytes
  std::vector<float> dequant;  // n_rows * n_in
};

HostWeight make_host_weight(DType type, int64_t n_in, int64_t n_rows, std::mt19937& rng) {
  HostWeight h;
  h.type = type, h.n_in = n_in, h.n_rows = n_rows;
  h.row_bytes = dtype_row_bytes(type, n_in);
  h.gguf.resize(static_cast<size_t>(h.row_bytes * n_rows));
  h.dequant.resize(static_cast<size_t>(n_in * n_rows));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> row_scale(0.05f, 2.0f);
  std::vector<float> row(static_cast<size_t>(n_in));
  for (int64_t r = 0; r < n_rows; ++r) {
    const float s = row_scale(rng);
    for (float& v : row) v = normal(rng) * s;
    quantize_row(type, row.data(), h.gguf.data() + r * h.row_bytes, n_in);
    dequantize_row(type, h.gguf.data() + r * h.row_bytes, h.dequant.data() + r * n_in, n_in);
  }
  return h;
}

// ---- Host-only: the layout and the decoders --------------------------------------------------

// The decode kernel's folded form of a K-quant step (Fmt::kFold) against the plain form the
// reference checks: each folded value is the plain level times an integer sub-block scale m in
// [0, 63], the same m for the whole sub-block, with d * m (Fold::d) equal bit for bit to the
// plain scale and the folded offsets equal to the plain ones.
template <class F, int kC>
int check_folded(const typename F::template Data<kC>& d, int jj, int J, int s, const uint32_t frag[4], const float sc[2],
                 const float off[2]) {
  uint32_t folded[4];
  const typename F::Fold fold = F::fold(d);
  const typename F::Sub sub = F::fold_sub(fold, 2 * (J & 3) + s / 2);
  F::template frag_folded<kC>(d, jj, J & 3, s, sub, folded);
  const float* unit = fold.d;
  const float* folded_off = sub.off;
  int bad = 0;
  for (int rh = 0; rh < 2; ++rh) {
    if (std::memcmp(&folded_off[rh], &off[rh], 4) != 0 && ++bad <= 3)
      ADD_FAILURE() << "chunk " << J << " step " << s << ": folded offset " << folded_off[rh] << ", plain " << off[rh];
    float m = -1.0f;  // the sub-block's integer scale, from its first non-zero level
    for (int kk = 0; kk < 4; ++kk) {
      const int reg = rh + 2 * (kk / 2), sh = 16 * (kk % 2);
      const float level = mm::h2f(frag[reg] >> sh), value = mm::h2f(folded[reg] >> sh);
      if (level == 0.0f) {
        if (value != 0.0f && ++bad <= 3) ADD_FAILURE() << "chunk " << J << " step " << s << ": level 0 folded to " << value;
        continue;
      }
      const float here = value / level;
      if ((here != std::floor(here) || here < 0.0f || here > 63.0f || (m >= 0.0f && here != m)) && ++bad <= 3)
        ADD_FAILURE() << "chunk " << J << " step " << s << ": folded " << value << " is not level " << level
                      << " times one integer scale (" << here << ", " << m << ")";
      m = here;
    }
    const float rebuilt = mm::fmul_rn(unit[rh], m);
    if (m >= 0.0f && std::memcmp(&rebuilt, &sc[rh], 4) != 0 && ++bad <= 3)
      ADD_FAILURE() << "chunk " << J << " step " << s << ": d * m = " << rebuilt << ", plain scale " << sc[rh];
  }
  return bad;
}

// Decodes chunks [j0, j0 + kC) of rows (a, b) of the converted weight for every lane and step
// with Fmt<kT>, and compares each value with the reference. Returns the number of mismatches
// (printing the first few).
template <DType kT, int kC>
int check_decoder(const HostWeight& h, const std::vector<uint8_t>& conv, const mm::RowLayout& rl, int64_t a, int64_t b,
                  int j0) {
  using F = Fmt<kT>;
  int bad = 0;
  const uint8_t* rows[2] = {conv.data() + a * rl.stride, conv.data() + b * rl.stride};
  const int64_t ref_rows[2] = {a, b};
  for (int c = 0; c < 4; ++c) {
    typename F::template Data<kC> d;
    std::memset(&d, 0, sizeof(d));
    mm::LoadPlain ld;
    F::template load<mm::LoadPlain, kC>(ld, rows[0], rows[1], rl, j0, c, d);
    for (int jj = 0; jj < kC; ++jj) {
      const int J = j0 + jj;
      if (J >= rl.nc) continue;
      for (int s = 0; s < 4; ++s) {
        uint32_t frag[4];
        float sc[2], off[2];
        F::template frag<kC>(d, jj, J & 3, s, frag);
        F::template scale<kC>(d, jj, J & 3, s, sc, off);
        if constexpr (requires { F::kFold; }) bad += check_folded<F, kC>(d, jj, J, s, frag, sc, off);
        for (int rh = 0; rh < 2; ++rh)
          for (int kk = 0; kk < 4; ++kk) {
            const int64_t k = int64_t{mm::kChunkK} * J + F::k_step(s) + F::k_lane(c) + kk;
            if (k >= h.n_in) continue;
            const uint32_t reg = frag[rh + 2 * (kk / 2)] >> (16 * (kk % 2));
            const float got = mm::dequant_value<F>(sc[rh], mm::h2f(reg), off[rh]);
            float want = h.dequant[static_cast<size_t>(ref_rows[rh] * h.n_in + k)];
            if (kT == DType::BF16) want = fp16_to_fp32(fp32_to_fp16(want));  // the kernels' f16 operand
            if (std::memcmp(&got, &want, 4) != 0 && ++bad <= 5)
              ADD_FAILURE() << type_name(kT) << " n_in " << h.n_in << " kC " << kC << " row " << ref_rows[rh] << " k "
                            << k << " (chunk " << J << " lane " << c << " step " << s << "): got " << got << ", want "
                            << want;
          }
      }
    }
  }
  return bad;
}

template <DType kT>
void check_layout(int64_t n_in, std::mt19937& rng) {
  SCOPED_TRACE(type_name(kT) + " n_in " + std::to_string(n_in));
  const int64_t n_rows = 5;
  const HostWeight h = make_host_weight(kT, n_in, n_rows, rng);
  const int64_t stride = weight_stride(kT, n_in);
  const mm::RowLayout rl = mm::row_layout(kT, n_in);
  ASSERT_EQ(stride, rl.stride);
  ASSERT_EQ(stride % 16, 0);
  if (mm::has_row_layout(kT)) {
    ASSERT_NE(stride, h.row_bytes);  // never mistaken for the GGUF layout
  } else {
    ASSERT_EQ(stride, h.row_bytes);
  }
  std::vector<uint8_t> conv(static_cast<size_t>(stride * n_rows), 0xEE);
  // Converted in two runs of rows (3, then 2): the layout is per row.
  to_weight_layout(kT, n_in, 3, h.gguf.data(), conv.data());
  to_weight_layout(kT, n_in, 2, h.gguf.data() + 3 * h.row_bytes, conv.data() + 3 * stride);
  int bad = 0;
  for (int j0 = 0; j0 < rl.nc; ++j0) bad += check_decoder<kT, 1>(h, conv, rl, 1, 4, j0);
  constexpr int kIter = Fmt<kT>::kIterChunks;
  for (int j0 = 0; j0 < rl.nc; j0 += kIter) bad += check_decoder<kT, kIter>(h, conv, rl, 0, 3, j0);
  EXPECT_EQ(bad, 0);
}

TEST(MatmulLayout, DecodersMatchReference) {
  std::mt19937 rng(1234);
  for (int64_t n : {256, 512, 4096}) {
    check_layout<DType::Q2_K>(n, rng);
    check_layout<DType::Q3_K>(n, rng);
    check_layout<DType::Q4_K>(n, rng);
    check_layout<DType::Q5_K>(n, rng);
    check_layout<DType::Q6_K>(n, rng);
  }
  // 32-element blocks: odd chunk counts and partial units (32, 96 -> 2 chunks, 160, 2880 -> 45)
  for (int64_t n : {32, 64, 96, 160, 224, 288, 2880, 4096}) {
    check_layout<DType::Q8_0>(n, rng);
    check_layout<DType::Q4_0>(n, rng);
    check_layout<DType::Q4_1>(n, rng);
    check_layout<DType::Q5_0>(n, rng);
    check_layout<DType::Q5_1>(n, rng);
    check_layout<DType::MXFP4>(n, rng);
  }
  for (int64_t n : {64, 192, 4096}) {
    check_layout<DType::F16>(n, rng);
    check_layout<DType::BF16>(n, rng);
  }
}

TEST(MatmulLayout, GgufRowsMatchReference) {
  std::mt19937 rng(99);
  for (DType t : all_types()) {
    const int64_t block = dtype_block_size(t);
    for (int64_t n : {int64_t{256}, int64_t{1024}, block == 1 ? int64_t{37} : int64_t{256}}) {
      const HostWeight h = make_host_weight(t, n, 2, rng);
      int bad = 0;
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t item = 0; item * 32 < n; ++item) {
          float v[32];
          const int cnt = static_cast<int>(std::min<int64_t>(32, n - 32 * item));
          mm::dequant32_gguf(t, h.gguf.data() + r * h.row_bytes, item, cnt, v);
          for (int i = 0; i < cnt; ++i) {
            const float want = h.dequant[static_cast<size_t>(r * n + 32 * item + i)];
            if (std::memcmp(&v[i], &want, 4) != 0 && ++bad <= 5)
              ADD_FAILURE() << type_name(t) << " n " << n << " row " << r << " k " << 32 * item + i << ": " << v[i]
                            << " vs " << want;
          }
        }
      EXPECT_EQ(bad, 0) << type_name(t);
    }
  }
}

// The prompt kernel's shared-memory tiles (matmul_tile.cuh): the cp.async copies and the
// dequantiser's stores each cover a tile exactly once, with element (row, col) where ldmatrix
// will look for it, and ldmatrix.x4 (emulated with the PTX semantics: lanes 8j..8j+7 give the row
// addresses of matrix j; lane t receives row t / 4, elements 2 (t % 4) and 2 (t % 4) + 1 of each)
// hands every lane its mma.m16n8k16 fragments.
template <class F>
void check_dequant_stores(std::vector<uint16_t>& tile) {
  std::fill(tile.begin(), tile.end(), uint16_t{0xFFFF});
  for (int warp = 0; warp < 8; ++warp)
    for (int lane = 0; lane < 32; ++lane)
      for (int s = 0; s < 4; ++s)
        for (int rh = 0; rh < 2; ++rh) {
          const int row = 16 * warp + 8 * rh + lane / 4, col = F::k_step(s) + F::k_lane(lane % 4);
          const int off = mm::tile_swz(row, col);
          ASSERT_EQ(off % 8, 0);
          for (int i = 0; i < 4; ++i) {
            uint16_t& slot = tile[static_cast<size_t>(off / 2 + i)];
            ASSERT_EQ(slot, 0xFFFF) << "two stores to one element";
            slot = static_cast<uint16_t>(row * 64 + col + i);
          }
        }
}

TEST(MatmulLayout, PromptTileFragments) {
  std::vector<uint16_t> wt(128 * 64), act(128 * 64, uint16_t{0xFFFF});
  for (int r = 0; r < 128; ++r)  // cp.async: 16 bytes = elements (r, 8 ch .. 8 ch + 7)
    for (int ch = 0; ch < 8; ++ch) {
      const int off = mm::tile_swz(r, 8 * ch);
      ASSERT_EQ(off % 16, 0);
      for (int i = 0; i < 8; ++i) {
        ASSERT_EQ(act[static_cast<size_t>(off / 2 + i)], 0xFFFF);
        act[static_cast<size_t>(off / 2 + i)] = static_cast<uint16_t>(r * 64 + 8 * ch + i);
      }
    }
  // Both element orders the dequantiser writes in produce the same tile.
  check_dequant_stores<Fmt<DType::F16>>(wt);
  const std::vector<uint16_t> natural = wt;
  check_dequant_stores<Fmt<DType::Q4_K>>(wt);
  ASSERT_EQ(natural, wt);
  for (size_t i = 0; i < wt.size(); ++i)
    ASSERT_EQ(wt[i], act[i]) << "element " << i;  // both (row, col) -> row * 64 + col

  auto pair = [](int row, int col) {
    return static_cast<uint32_t>(row * 64 + col) | static_cast<uint32_t>(row * 64 + col + 1) << 16;
  };
  auto ldsm_x4 = [&](const std::vector<uint16_t>& tile, const uint32_t* lane_offset, uint32_t out[32][4]) {
    for (int j = 0; j < 4; ++j)
      for (int t = 0; t < 32; ++t) {
        const uint32_t row_addr = lane_offset[8 * j + t / 4];
        EXPECT_EQ(row_addr % 16, 0u);
        const size_t e = row_addr / 2 + 2 * (t % 4);
        out[t][j] = static_cast<uint32_t>(tile[e]) | static_cast<uint32_t>(tile[e + 1]) << 16;
      }
  };
  uint32_t offsets[32], got[32][4];
  for (int kk = 0; kk < 4; ++kk) {
    for (int wm = 0; wm < 2; ++wm)
      for (int i = 0; i < 4; ++i) {
        for (int lane = 0; lane < 32; ++lane) offsets[lane] = mm::ldsm_a_offset(wm, lane, kk) + i * 16 * 128;
        ldsm_x4(wt, offsets, got);
        for (int lane = 0; lane < 32; ++lane) {
          const int row = 64 * wm + 16 * i + lane / 4, col = 16 * kk + 2 * (lane % 4);
          EXPECT_EQ(got[lane][0], pair(row, col)) << "A a0 kk " << kk << " wm " << wm << " i " << i << " lane " << lane;
          EXPECT_EQ(got[lane][1], pair(row + 8, col)) << "A a1";
          EXPECT_EQ(got[lane][2], pair(row, col + 8)) << "A a2";
          EXPECT_EQ(got[lane][3], pair(row + 8, col + 8)) << "A a3";
        }
      }
    for (int wn = 0; wn < 4; ++wn)
      for (int jj = 0; jj < 2; ++jj) {
        for (int lane = 0; lane < 32; ++lane) offsets[lane] = mm::ldsm_b_offset(wn, lane, kk) + jj * 16 * 128;
        ldsm_x4(act, offsets, got);
        for (int lane = 0; lane < 32; ++lane) {
          const int token = 32 * wn + 16 * jj + lane / 4, col = 16 * kk + 2 * (lane % 4);
          EXPECT_EQ(got[lane][0], pair(token, col))
              << "B b0 kk " << kk << " wn " << wn << " jj " << jj << " lane " << lane;
          EXPECT_EQ(got[lane][1], pair(token, col + 8)) << "B b1";
          EXPECT_EQ(got[lane][2], pair(token + 8, col)) << "B b0 of the next n-tile";
          EXPECT_EQ(got[lane][3], pair(token + 8, col + 8)) << "B b1 of the next n-tile";
        }
      }
  }
}

// ---- On the GPU ---------------------------------------------------------------------------------

bool have_gpu() { return cuda_device_count() > 0; }
#define VELOCITY_REQUIRE_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU: the CUDA matmul kernels are not exercised"

void check_cuda(cudaError_t e, const char* what) { ASSERT_EQ(e, cudaSuccess) << what << ": " << cudaGetErrorString(e); }

// Device memory for a test, freed at scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&p_, bytes == 0 ? 16 : bytes) != cudaSuccess) p_ = nullptr;
  }
  ~DeviceBuffer() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

template <class T>
void upload(const DeviceBuffer& d, const std::vector<T>& h) {
  ASSERT_EQ(cudaMemcpy(d.as<void>(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
}
template <class T>
void download(std::vector<T>& h, const DeviceBuffer& d) {
  ASSERT_EQ(cudaMemcpy(h.data(), d.as<void>(), h.size() * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
}

// A weight of n_mat matrices of n_out rows on the GPU, in the CUDA layout. Its rows come from a
// pool of at most 97 distinct quantised rows (the reference quantisers are slow), assigned by a
// scrambling map so that rows 8, 16 or 128 apart (or in the next expert) differ.
struct TestMatrix {
  DType type = DType::F32;
  int64_t n_in = 0, n_out = 0, n_mat = 1;
  HostWeight pool;
  std::vector<int32_t> map;  // global row -> pool row
  std::unique_ptr<DeviceBuffer> dev;
  Weight w;
  const float* dequant(int64_t global_row) const {
    return pool.dequant.data() + map[static_cast<size_t>(global_row)] * n_in;
  }
  const uint8_t* gguf(int64_t global_row) const {
    return pool.gguf.data() + map[static_cast<size_t>(global_row)] * pool.row_bytes;
  }
};

std::unique_ptr<TestMatrix> make_matrix(DType type, int64_t n_in, int64_t n_out, int64_t n_mat, std::mt19937& rng) {
  auto m = std::make_unique<TestMatrix>();
  m->type = type, m->n_in = n_in, m->n_out = n_out, m->n_mat = n_mat;
  const int64_t n_rows = n_out * n_mat, n_pool = std::min<int64_t>(n_rows, 97);
  m->pool = make_host_weight(type, n_in, n_pool, rng);
  m->map.resize(static_cast<size_t>(n_rows));
  const int64_t salt = rng() % 97;
  for (int64_t r = 0; r < n_rows; ++r)
    m->map[static_cast<size_t>(r)] = static_cast<int32_t>(n_rows <= 97 ? r : (r * 37 + salt) % 97);
  std::vector<uint8_t> gguf(static_cast<size_t>(n_rows * m->pool.row_bytes));
  for (int64_t r = 0; r < n_rows; ++r)
    std::memcpy(gguf.data() + r * m->pool.row_bytes, m->gguf(r), static_cast<size_t>(m->pool.row_bytes));
  const int64_t stride = weight_stride(type, n_in);
  std::vector<uint8_t> conv(static_cast<size_t>(n_rows * stride));
  // in two runs of rows, as an uploader converting through a staging buffer would
  const int64_t half = n_rows / 2;
  to_weight_layout(type, n_in, half, gguf.data(), conv.data());
  to_weight_layout(type, n_in, n_rows - half, gguf.data() + half * m->pool.row_bytes, conv.data() + half * stride);
  m->dev = std::make_unique<DeviceBuffer>(conv.size());
  upload(*m->dev, conv);
  m->w.name = "test.weight";
  m->w.type = type;
  m->w.n_in = n_in, m->w.n_out = n_out, m->w.n_mat = n_mat;
  m->w.row_bytes = m->pool.row_bytes;
  m->w.stride = stride;
  m->w.layout = WeightLayout::Cuda;
  m->w.device = Device::cuda(0);
  m->w.data = m->dev->as<uint8_t>();
  return m;
}

// Activations [n_rows][ldx = n_in + 3]: normal values, each row scaled by its own power of two,
// with outliers of +-3e4; the padding columns are NaN (never read).
std::vector<float> make_x(int64_t n_rows, int64_t n_in, std::mt19937& rng) {
  const int64_t ldx = n_in + 3;
  std::vector<float> x(static_cast<size_t>(n_rows * ldx), std::numeric_limits<float>::quiet_NaN());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t t = 0; t < n_rows; ++t) {
    const float s = std::ldexp(1.0f, static_cast<int>(rng() % 9) - 4);
    for (int64_t i = 0; i < n_in; ++i) x[static_cast<size_t>(t * ldx + i)] = normal(rng) * s;
    for (int o = 0; o < 3; ++o) x[static_cast<size_t>(t * ldx + rng() % n_in)] = (rng() & 1 ? 3e4f : -3e4f);
  }
  return x;
}

// Rows whose outputs are compared with the reference: the first and last 24, tile and block
// boundaries, and random ones (all rows when there are few).
std::vector<int64_t> sample_rows(int64_t n_out, std::mt19937& rng) {
  std::vector<int64_t> rows;
  if (n_out <= 96) {
    for (int64_t r = 0; r < n_out; ++r) rows.push_back(r);
    return rows;
  }
  for (int64_t r = 0; r < 24; ++r) rows.push_back(r), rows.push_back(n_out - 1 - r);
  for (int64_t r : {int64_t{127}, int64_t{128}, int64_t{135}, int64_t{136}}) rows.push_back(std::min(r, n_out - 1));
  for (int i = 0; i < 24; ++i) rows.push_back(static_cast<int64_t>(rng() % n_out));
  return rows;
}

// |y - ref| bound of the header for one output (decode: activations rounded to f16; prompt:
// weights too; F32 weights: accumulation only).
double tolerance(DType type, bool mma, bool prompt, double s1, double sum_x, double sum_w, double amax_x) {
  if (!mma) return 3e-5 * s1 + 1e-30;
  const double rel = (prompt ? 2.0 : 1.0) * std::ldexp(1.0, -11) + 3e-5;
  const double weight_subnormal = (prompt || type == DType::BF16) ? std::ldexp(1.0, -25) * sum_x : 0.0;
  return rel * s1 + weight_subnormal + std::ldexp(1.0, -37) * amax_x * sum_w + 1e-30;
}

// The bound of a decode product on int8 activations: each x within d / 2 of d q, d = amax / 127
// of its 256-element block (the CPU backend's Q8_K rounding), so |error| <= sum over blocks of
// d / 2 * sum |w| there, plus f32 rounding of the scales and the final sums.
double int8_tolerance(int64_t n_in, const float* x, const float* w, double s1, double sum_w, double amax_x) {
  double q = 0;
  for (int64_t b = 0; b < n_in; b += 256) {
    double amax_b = 0, sum_wb = 0;
    for (int64_t i = b; i < std::min<int64_t>(n_in, b + 256); ++i) {
      amax_b = std::max(amax_b, static_cast<double>(std::fabs(x[i])));
      sum_wb += std::fabs(w[i]);
    }
    q += amax_b / 254.0 * (1.0 + 1e-6) * sum_wb;
  }
  return q + 3e-5 * s1 + std::ldexp(1.0, -37) * amax_x * sum_w + 1e-30;
}

bool uses_mma(DType type, int64_t n_in) {
  if (type == DType::F32) return false;
  if (type == DType::F16 || type == DType::BF16) return n_in % 64 == 0;
  return true;
}

// Compares y (rows y_row(t) for t < n) with sum_i W[row][i] x[x_row(t)][i] in double on the
// sampled rows; every output of every token must have been written (no NaN from the poison).
template <class XRow, class YRow, class WRow, class IsPrompt>
int check_outputs(const char* what, DType type, int64_t n_in, int64_t n_out, const std::vector<float>& x, int64_t ldx,
                  const std::vector<float>& y, int64_t ldy, int64_t n, XRow x_row, YRow y_row, WRow w_row,
                  IsPrompt is_prompt, const std::vector<int64_t>& rows) {
  int bad = 0;
  const bool mma = uses_mma(type, n_in);
  for (int64_t t = 0; t < n && bad < 5; ++t) {
    const float* xt = x.data() + x_row(t) * ldx;
    const float* yt = y.data() + y_row(t) * ldy;
    for (int64_t r = 0; r < n_out; ++r)
      if (!std::isfinite(yt[r]) && ++bad <= 5)
        ADD_FAILURE() << what << ": token " << t << " row " << r << " = " << yt[r];
    double sum_x = 0, amax = 0;
    for (int64_t i = 0; i < n_in; ++i)
      sum_x += std::fabs(xt[i]), amax = std::max(amax, static_cast<double>(std::fabs(xt[i])));
    for (int64_t r : rows) {
      const float* wr = w_row(t, r);
      double ref = 0, s1 = 0, sum_w = 0;
      for (int64_t i = 0; i < n_in; ++i) {
        ref += static_cast<double>(wr[i]) * xt[i];
        s1 += std::fabs(static_cast<double>(wr[i]) * xt[i]);
        sum_w += std::fabs(wr[i]);
      }
      double tol = tolerance(type, mma, is_prompt(t), s1, sum_x, sum_w, amax);
      if (mma && !is_prompt(t) && velocity::engine::cuda::matmul_decode_int8(type))
        tol = int8_tolerance(n_in, xt, wr, s1, sum_w, amax);
      if (!(std::fabs(yt[r] - ref) <= tol) && ++bad <= 5)
        ADD_FAILURE() << what << ": token " << t << (is_prompt(t) ? " (prompt)" : " (decode)") << " row " << r
                      << ": got " << yt[r] << ", want " << ref << " (|diff| " << std::fabs(yt[r] - ref) << " > tol "
                      << tol << ")";
    }
  }
  return bad;
}

struct GpuContext {
  cudaStream_t stream = nullptr;
  // A blocking stream: ordered after the legacy-stream cudaMemcpy/cudaMemset that upload and
  // poison the buffers (a non-blocking stream raced them: poisoned outputs, "not bitwise").
  GpuContext() { cudaStreamCreate(&stream); }
  ~GpuContext() {
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

// Runs matmul on x (n_tokens rows) and returns y [n_tokens][ldy = n_out + 5], poisoned with NaN
// before the run.
std::vector<float> run_matmul(const GpuContext& ctx, const TestMatrix& m, MatmulWorkspace& ws,
                              const std::vector<float>& x, int64_t n_tokens, int64_t n_decode) {
  const int64_t ldx = m.n_in + 3, ldy = m.n_out + 5;
  DeviceBuffer dx(x.size() * sizeof(float)), dy(static_cast<size_t>(n_tokens * ldy) * sizeof(float));
  upload(dx, x);
  check_cuda(cudaMemset(dy.as<void>(), 0xFF, dy.bytes()), "poison y");
  matmul(m.w, dx.as<float>(), ldx, n_tokens, n_decode, dy.as<float>(), ldy, ws, ctx.stream);
  check_cuda(cudaStreamSynchronize(ctx.stream), "matmul");
  std::vector<float> y(static_cast<size_t>(n_tokens * ldy));
  download(y, dy);
  return y;
}

struct Shape {
  int64_t n_out, n_in;
};

std::vector<Shape> shapes_for(DType t) {
  const int64_t block = dtype_block_size(t);
  const int64_t smallest = block == 1 ? 1 : block;
  std::vector<Shape> s = {
      {1, smallest}, {17, 3 * std::max<int64_t>(block, 32)}, {1000, 4096}, {4096 + 16, 4096}, {4096, 14336}};
  if (block == 1) s.push_back({33, 64}), s.push_back({65, 7});
  if (t == DType::Q8_0 || t == DType::MXFP4 || t == DType::Q5_0) s.push_back({2880, 2880});
  return s;
}

TEST(Matmul, EveryTypeAndShapeMatchesReference) {
  VELOCITY_REQUIRE_GPU();
  GpuContext ctx;
  std::mt19937 rng(7);
  auto ws = make_matmul_workspace(130, 14336);
  const int64_t token_counts[] = {1, 2, 7, 8, 9, 33, 130};
  for (DType t : all_types()) {
    for (Shape sh : shapes_for(t)) {
      auto m = make_matrix(t, sh.n_in, sh.n_out, 1, rng);
      const std::vector<int64_t> rows = sample_rows(sh.n_out, rng);
      for (int64_t n : token_counts) {
        const bool big = sh.n_out * sh.n_in > 4000000;
        if (big && n != 1 && n != 9 && n != 130) continue;  // keep the host reference quick
        for (int64_t n_decode : {n, int64_t{0}, n / 2}) {
          if (n_decode == n / 2 && (n == 1 || n / 2 == 0)) continue;
          const std::vector<float> x = make_x(n, sh.n_in, rng);
          const std::vector<float> y = run_matmul(ctx, *m, *ws, x, n, n_decode);
          const std::string what = type_name(t) + " " + std::to_string(sh.n_out) + "x" + std::to_string(sh.n_in) +
                                   " tokens " + std::to_string(n) + " decode " + std::to_string(n_decode);
          const int bad = check_outputs(
              what.c_str(), t, sh.n_in, sh.n_out, x, sh.n_in + 3, y, sh.n_out + 5, n, [](int64_t i) { return i; },
              [](int64_t i) { return i; }, [&](int64_t, int64_t r) { return m->dequant(r); },
              [&](int64_t i) { return i >= n_decode; }, rows);
          if (bad > 0) return;  // one failing configuration is enough to read
        }
      }
    }
  }
}

// A token's outputs do not depend on the other tokens of its call: bitwise, for decode tokens (1
// vs 8 vs 9 vs 64 decode tokens, the last two on the kernel variant with 8 token tiles) and for
// prompt tokens (17 vs 130 prompt tokens, at another position of another tile).
TEST(Matmul, TokenResultsDoNotDependOnTheBatch) {
  VELOCITY_REQUIRE_GPU();
  GpuContext ctx;
  std::mt19937 rng(11);
  auto ws = make_matmul_workspace(160, 4096);
  for (DType t : all_types()) {
    for (Shape sh : {Shape{1000, 4096}, Shape{4096, 1024}}) {
      auto m = make_matrix(t, sh.n_in, sh.n_out, 1, rng);
      const int64_t ldx = sh.n_in + 3, ldy = sh.n_out + 5;
      const std::vector<float> probe = make_x(1, sh.n_in, rng);
      // Decode: the probe token alone, then at position `at` among n decode tokens.
      const std::vector<float> alone = run_matmul(ctx, *m, *ws, probe, 1, 1);
      for (auto [n, at] : {std::pair<int64_t, int64_t>{8, 3}, {9, 8}, {64, 37}}) {
        std::vector<float> x = make_x(n + 2, sh.n_in, rng);  // 2 prompt tokens after the decode tokens
        std::copy(probe.begin(), probe.end(), x.begin() + at * ldx);
        const std::vector<float> y = run_matmul(ctx, *m, *ws, x, n + 2, n);
        EXPECT_EQ(0, std::memcmp(alone.data(), y.data() + at * ldy, static_cast<size_t>(sh.n_out) * sizeof(float)))
            << type_name(t) << " " << sh.n_out << "x" << sh.n_in << ": decode token alone vs at " << at << " of " << n;
      }
      // Prompt: at position 5 of 17 prompt tokens (after 3 decode tokens) and 100 of 130.
      std::vector<float> x17 = make_x(20, sh.n_in, rng), x130 = make_x(130, sh.n_in, rng);
      std::copy(probe.begin(), probe.end(), x17.begin() + 8 * ldx);
      std::copy(probe.begin(), probe.end(), x130.begin() + 100 * ldx);
      const std::vector<float> y17 = run_matmul(ctx, *m, *ws, x17, 20, 3);
      const std::vector<float> y130 = run_matmul(ctx, *m, *ws, x130, 130, 0);
      EXPECT_EQ(
          0, std::memcmp(y17.data() + 8 * ldy, y130.data() + 100 * ldy, static_cast<size_t>(sh.n_out) * sizeof(float)))
          << type_name(t) << " " << sh.n_out << "x" << sh.n_in << ": prompt token in a call of 17 vs 130";
    }
  }
}

// Expert products against the reference of each (token, slot)'s expert, on qwen3-30b-a3b and
// gpt-oss shaped experts, for gate/up (x per token) and down (x per slot) products.
TEST(MatmulIds, ExpertProductsMatchReference) {
  VELOCITY_REQUIRE_GPU();
  GpuContext ctx;
  std::mt19937 rng(13);
  struct Case {
    DType type;
    int64_t n_expert, k, n_in, n_out;
  };
  const Case cases[] = {{DType::Q4_K, 128, 8, 2048, 768},  {DType::Q6_K, 128, 8, 768, 2048},
                        {DType::MXFP4, 32, 4, 2880, 2880}, {DType::Q8_0, 32, 4, 2880, 2880},
                        {DType::F32, 16, 2, 256, 96},      {DType::Q5_0, 8, 2, 96, 40}};
  for (const Case& cs : cases) {
    auto m = make_matrix(cs.type, cs.n_in, cs.n_out, cs.n_expert, rng);
    auto ws = make_matmul_workspace(40 * cs.k, cs.n_in);
    for (auto [n, n_decode] : {std::pair<int64_t, int64_t>{1, 1}, {5, 5}, {33, 0}, {37, 4}}) {
      for (bool per_slot : {false, true}) {
        const int64_t pairs = n * cs.k, x_rows = per_slot ? pairs : n;
        std::vector<int32_t> ids(static_cast<size_t>(pairs));
        for (int64_t t = 0; t < n; ++t) {  // k distinct experts per token
          std::vector<int32_t> all(static_cast<size_t>(cs.n_expert));
          for (int32_t e = 0; e < cs.n_expert; ++e) all[static_cast<size_t>(e)] = e;
          std::shuffle(all.begin(), all.end(), rng);
          for (int64_t j = 0; j < cs.k; ++j) ids[static_cast<size_t>(t * cs.k + j)] = all[static_cast<size_t>(j)];
        }
        const std::vector<float> x = make_x(x_rows, cs.n_in, rng);
        const int64_t ldx = cs.n_in + 3, ldy = cs.n_out + 5;
        DeviceBuffer dx(x.size() * sizeof(float)), dy(static_cast<size_t>(pairs * ldy) * sizeof(float)),
            dids(ids.size() * sizeof(int32_t));
        upload(dx, x);
        upload(dids, ids);
        check_cuda(cudaMemset(dy.as<void>(), 0xFF, dy.bytes()), "poison y");
        matmul_ids(m->w, dids.as<int32_t>(), cs.k, dx.as<float>(), ldx, per_slot, n, n_decode, dy.as<float>(), ldy, *ws,
                   ctx.stream);
        check_cuda(cudaStreamSynchronize(ctx.stream), "matmul_ids");
        std::vector<float> y(static_cast<size_t>(pairs * ldy));
        download(y, dy);
        const std::string what = type_name(cs.type) + " E" + std::to_string(cs.n_expert) + " k" + std::to_string(cs.k) +
                                 " " + std::to_string(cs.n_out) + "x" + std::to_string(cs.n_in) + " tokens " +
                                 std::to_string(n) + " decode " + std::to_string(n_decode) +
                                 (per_slot ? " x per slot" : " x per token");
        const std::vector<int64_t> rows = sample_rows(cs.n_out, rng);
        const int64_t k = cs.k;
        const int bad = check_outputs(
            what.c_str(), cs.type, cs.n_in, cs.n_out, x, ldx, y, ldy, pairs,
            [&](int64_t p) { return per_slot ? p : p / k; }, [](int64_t p) { return p; },
            [&](int64_t p, int64_t r) { return m->dequant(ids[static_cast<size_t>(p)] * cs.n_out + r); },
            [&](int64_t p) { return p / k >= n_decode; }, rows);
        if (bad > 0) return;
      }
    }
  }
}

// get_rows: bitwise the reference dequantisation, for every type, from the CUDA layout and (for
// the types it reads in place) from GGUF rows, including rows of the second expert.
TEST(MatmulGetRows, EveryTypeBitwise) {
  VELOCITY_REQUIRE_GPU();
  GpuContext ctx;
  std::mt19937 rng(17);
  for (DType t : all_types()) {
    for (int64_t n_in :
         {dtype_block_size(t) == 1 ? int64_t{37} : dtype_block_size(t), int64_t{2880 / 32 * 32}, int64_t{4096}}) {
      if (n_in % dtype_block_size(t) != 0) continue;
      auto m = make_matrix(t, n_in, 45, 2, rng);
      const std::vector<int32_t> ids = {0, 1, 17, 44, 45, 89, 3, 60};
      DeviceBuffer dids(ids.size() * sizeof(int32_t));
      upload(dids, ids);
      const int64_t ldo = n_in + 1;
      DeviceBuffer dout(ids.size() * static_cast<size_t>(ldo) * sizeof(float));
      check_cuda(cudaMemset(dout.as<void>(), 0xFF, dout.bytes()), "poison");
      get_rows(m->w, dids.as<int32_t>(), static_cast<int64_t>(ids.size()), dout.as<float>(), ldo, ctx.stream);
      check_cuda(cudaStreamSynchronize(ctx.stream), "get_rows");
      std::vector<float> out(ids.size() * static_cast<size_t>(ldo));
      download(out, dout);
      for (size_t i = 0; i < ids.size(); ++i)
        EXPECT_EQ(0, std::memcmp(out.data() + i * ldo, m->dequant(ids[i]), static_cast<size_t>(n_in) * sizeof(float)))
            << type_name(t) << " n_in " << n_in << " row " << ids[i];
      // The same rows uploaded in the GGUF layout.
      std::vector<uint8_t> gguf(static_cast<size_t>(90 * m->pool.row_bytes));
      for (int64_t r = 0; r < 90; ++r)
        std::memcpy(gguf.data() + r * m->pool.row_bytes, m->gguf(r), static_cast<size_t>(m->pool.row_bytes));
      DeviceBuffer dg(gguf.size());
      upload(dg, gguf);
      Weight wg = m->w;
      wg.layout = WeightLayout::Gguf;
      wg.stride = m->pool.row_bytes;
      wg.data = dg.as<uint8_t>();
      check_cuda(cudaMemset(dout.as<void>(), 0xFF, dout.bytes()), "poison");
      get_rows(wg, dids.as<int32_t>(), static_cast<int64_t>(ids.size()), dout.as<float>(), ldo, ctx.stream);
      check_cuda(cudaStreamSynchronize(ctx.stream), "get_rows (GGUF rows)");
      download(out, dout);
      for (size_t i = 0; i < ids.size(); ++i)
        EXPECT_EQ(0, std::memcmp(out.data() + i * ldo, m->dequant(ids[i]), static_cast<size_t>(n_in) * sizeof(float)))
            << type_name(t) << " n_in " << n_in << " row " << ids[i] << " (GGUF rows)";
    }
  }
}

// matmul_workspace_bytes tells what make_matmul_workspace takes from the device (up to the
// allocator's 2 MiB granularity per buffer).
TEST(MatmulWorkspace, BytesMatchTheAllocation) {
  VELOCITY_REQUIRE_GPU();
  for (auto [rows, n_in] : {std::pair<int64_t, int64_t>{512, 4096}, {4096, 2048}, {1, 1}}) {
    const uint64_t bytes = matmul_workspace_bytes(rows, n_in);
    size_t free_before = 0, free_after = 0, total = 0;
    check_cuda(cudaMemGetInfo(&free_before, &total), "cudaMemGetInfo");
    auto ws = make_matmul_workspace(rows, n_in);
    check_cuda(cudaMemGetInfo(&free_after, &total), "cudaMemGetInfo");
    const double taken = static_cast<double>(free_before) - static_cast<double>(free_after);
    EXPECT_GE(taken + (2 << 20), static_cast<double>(bytes)) << rows << " x " << n_in;
    EXPECT_LE(taken, static_cast<double>(bytes) + 12.0 * (2 << 20)) << rows << " x " << n_in;
  }
}

// Products sharing one input (x converted once for all: Q, K, V) equal the same products run
// one by one, bitwise, with mixed weight types (an F32 one on the generic path among them), for
// decode-only, prompt-only and mixed calls.
TEST(Matmul, SharedInputEqualsSeparateCalls) {
  VELOCITY_REQUIRE_GPU();
  GpuContext ctx;
  std::mt19937 rng(23);
  const int64_t n_in = 1024;
  auto ws = make_matmul_workspace(40, n_in);
  auto q = make_matrix(DType::Q4_K, n_in, 512, 1, rng), k = make_matrix(DType::Q6_K, n_in, 128, 1, rng),
       v = make_matrix(DType::F32, n_in, 130, 1, rng);
  const TestMatrix* ms[] = {q.get(), k.get(), v.get()};
  for (auto [n, n_decode] : {std::pair<int64_t, int64_t>{1, 1}, {9, 9}, {33, 0}, {37, 5}}) {
    const std::vector<float> x = make_x(n, n_in, rng);
    const int64_t ldx = n_in + 3;
    DeviceBuffer dx(x.size() * sizeof(float));
    upload(dx, x);
    std::vector<std::unique_ptr<DeviceBuffer>> ys;
    MatmulOut outs[3];
    for (int i = 0; i < 3; ++i) {
      const int64_t ldy = ms[i]->n_out + 5;
      ys.push_back(std::make_unique<DeviceBuffer>(static_cast<size_t>(n * ldy) * sizeof(float)));
      check_cuda(cudaMemset(ys.back()->as<void>(), 0xFF, ys.back()->bytes()), "poison");
      outs[i] = {&ms[i]->w, ys.back()->as<float>(), ldy};
    }
    matmul(std::span<const MatmulOut>(outs, 3), dx.as<float>(), ldx, n, n_decode, *ws, ctx.stream);
    check_cuda(cudaStreamSynchronize(ctx.stream), "shared matmul");
    for (int i = 0; i < 3; ++i) {
      std::vector<float> together(static_cast<size_t>(n * outs[i].ldy));
      download(together, *ys[static_cast<size_t>(i)]);
      const std::vector<float> alone = run_matmul(ctx, *ms[i], *ws, x, n, n_decode);
      for (int64_t t = 0; t < n; ++t)
        EXPECT_EQ(0, std::memcmp(together.data() + t * outs[i].ldy, alone.data() + t * outs[i].ldy,
                                 static_cast<size_t>(ms[i]->n_out) * sizeof(float)))
            << type_name(ms[i]->type) << " token " << t << " of " << n << " (decode " << n_decode << ")";
    }
  }
}

// The decode kernel's launch-size overrides (kernel lab) keep results within tolerance.
TEST(Matmul, DecodeTuningOverridesStayCorrect) {
  VELOCITY_REQUIRE_GPU();
  GpuContext ctx;
  std::mt19937 rng(19);
  auto ws = make_matmul_workspace(8, 4096);
  for (DType t : {DType::Q4_K, DType::Q8_0, DType::MXFP4}) {
    auto m = make_matrix(t, 4096, 1000, 1, rng);
    const std::vector<int64_t> rows = sample_rows(1000, rng);
    for (int wr : {1, 2, 4, 8})
      for (int splits : {1, 3, 16}) {
        set_matmul_decode_tuning(*ws, mm::DecodeTuning{wr, splits});
        const std::vector<float> x = make_x(8, 4096, rng);
        const std::vector<float> y = run_matmul(ctx, *m, *ws, x, 8, 8);
        const std::string what =
            type_name(t) + " rows_warps " + std::to_string(wr) + " splits " + std::to_string(splits);
        EXPECT_EQ(0, check_outputs(
                         what.c_str(), t, 4096, 1000, x, 4099, y, 1005, 8, [](int64_t i) { return i; },
                         [](int64_t i) { return i; }, [&](int64_t, int64_t r) { return m->dequant(r); },
                         [](int64_t) { return false; }, rows));
      }
    set_matmul_decode_tuning(*ws, mm::DecodeTuning{});
  }
}

}  // namespace
}  // namespace velocity::engine::cuda
