// The CUDA matrix products (engine/cuda/kernels.h), timed through the public functions, as a
// model calls them (the activation converter and the product together):
//   matmul_decode   n_decode = 1, 2, 4, 8 tokens on the shapes of an 8B model and its output head:
//                   GB/s (weight bytes + activation bytes) against the copy ceiling
//   matmul_prompt   512 tokens: TFLOP/s (2 M N K) against 990 TFLOP/s (dense BF16, H100 SXM)
//   matmul_ids      MoE experts (qwen3-30b-a3b and gpt-oss shapes), decode and prompt
//   matmul_sweep    the decode kernel's launch sizes (rows per block, K splits) on a few shapes
// Weights are random rows of the type, converted to the CUDA layout; weights smaller than
// 256 MiB get several copies (up to 64), and the timed calls rotate through them so that no call
// finds its weight in the 50 MiB L2. matmul_decode replays its calls as a CUDA graph (one call
// per copy), as a model's decode step does; the other sections launch from the host.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/quant.h"
#include "engine/cuda/kernels.h"
#include "engine/cuda/matmul_tuning.cuh"
#include "lab_util.h"

namespace {

using velocity::DType;
using velocity::dtype_name;
using velocity::dtype_row_bytes;
using velocity::engine::Weight;
using velocity::engine::WeightLayout;
namespace cu = velocity::engine::cuda;
namespace lab = velocity::lab;

constexpr double kTensorPeakTflops = 990.0;  // dense BF16/F16, H100 SXM
constexpr int64_t kRotationBytes = int64_t{256} << 20;

std::string type_str(DType t) { return std::string(dtype_name(t)); }

// A weight (n_mat matrices of n_out rows) on the GPU in the CUDA layout, in several copies.
struct LabWeight {
  DType type = DType::F32;
  int64_t n_in = 0, n_out = 0, n_mat = 1, stride = 0, row_bytes = 0;
  std::vector<uint8_t*> copies;
  int next = 0;
  // the bytes a product over every row reads (GGUF row bytes: the layout's padding is not read)
  int64_t bytes() const { return n_mat * n_out * row_bytes; }
  Weight weight(int i) const {
    Weight w;
    w.name = "lab.weight";
    w.type = type;
    w.n_in = n_in, w.n_out = n_out, w.n_mat = n_mat;
    w.row_bytes = row_bytes;
    w.stride = stride;
    w.layout = WeightLayout::Cuda;
    w.data = copies[static_cast<size_t>(i) % copies.size()];
    return w;
  }
  Weight rotate() { return weight(next++); }
  ~LabWeight() {
    for (uint8_t* p : copies) cudaFree(p);
  }
};

std::unique_ptr<LabWeight> make_weight(DType type, int64_t n_in, int64_t n_out, int64_t n_mat = 1) {
  auto lw = std::make_unique<LabWeight>();
  lw->type = type, lw->n_in = n_in, lw->n_out = n_out, lw->n_mat = n_mat;
  lw->row_bytes = dtype_row_bytes(type, n_in);
  lw->stride = cu::weight_stride(type, n_in);
  // 16 random rows, converted once, repeated (the layout is per row)
  constexpr int kPool = 16;
  std::mt19937 rng(static_cast<uint32_t>(n_in * 31 + n_out));
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> row(static_cast<size_t>(n_in));
  std::vector<uint8_t> gguf(static_cast<size_t>(kPool * lw->row_bytes)), pool(static_cast<size_t>(kPool * lw->stride));
  for (int r = 0; r < kPool; ++r) {
    for (float& v : row) v = normal(rng);
    velocity::quantize_row(type, row.data(), gguf.data() + r * lw->row_bytes, n_in);
  }
  cu::to_weight_layout(type, n_in, kPool, gguf.data(), pool.data());
  const int64_t n_rows = n_out * n_mat, total = n_rows * lw->stride;
  std::vector<uint8_t> host(static_cast<size_t>(total));
  for (int64_t r = 0; r < n_rows; ++r)
    std::memcpy(host.data() + r * lw->stride, pool.data() + (r % kPool) * lw->stride, static_cast<size_t>(lw->stride));
  const int n_copies = static_cast<int>(std::min<int64_t>(64, std::max<int64_t>(1, kRotationBytes / total + 1)));
  for (int i = 0; i < n_copies; ++i) {
    uint8_t* d = nullptr;
    lab::check(cudaMalloc(&d, static_cast<size_t>(total)), "cudaMalloc (weight)");
    lab::check(cudaMemcpy(d, host.data(), static_cast<size_t>(total), cudaMemcpyHostToDevice), "weight upload");
    lw->copies.push_back(d);
  }
  return lw;
}

// Activations and outputs big enough for every case.
struct Buffers {
  float* x = nullptr;
  float* y = nullptr;
  int32_t* ids = nullptr;
  Buffers(int64_t x_floats, int64_t y_floats, int64_t n_ids) {
    lab::check(cudaMalloc(&x, static_cast<size_t>(x_floats) * 4), "cudaMalloc (x)");
    lab::check(cudaMalloc(&y, static_cast<size_t>(y_floats) * 4), "cudaMalloc (y)");
    lab::check(cudaMalloc(&ids, static_cast<size_t>(n_ids) * 4), "cudaMalloc (ids)");
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> h(static_cast<size_t>(x_floats));
    for (float& v : h) v = normal(rng);
    lab::check(cudaMemcpy(x, h.data(), h.size() * 4, cudaMemcpyHostToDevice), "x upload");
  }
  ~Buffers() {
    cudaFree(x);
    cudaFree(y);
    cudaFree(ids);
  }
};

const std::vector<DType>& lab_types() {
  static const std::vector<DType> t = {DType::Q4_K,  DType::Q6_K, DType::Q8_0, DType::F16,  DType::BF16,
                                       DType::MXFP4, DType::Q5_K, DType::Q4_0, DType::Q2_K, DType::Q3_K};
  return t;
}

struct Shape {
  int64_t n_in, n_out;
};

// One decode case: n tokens (all decode) through `lw`, one call per copy (at least 10) replayed
// as a graph. Returns microseconds per call.
double time_decode(LabWeight& lw, cu::MatmulWorkspace& ws, const Buffers& b, int64_t n) {
  const int calls = std::max<int>(10, static_cast<int>(lw.copies.size()));
  return lab::time_graph_us([&] { cu::matmul(lw.rotate(), b.x, lw.n_in, n, n, b.y, lw.n_out, ws, lab::stream()); },
                            30, calls);
}

std::string shape_str(const Shape& s) { return std::to_string(s.n_in) + "->" + std::to_string(s.n_out); }

}  // namespace

