// Kernel lab sections for attention (lab_util.h): the decode (split-KV) and prompt (tensor-core)
// kernels on one layer of Llama-3-8B (32 query heads, 8 KV heads, head dim 128), with F16 and
// Q8_0 caches.
//
//   attention_decode: batch 1 and 8 at depths 512, 4096, 8192, 32768. Bytes = the K and V rows
//       the tokens read (depth * n_head_kv * (K row + V row bytes) per token), against the copy
//       ceiling (read + write). The cache holds 32768 positions per slot, as a server configured
//       for that context would, so the blocks past a token's depth are launched and exit: their
//       cost is part of the time.
//   attention_prompt: 512 queries at depths 0 and 4096, and a 4096-token prompt from depth 0:
//       TFLOP/s counting 4 * n_head * head_dim * (positions attended, summed over the queries).
//
//   velocity_kernel_lab attention
#include <cuda_runtime.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "engine/cuda/kernels.h"
#include "lab_util.h"

namespace velocity::lab {
namespace {

constexpr int kHead = 32, kHeadKv = 8, kDim = 128, kSlots = 8, kCtx = 32768, kMaxTokens = 4096;

template <class T>
struct Device {
  T* p = nullptr;
  explicit Device(size_t n) { check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc"); }
  ~Device() { cudaFree(p); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
};

// One layer's cache (K and V of `type`), filled with 0x3C bytes: finite values in every type (F16
// 1.06; Q8_0 blocks of d = 1.06, q = 60). The kernels' time does not depend on the values.
struct Layer {
  engine::cuda::KvLayer kv;
  std::unique_ptr<Device<uint8_t>> k, v;
  explicit Layer(DType type) {
    kv.type_k = kv.type_v = type;
    kv.n_slots = kSlots;
    kv.n_ctx = kCtx;
    kv.n_head_kv = kHeadKv;
    kv.head_dim_k = kv.head_dim_v = kDim;
    const size_t side = static_cast<size_t>(kSlots) * kHeadKv * kCtx * dtype_row_bytes(type, kDim);
    k = std::make_unique<Device<uint8_t>>(side);
    v = std::make_unique<Device<uint8_t>>(side);
    check(cudaMemset(k->p, 0x3C, side), "cudaMemset");
    check(cudaMemset(v->p, 0x3C, side), "cudaMemset");
    kv.k = k->p;
    kv.v = v->p;
  }
};

// Queries (random), outputs, the step's positions and sequences, and the workspace.
struct Step {
  Device<float> q{static_cast<size_t>(kMaxTokens) * kHead * kDim};
  Device<float> out{static_cast<size_t>(kMaxTokens) * kHead * kDim};
  Device<int32_t> pos{kMaxTokens}, seq{kMaxTokens};
  std::unique_ptr<engine::cuda::AttentionWorkspace> ws =
      engine::cuda::make_attention_workspace(kMaxTokens, kHead, kCtx, kDim);
  Step() {
    std::vector<float> q_host(static_cast<size_t>(kMaxTokens) * kHead * kDim);
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (float& x : q_host) x = dist(rng);
    check(cudaMemcpy(q.p, q_host.data(), q_host.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  void set_tokens(const std::vector<int32_t>& positions, const std::vector<int32_t>& seqs) {
    check(cudaMemcpy(pos.p, positions.data(), positions.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
          "cudaMemcpy");
    check(cudaMemcpy(seq.p, seqs.data(), seqs.size() * sizeof(int32_t), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  void attend(const Layer& layer, int n_tokens, int n_decode) {
    engine::cuda::attention(layer.kv, q.p, kHead * kDim, kHead, 1.0f / std::sqrt(static_cast<float>(kDim)), pos.p,
                            seq.p, n_tokens, n_decode, out.p, kHead * kDim, *ws, stream());
  }
};

std::string type_name(DType t) {
  std::string s(dtype_name(t));
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

VELOCITY_LAB_SECTION(attention_decode, "decode attention (split-KV), Llama-3-8B layer, GB/s of cache read vs copy") {
  const double ceiling = copy_ceiling_gbps();
  Step step;
  for (DType type : {DType::F16, DType::Q8_0}) {
    const Layer layer(type);
    const double row_bytes = static_cast<double>(layer.kv.k_row_bytes() + layer.kv.v_row_bytes());
    for (int batch : {1, 8}) {
      for (int depth : {512, 4096, 8192, 32768}) {
        std::vector<int32_t> pos(batch, depth - 1), seq(batch);
        for (int i = 0; i < batch; ++i) seq[i] = i;
        step.set_tokens(pos, seq);
        const double us = time_us([&] { step.attend(layer, batch, batch); }, 50, 10);
        const double gbps = static_cast<double>(batch) * depth * kHeadKv * row_bytes / (us * 1e3);
        report("attention_decode",
               "decode " + type_name(type) + " batch " + std::to_string(batch) + " depth " + std::to_string(depth), us,
               gbps, "GB/s", 100.0 * gbps / ceiling, "copy");
      }
    }
  }
}

VELOCITY_LAB_SECTION(
    attention_prompt,
    "prompt attention (tensor cores), Llama-3-8B layer: TFLOP/s (target >= 100) vs 990 (dense peak, H100 SXM)") {
  Step step;
  for (DType type : {DType::F16, DType::Q8_0}) {
    const Layer layer(type);
    for (auto [n_q, depth] : {std::pair{512, 0}, std::pair{512, 4096}, std::pair{4096, 0}}) {
      std::vector<int32_t> pos(n_q), seq(n_q, 0);
      double attended = 0;
      for (int i = 0; i < n_q; ++i) {
        pos[i] = depth + i;
        attended += depth + i + 1;
      }
      step.set_tokens(pos, seq);
      const double us = time_us([&] { step.attend(layer, n_q, 0); }, 50, 2);
      const double tflops = 4.0 * kHead * kDim * attended / (us * 1e6);
      // As matmul_prompt: the percentage is of the H100 SXM dense tensor peak (990 TFLOP/s).
      report("attention_prompt",
             "prompt " + type_name(type) + " " + std::to_string(n_q) + " queries depth " + std::to_string(depth), us,
             tflops, "TFLOP/s", 100.0 * tflops / 990.0, "990 TFLOP/s");
    }
  }
}

}  // namespace velocity::lab
