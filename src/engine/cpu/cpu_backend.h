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
  // index: 0, or N > 0 for the extra CPU backends ("cpu:N") that tests of the cross-device
  // paths place layers on.
  explicit CpuBackend(int n_threads, int32_t index = 0);
  ~CpuBackend() override;

  std::string name() const override { return device().to_string(); }
  Device device() const override { return Device{Device::Kind::Cpu, index_}; }
  bool supports_cache_type(DType type) const override;
  bool supports(Feature) const override { return true; }
  ThreadPool& pool() { return pool_; }

  Weight upload(std::string_view name, DType type, std::span<const int64_t> shape, const uint8_t* bytes) override;
  void reserve(const StepShape& shape) override;
  Act alloc(int64_t capacity, int64_t n_cols) override;

  void write(Act& dst, const float* src, int64_t n_rows) override;
  void read(const Act& src, float* dst) override;
  void synchronize() override {}
  void seq_copy(int32_t src_seq, int32_t dst_seq, int64_t n_positions) override;

  void begin_step(const Batch& batch) override;
  StepOutput read_output() override;

  void embed(const Weight& table, Act& out) override;
  void rms_norm(const Act& x, const Weight& w, float eps, Act& out) override;
  void rms_norm_heads(Act& x, int64_t head_dim, const Weight& w, float eps) override;
  void matmul(const Weight& w, const Act& x, Act& y) override;
  void add_bias(Act& y, const Weight& b) override;
  void rope(Act& x, int64_t head_dim, const RopeParams& rope) override;
  void attention(const AttentionParams& p, const Act& q, const Act& k, const Act& v, Act& out) override;
  void swiglu(const Act& gate, const Act& up, Act& out) override;
  void swiglu_clamped(const Act& gate, const Act& up, const ExpertGlu& glu, Act& out) override;
  void add(Act& x, const Act& y) override;
  void moe_route(const Act& router_logits, const MoeParams& p, MoeRoute& route) override;
  void moe_experts(const MoeRoute& route, const MoeLayer& layer, const Act& x, Act& out) override;
  void select_output_rows(const Act& x, Act& out) override;
  void mla_attention(const MlaParams& p, const MlaLayer& layer, const Act& q, Act& kv, Act& out) override;

 protected:
  MoeRoute alloc_route(int64_t max_tokens, int64_t k) override;

 private:
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  void* alloc_bytes(size_t n);
  // Rotates dims [offset, offset + n_rot) of every head of head_dim in x (rope() is offset 0).
  void rope_at(Act& x, int64_t head_dim, int64_t offset, const RopeParams& rope);

  int32_t index_ = 0;
  ThreadPool pool_;
  SiluMulFn silu_mul_;  // elementwise kernel of the ISA in use at construction
  std::unique_ptr<Matmul> matmul_;
  std::unique_ptr<KvCache> kv_;
  std::vector<std::unique_ptr<void, FreeDeleter>> buffers_;  // every allocation, freed together
  // The current step (begin_step).
  std::vector<int32_t> tokens_, positions_, seq_ids_, output_rows_;
  std::vector<Output> outputs_;          // [output row] what the row wants
  std::vector<double> rope_inv_freq_;    // rope() scratch: [n_rot / 2] inverse frequencies
  std::vector<int32_t> output_tokens_;   // [output row] argmax of Token rows
  // MoE scratch: tokens routed to one expert and their rows.
  std::vector<double> route_probs_;  // [E]
  std::vector<int32_t> expert_tokens_;
  std::vector<float> expert_weights_;
  Act expert_x_, expert_gate_, expert_up_, expert_out_;
  std::vector<uint8_t> route_allowed_;  // [E] moe_route's group mask
};

}  // namespace velocity::engine::cpu