VELOCITY_LAB_SECTION(matmul_decode, "decode-path products (n_decode = 1, 2, 4, 8): GB/s vs the copy ceiling") {
  const double ceiling = lab::copy_ceiling_gbps();
  const Shape shapes[] = {{4096, 4096}, {4096, 1024}, {4096, 14336}, {14336, 4096}, {4096, 128256}};
  auto ws = cu::make_matmul_workspace(512, 14336);
  Buffers b(8 * 14336, 8 * 128256, 1);
  for (DType t : lab_types())
    for (const Shape& s : shapes) {
      bool any = false;
      for (int64_t n : {1, 2, 4, 8}) any = any || lab::wanted(type_str(t) + " " + shape_str(s) + " n=" + std::to_string(n));
      if (!any) continue;
      auto lw = make_weight(t, s.n_in, s.n_out);
      double us1 = 0;
      for (int64_t n : {1, 2, 4, 8}) {
        if (!lab::wanted(type_str(t) + " " + shape_str(s) + " n=" + std::to_string(n))) continue;
        const double us = time_decode(*lw, *ws, b, n);
        if (n == 1) us1 = us;
        const double bytes = static_cast<double>(lw->bytes()) + static_cast<double>(n * (s.n_in + s.n_out) * 4);
        const double gbps = bytes / (us * 1e3);
        std::string name = type_str(t) + " " + shape_str(s) + " n=" + std::to_string(n);
        if (n > 1 && us1 > 0) name += " (x" + std::to_string(us / us1).substr(0, 4) + " of n=1)";
        lab::report("matmul_decode", name, us, gbps, "GB/s", 100.0 * gbps / ceiling, "copy");
      }
    }
}

