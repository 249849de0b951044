// The CUDA backend: one GPU's memory and the ops of engine/backend.h on it (kernels.h).
//
// Memory: weights are uploaded once at load through pinned staging buffers, in the layout the
// kernels read (to_weight_layout); activations, the KV cache of this backend's layers, the
// kernels' workspaces, the step's input and output buffers are allocated in reserve(), so a step
// allocates nothing. Everything runs on one stream, in issue order.
//
// A step: begin_step copies the batch (ids, positions, sequences, output rows) into fixed device
// buffers; run_step runs the model's ops. A decode step (every token a decode token that wants an
// output) is padded to a bucket of 1, 2, 4, 8, 16, 32 or 64 tokens (padding tokens have sequence
// -1: they write no KV and their outputs are dropped), and its ops are captured into a CUDA graph
// the first time that bucket is seen and replayed afterwards: one launch per step instead of
// hundreds, and no host work between kernels. read_output copies the logits rows that were asked
// for and the argmax of the others to pinned host memory and waits once.
//
// Faults: a sticky CUDA error (illegal address, ECC, lost device) is a DeviceFault from the next
// call that sees it; the model is then unusable and the scheduler stops serving it.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/kernels.h"

namespace velocity::engine::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return name_; }
  Device device() const override { return Device::cuda(index_); }
  bool supports_cache_type(DType type) const override { return kv_cache_supports(type); }
  // gpt-oss's features: sinks and the sliding window in the attention kernels, YaRN in the rope
  // kernel, the output and expert biases, the clamped SwiGLU. Not yet deepseek2's (MLA, grouped
  // routing, shared experts): such a model is refused here, or falls back to the CPU.
  bool supports(Feature f) const override;

  Weight upload(std::string_view name, DType type, std::span<const int64_t> shape, const uint8_t* bytes) override;
  void reserve(const StepShape& shape) override;
  Act alloc(int64_t capacity, int64_t n_cols) override;

  void write(Act& dst, const float* src, int64_t n_rows) override;
  void read(const Act& src, float* dst) override;
  void synchronize() override;
  void seq_copy(int32_t src_seq, int32_t dst_seq, int64_t n_positions) override;

  void begin_step(const Batch& batch) override;
  void run_step(FunctionRef<void()> ops) override;
  StepOutput read_output() override;

  void embed(const Weight& table, Act& out) override;
  void rms_norm(const Act& x, const Weight& w, float eps, Act& out) override;
  void rms_norm_heads(Act& x, int64_t head_dim, const Weight& w, float eps) override;
  void matmul(const Weight& w, const Act& x, Act& y) override;
  void matmuls(const Act& x, std::span<const Weight* const> ws, std::span<Act* const> ys) override;
  void add_bias(Act& y, const Weight& b) override;
  void rope(Act& x, int64_t head_dim, const RopeParams& rope) override;
  void attention(const AttentionParams& p, const Act& q, const Act& k, const Act& v, Act& out) override;
  void swiglu(const Act& gate, const Act& up, Act& out) override;
  void swiglu_clamped(const Act& gate, const Act& up, const ExpertGlu& glu, Act& out) override;
  void add(Act& x, const Act& y) override;
  void moe_route(const Act& router_logits, const MoeParams& p, MoeRoute& route) override;
  void moe_experts(const MoeRoute& route, const MoeLayer& layer, const Act& x, Act& out) override;
  void select_output_rows(const Act& x, Act& out) override;

  // The reference blocks with the RMS norm and SwiGLU folded into the products' activation
  // converter, the residual adds into their outputs (cuda::MatmulPrologue, MatmulOut::
  // accumulate) and RoPE of Q and K in one launch: the same bits, 6 kernels a layer fewer. Off
  // with VELOCITY_CUDA_FUSE=0 (the reference composition; tests compare the two).
  void attention_block(const AttentionLayer& layer, const AttentionParams& p, Act& x) override;
  void ffn_block(const FfnLayer& layer, float eps, Act& x) override;

  uint64_t weight_bytes(DType type, std::span<const int64_t> shape) const override;
  uint64_t reserve_bytes(const StepShape& shape) const override;
  std::optional<uint64_t> free_bytes() const override;
  // Bytes of device memory in use (weights, caches, buffers).
  uint64_t allocated_bytes() const { return allocated_; }
  // Graph replays so far (tests and benchmarks).
  int64_t graph_replays() const { return graph_replays_; }

 protected:
  MoeRoute alloc_route(int64_t max_tokens, int64_t k) override;

 private:
  void* device_alloc(uint64_t bytes, std::string_view what);
  // Rows [0, n) of an activation of this step that are decode rows: the step's decode tokens
  // for a [T, *] activation, the decode tokens' outputs for the output rows.
  int64_t decode_rows(int64_t n_rows) const;
  void check_act(const Act& a, std::string_view what) const;
  // matmuls() with a prologue and/or accumulating outputs.
  void products(const Act& x, std::span<const Weight* const> ws, std::span<Act* const> ys,
                const cuda::MatmulPrologue& prologue, bool accumulate);
  // rope(q) then rope(k), in one launch.
  void rope_qk(Act& q, Act& k, int64_t head_dim, const RopeParams& rope);
  // Whether the fused blocks apply: fusion on, an F32 norm, every weight through the converter.
  bool fusable(const Weight& norm, std::initializer_list<const Weight*> ws) const;

  int index_ = 0;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  std::vector<void*> allocations_;  // freed in the destructor
  uint64_t allocated_ = 0;

  // Pinned staging for weight uploads: two buffers, alternating, each guarded by an event.
  static constexpr uint64_t kStagingBytes = 64ull << 20;
  std::array<uint8_t*, 2> staging_{};
  std::array<cudaEvent_t, 2> staging_done_{};
  int staging_next_ = 0;

  // Kernel workspaces and the KV cache of each layer held here ([n_layer]; absent ones empty).
  std::unique_ptr<MatmulWorkspace> matmul_ws_;
  std::unique_ptr<AttentionWorkspace> attention_ws_;
  std::vector<KvLayer> kv_;

  // The step's inputs: host (pinned) and device copies, [max_tokens] each, and what begin_step
  // decided.
  int32_t* h_inputs_ = nullptr;  // tokens | positions | seq ids | output rows
  cudaEvent_t inputs_copied_ = nullptr;  // the last copy of h_inputs_ to the device is done
  int32_t* d_tokens_ = nullptr;
  int32_t* d_positions_ = nullptr;
  int32_t* d_seq_ids_ = nullptr;
  int32_t* d_output_rows_ = nullptr;
  int64_t n_real_tokens_ = 0;      // tokens of the batch (step_tokens_ includes padding)
  int64_t n_real_outputs_ = 0;
  int64_t n_decode_ = 0;           // leading decode tokens (padding included)
  int64_t n_decode_outputs_ = 0;   // output rows of decode tokens (they come first)
  bool graph_step_ = false;        // this step is captured / replayed
  std::vector<Output> outputs_;    // [output row] what each row asked for

  // Outputs: pinned host logits rows and argmax tokens.
  float* h_logits_ = nullptr;      // [max_logits, n_vocab]
  int32_t* d_tokens_out_ = nullptr;
  int32_t* h_tokens_out_ = nullptr;

  // Graphs by padded decode batch size; a size whose capture failed runs eagerly.
  bool graphs_enabled_ = true;
  bool fuse_ = true;  // VELOCITY_CUDA_FUSE=0: the reference blocks
  std::map<int64_t, cudaGraphExec_t> graphs_;
  std::map<int64_t, bool> graph_failed_;
  int64_t graph_replays_ = 0;

  // Testing: VELOCITY_CUDA_FAULT_AFTER_STEPS=N makes step N fault the device (inject_fault).
  int64_t fault_after_steps_ = -1;
  int64_t steps_run_ = 0;

  // MoE scratch: expert outputs [T * k, max(Fe, D)].
  Act moe_gate_, moe_up_, moe_out_;
};

}  // namespace velocity::engine::cuda
