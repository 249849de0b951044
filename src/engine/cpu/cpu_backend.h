// The CPU backend: weights are zero-copy views into the mmap'd GGUF file (1-D weights are
// converted to F32 at load), activations and the KV cache are host buffers allocated in reserve(),
// every op runs on one thread pool. Matrix products: engine/cpu/matmul.h; attention over the KV
// cache: engine/cpu/attention.h.
#pragma once

#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "engine/backend.h"
#include "engine/cpu/attention.h"
#include "engine/cpu/elementwise.h"
#include "engine/cpu/matmul.h"

namespace velocity::engine::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int n_threads);
  ~CpuBackend() override;

  std::string name() const override { return "cpu"; }
  ThreadPool& pool() { return pool_; }

  Weight upload(std::string name, DType type, std::span<const int64_t> shape, const uint8_t* bytes) override;
  void reserve(const StepShape& shape) override;
  Act alloc(int64_t capacity, int64_t n_cols) override;

  void begin_step(const Batch& batch) override;
  void read_logits(std::span<float> out) override;

  void embed(const Weight& table, Act& out) override;
  void rms_norm(const Act& x, const Weight& w, float eps, Act& out) override;
  void rms_norm_heads(Act& x, int64_t head_dim, const Weight& w, float eps) override;
  void matmul(const Weight& w, const Act& x, Act& y) override;
  void add_bias(Act& y, const Weight& b) override;
  void rope(Act& x, int64_t head_dim, const RopeParams& rope) override;
  void attention(const AttentionParams& p, const Act& q, const Act& k, const Act& v, Act& out) override;
  void swiglu(const Act& gate, const Act& up, Act& out) override;
  void add(Act& x, const Act& y) override;
  void moe_route(const Act& router_logits, const MoeParams& p, MoeRoute& route) override;
  void moe_experts(const MoeRoute& route, const MoeLayer& layer, const Act& x, Act& out) override;
  void select_logit_rows(const Act& x, Act& out) override;

 protected:
  MoeRoute alloc_route(int64_t max_tokens, int64_t k) override;

 private:
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  void* alloc_bytes(size_t n);

  ThreadPool pool_;
  SiluMulFn silu_mul_;  // elementwise kernel of the ISA in use at construction
  std::unique_ptr<Matmul> matmul_;
  std::unique_ptr<KvCache> kv_;
  std::vector<std::unique_ptr<void, FreeDeleter>> buffers_;  // every allocation, freed together
  // The current step (begin_step).
  std::vector<int32_t> tokens_, positions_, seq_ids_, logit_rows_;
  // MoE scratch: tokens routed to one expert and their rows.
  std::vector<double> route_probs_;  // [E]
  std::vector<int32_t> expert_tokens_;
  std::vector<float> expert_weights_;
  Act expert_x_, expert_gate_, expert_up_, expert_out_;
};

}  // namespace velocity::engine::cpu