VELOCITY_LAB_SECTION(matmul_prompt, "prompt-path products, 512 tokens: TFLOP/s vs 990 (dense BF16 peak, H100 SXM)") {
  const Shape shapes[] = {{4096, 14336}, {14336, 4096}, {4096, 4096}};
  constexpr int64_t kTokens = 512;
  auto ws = cu::make_matmul_workspace(kTokens, 14336);
  Buffers b(kTokens * 14336, kTokens * 14336, 1);
  for (DType t : lab_types())
    for (const Shape& s : shapes) {
      auto lw = make_weight(t, s.n_in, s.n_out);
      const double us = lab::time_us(
          [&] { cu::matmul(lw->rotate(), b.x, s.n_in, kTokens, 0, b.y, s.n_out, *ws, lab::stream()); }, 20, 3, 3);
      const double tflops = 2.0 * kTokens * static_cast<double>(s.n_in) * static_cast<double>(s.n_out) / (us * 1e6);
      lab::report("matmul_prompt", type_str(t) + " " + shape_str(s) + " M=512", us, tflops, "TFLOP/s",
                  100.0 * tflops / kTensorPeakTflops, "990");
    }
}

VELOCITY_LAB_SECTION(matmul_ids, "MoE expert products (qwen3-30b-a3b, gpt-oss shapes): decode GB/s, prompt TFLOP/s") {
  const double ceiling = lab::copy_ceiling_gbps();
  struct Case {
    DType type;
    int64_t n_expert, k, n_in, n_out;
    const char* what;
  };
  const Case cases[] = {{DType::Q4_K, 128, 8, 2048, 768, "qwen3-30b-a3b gate/up"},
                        {DType::Q6_K, 128, 8, 768, 2048, "qwen3-30b-a3b down"},
                        {DType::Q8_0, 128, 8, 2048, 768, "qwen3-30b-a3b gate/up"},
                        {DType::MXFP4, 32, 4, 2880, 2880, "gpt-oss-20b experts"}};
  Buffers b(512 * 8 * 2880, 512 * 8 * 2880, 512 * 8);
  std::mt19937 rng(3);
  for (const Case& c : cases) {
    auto lw = make_weight(c.type, c.n_in, c.n_out, c.n_expert);
    auto ws = cu::make_matmul_workspace(512 * c.k, c.n_in);
    for (int64_t n : {int64_t{1}, int64_t{4}, int64_t{512}}) {
      // k distinct experts per token
      std::vector<int32_t> ids(static_cast<size_t>(n * c.k));
      for (int64_t t = 0; t < n; ++t) {
        std::vector<int32_t> all(static_cast<size_t>(c.n_expert));
        for (int32_t e = 0; e < c.n_expert; ++e) all[static_cast<size_t>(e)] = e;
        std::shuffle(all.begin(), all.end(), rng);
        std::copy(all.begin(), all.begin() + c.k, ids.begin() + t * c.k);
      }
      lab::check(cudaMemcpy(b.ids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice), "ids upload");
      const bool decode = n <= 8;
      auto call = [&] {
        cu::matmul_ids(lw->rotate(), b.ids, c.k, b.x, c.n_in, false, n, decode ? n : 0, b.y, c.n_out, *ws,
                       lab::stream());
      };
      const double us = decode ? lab::time_graph_us(call, 30, std::max<int>(10, static_cast<int>(lw->copies.size())))
                               : lab::time_us(call);
      const std::string name = type_str(c.type) + " E" + std::to_string(c.n_expert) + " k" + std::to_string(c.k) + " " +
                               std::to_string(c.n_in) + "->" + std::to_string(c.n_out) + " n=" + std::to_string(n);
      if (decode) {
        // bytes of the (token, slot) pairs' expert matrices: each pair reads its expert once
        const double bytes = static_cast<double>(n * c.k * c.n_out * lw->row_bytes);
        const double gbps = bytes / (us * 1e3);
        lab::report("matmul_ids", name + " decode", us, gbps, "GB/s", 100.0 * gbps / ceiling, "copy");
      } else {
        const double tflops = 2.0 * static_cast<double>(n * c.k * c.n_in * c.n_out) / (us * 1e6);
        lab::report("matmul_ids", name + " prompt", us, tflops, "TFLOP/s", 100.0 * tflops / kTensorPeakTflops, "990");
      }
    }
  }
}

VELOCITY_LAB_SECTION(matmul_group, "products sharing an input (Q, K, V; gate, up), one token: one call vs separate calls") {
  const double ceiling = lab::copy_ceiling_gbps();
  struct Group {
    const char* name;
    std::vector<Shape> shapes;
  };
  const Group groups[] = {{"qkv 4096->4096+1024+1024", {{4096, 4096}, {4096, 1024}, {4096, 1024}}},
                          {"gate+up 4096->14336 x2", {{4096, 14336}, {4096, 14336}}}};
  auto ws = cu::make_matmul_workspace(512, 14336);
  Buffers b(8 * 14336, 3 * 8 * 14336, 1);
  for (DType t : {DType::Q4_K, DType::Q8_0, DType::F16})
    for (const Group& g : groups) {
      std::vector<std::unique_ptr<LabWeight>> lws;
      double bytes = 0;
      for (const Shape& s : g.shapes) {
        lws.push_back(make_weight(t, s.n_in, s.n_out));
        bytes += static_cast<double>(lws.back()->bytes());
      }
      int calls = 10;
      for (const auto& lw : lws) calls = std::max<int>(calls, static_cast<int>(lw->copies.size()));
      std::vector<Weight> ws_now(lws.size());
      const auto outs_now = [&] {
        std::vector<cu::MatmulOut> outs;
        for (size_t i = 0; i < lws.size(); ++i) {
          ws_now[i] = lws[i]->rotate();
          outs.push_back({&ws_now[i], b.y + static_cast<int64_t>(i) * 8 * 14336, lws[i]->n_out, false});
        }
        return outs;
      };
      const double together = lab::time_graph_us(
          [&] {
            const auto outs = outs_now();
            cu::matmul(std::span<const cu::MatmulOut>(outs), b.x, 4096, 1, 1, *ws, lab::stream());
          },
          30, calls);
      const double apart = lab::time_graph_us(
          [&] {
            const auto outs = outs_now();
            for (const cu::MatmulOut& o : outs)
              cu::matmul(std::span<const cu::MatmulOut>(&o, 1), b.x, 4096, 1, 1, *ws, lab::stream());
          },
          30, calls);
      for (auto [how, us] : {std::pair{"one call", together}, std::pair{"separate", apart}}) {
        const double gbps = bytes / (us * 1e3);
        lab::report("matmul_group", type_str(t) + " " + g.name + " " + how, us, gbps, "GB/s", 100.0 * gbps / ceiling,
                    "copy");
      }
    }
}

VELOCITY_LAB_SECTION(matmul_sweep, "decode launch sizes (rows per block x K splits) at n_decode = 1 and 8") {
  const double ceiling = lab::copy_ceiling_gbps();
  const Shape shapes[] = {{4096, 1024}, {4096, 4096}, {4096, 14336}, {14336, 4096}};
  auto ws = cu::make_matmul_workspace(8, 14336);
  Buffers b(8 * 14336, 8 * 14336, 1);
  for (DType t : {DType::Q4_K, DType::Q8_0, DType::MXFP4, DType::Q6_K})
    for (const Shape& s : shapes) {
      auto lw = make_weight(t, s.n_in, s.n_out);
      for (int64_t n : {1, 8}) {
        double best = 1e30;
        std::string best_name;
        for (int wr : {8, 4, 2})
          for (int splits : {0, 1, 2, 3, 4, 6, 8, 16}) {
            const std::string name = type_str(t) + " " + shape_str(s) + " n=" + std::to_string(n) +
                                     " wr=" + std::to_string(wr) +
                                     " splits=" + (splits ? std::to_string(splits) : "auto");
            if (!lab::wanted(name)) continue;
            cu::set_matmul_decode_tuning(*ws, cu::mm::DecodeTuning{wr, splits});
            const double us = time_decode(*lw, *ws, b, n);
            const double gbps =
                (static_cast<double>(lw->bytes()) + static_cast<double>(n * (s.n_in + s.n_out) * 4)) / (us * 1e3);
            lab::report("matmul_sweep", name, us, gbps, "GB/s", 100.0 * gbps / ceiling, "copy");
            if (us < best) best = us, best_name = name;
          }
        if (!best_name.empty()) std::printf("  best: %s (%.2f us)\n", best_name.c_str(), best);
      }
      cu::set_matmul_decode_tuning(*ws, cu::mm::DecodeTuning{});
    }
}
