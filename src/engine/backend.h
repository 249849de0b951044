// The Backend interface: one device's memory, primitive ops and the blocks a transformer is built
// from.
//
// Designed for the GPU from the first CPU line (../shared/DESIGN.md):
//   - reserve() allocates everything a step touches (activations, scratch, KV cache, logits)
//     from the model's shape and the slot count; a step allocates nothing.
//   - A step is begin_step(batch), then blocks (inside run_step), then read_output(). Inside a
//     step no op needs a host decision: MoE routing is an op (moe_route) whose result stays in
//     backend memory and is consumed in place by moe_experts; the step's inputs (ids,
//     positions, sequences) sit in fixed buffers filled by begin_step. So a backend may record
//     a step's ops once per step shape and replay them (CUDA graphs).
//   - Blocks (attention, dense FFN, MoE, output head) are virtual with a reference composition of
//     primitive ops (backend.cpp), which every backend shares for testing; a backend overrides a
//     block to fuse inside it, the model files never change.
//   - Several backends can hold one model (a placement maps each tensor to a device): each
//     backend holds the KV cache of the layers it runs, and the residual stream moves between
//     them with write/read at a layer boundary (model/forward.h).
//
// Shapes: T = tokens in the step, D = n_embd, H/Hkv = query/KV heads, Dh = head dim.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/function_ref.h"
#include "engine/batch.h"
#include "engine/device.h"
#include "engine/tensor.h"

namespace velocity::engine {

// A device stopped working (a sticky CUDA error: illegal address, ECC, lost device): nothing
// computed on it can be trusted any more, so the model that runs there stops serving (its
// requests end with an error, /health reports it) while other models carry on.
class DeviceFault : public Error {
 public:
  using Error::Error;
};

enum class RopeType {
  None,    // no rotary embedding
  Normal,  // GGUF llama layout: rotate adjacent pairs (x[2i], x[2i+1])
  Neox,    // HF layout: rotate (x[i], x[i + n_rot/2]) (qwen2, qwen3, qwen3moe)
};

struct RopeParams {
  RopeType type = RopeType::Normal;
  int32_t n_rot = 0;              // leading dims of each head that rotate (<= head dim, even)
  float freq_base = 10000.0f;     // theta
  float freq_scale = 1.0f;        // linear position scaling (1 / factor)
  Weight freq_factors;            // F32 [n_rot / 2] divisors of the frequencies (llama 3
                                  // "rope_freqs") on the layer's device, or absent
  // YaRN (gpt-oss): pair i's inverse frequency blends the interpolated one (/ yarn_factor) and
  // the extrapolated one by a ramp over i between the correction dims of yarn_beta_fast and
  // yarn_beta_slow rotations at yarn_orig_ctx (rope_inv_freq); cos and sin are multiplied by
  // attn_factor. yarn_factor 0: off (freq_scale applies instead).
  float yarn_factor = 0;
  int64_t yarn_orig_ctx = 0;
  float yarn_beta_fast = 32.0f, yarn_beta_slow = 1.0f;
  bool yarn_truncate = true;      // correction dims floored/ceiled (HF's default; gpt-oss: false)
  float attn_factor = 1.0f;       // magnitude of cos/sin (YaRN: 0.1 ln(factor) + 1)
};

// Inverse frequency of rotated pair i (theta = position * rope_inv_freq) from base, scale and
// YaRN; the frequency factors are applied by the backend on top. In double: positions reach 10^5.
double rope_inv_freq(const RopeParams& rope, int64_t i);

// Everything reserve() sizes. Zero means "not used by this model".
struct StepShape {
  int64_t max_tokens = 512;  // tokens per step (prefill chunk size)
  int64_t max_logits = 512;  // tokens per step that want logits (<= max_tokens)
  int64_t n_embd = 0;
  int64_t n_vocab = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;    // Dh of Q and K
  int64_t head_dim_v = 0;    // Dh of V
  int64_t n_ff = 0;          // dense FFN width
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_expert = 0;   // expert FFN width
  // KV cache
  int64_t n_slots = 1;       // sequences held at once (seq ids 0..n_slots-1)
  int64_t n_ctx = 0;         // positions per sequence
  DType cache_type_k = DType::F16;  // F32, F16, Q8_0 or Q4_0 (CPU); see Backend::supports_cache_type
  DType cache_type_v = DType::F16;
  // Multi-head latent attention (deepseek2): each cache row is one shared "head" (n_head_kv 1) of
  // head_dim_k = kv_lora_rank + rope values whose first head_dim_v = kv_lora_rank values are
  // also the V row: no V storage, and the cache type is cache_type_k's (mla_attention).
  bool kv_shared_v = false;
  int64_t mla_q_dim = 0;      // H * (qk_nope + qk_rope): the query before absorption
  int64_t mla_q_lora = 0;     // q LoRA rank (0: none)
  int64_t mla_out_dim = 0;    // H * v_head_dim: the heads' values after attn_v_b
  int64_t n_ff_shared = 0;    // shared-expert FFN width (n_ff_expert * shared experts)
  // The layers whose KV cache this backend holds (the layers it runs); empty: all n_layer.
  std::vector<int32_t> kv_layers;
  // What this backend's part of the step needs: the embedding (first device) and the output
  // head with its logits buffer (last device).
  bool has_embedding = true;
  bool has_output = true;
};

struct AttentionLayer {
  Weight norm;                 // [D] RMSNorm weight
  Weight wq, wk, wv, wo;       // [D -> H*Dh], [D -> Hkv*Dh], [D -> Hkv*Dhv], [H*Dhv -> D]
  Weight bq, bk, bv;           // optional biases (qwen2, gpt-oss)
  Weight q_norm, k_norm;       // optional per-head RMSNorm weights [Dh] (qwen3)
  Weight bo;                   // optional output bias [D] (gpt-oss)
};

struct AttentionParams {
  int32_t layer = 0;           // global layer index (the KV cache of this layer)
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;
  int64_t head_dim_v = 0;
  float norm_eps = 1e-5f;      // for the input norm and the Q/K norms
  float scale = 0;             // softmax scale; 0 means 1/sqrt(head_dim_k)
  RopeParams rope;
  // Sliding window (gpt-oss's even layers): a token at position p attends to positions
  // (p - window, p] of its sequence; 0: to all of [0, p].
  int64_t window = 0;
  // F32 [H] learned per-head sink logits (gpt-oss) on the layer's device, or absent: each head's
  // softmax gets one more logit, which takes probability mass and contributes no value.
  Weight sinks;
};

struct FfnLayer {
  Weight norm;                 // [D]
  Weight gate, up, down;       // [D -> F], [D -> F], [F -> D]; SwiGLU: down(silu(gate x) * up x)
};

// How an expert combines its gate and up products into the down product's input.
struct ExpertGlu {
  enum class Kind {
    Silu,     // silu(gate) * up
    Clamped,  // gpt-oss: g = min(gate, limit), u = clamp(up, -limit, limit): (u + 1) * g * sigmoid(alpha g)
  };
  Kind kind = Kind::Silu;
  float alpha = 1.702f;
  float limit = 7.0f;
};

struct MoeLayer {
  Weight norm;                 // [D]
  Weight router;               // [D -> E]
  Weight gate_exps, up_exps;   // E matrices [D -> Fe]
  Weight down_exps;            // E matrices [Fe -> D]
  // Optional biases (gpt-oss), F32: router [E]; per expert e, row e of gate/up [Fe, E] and of
  // down [D, E].
  Weight router_b, gate_exps_b, up_exps_b, down_exps_b;
  ExpertGlu glu;
  // Optional shared experts (deepseek2): one SwiGLU FFN [D -> Fs -> D] every token runs on the
  // same normed input, added to the routed experts' output.
  Weight gate_shexp, up_shexp, down_shexp;
};

struct MoeParams {
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;   // k
  bool normalize_weights = true;  // renormalise the k selected weights to sum to 1
  // DeepSeek's routing (deepseek2; the defaults are the llama family's):
  //   scores = softmax(logits) or sigmoid(logits); choice = scores + selection_bias (V3's
  //   e_score_correction_bias, GGUF exp_probs_b: it picks experts, it never weighs them);
  //   with n_group > 1 the experts split into n_group equal groups ranked by the sum of their
  //   two best choice values, and only the n_group_used best groups' experts may be picked;
  //   the k best choice values pick the experts, weighted by their scores (renormalised when
  //   normalize_weights) times weights_scale.
  enum class Scoring { Softmax, Sigmoid };
  Scoring scoring = Scoring::Softmax;
  Weight selection_bias;       // F32 [E] on the router's device, or absent
  int64_t n_group = 1, n_group_used = 1;
  float weights_scale = 1.0f;
};

// Multi-head latent attention (DeepSeek-V2/V3, GGUF deepseek2) of one layer. Per head h: the
// query is [nope | rope] (the rope part rotated), the key [k_b[h]^T-lifted latent | shared
// rotated rope key], the value v_b[h] of the latent. The cache holds per token only the
// normed latent c (R = kv_lora_rank) and the rotated rope key (StepShape::kv_shared_v), and
// attention runs absorbed: q'[h] = [k_b[h] q_nope[h] | q_rope[h]] against rows [c | k_rope],
// values c, then out[h] = v_b[h] (softmax-weighted sum of c).
struct MlaLayer {
  Weight norm;                 // [D] attn_norm
  Weight wq;                   // [D -> H*(nope+rope)], or absent with q LoRA:
  Weight wq_a, q_a_norm, wq_b; // [D -> Rq], [Rq], [Rq -> H*(nope+rope)]
  Weight wkv_a;                // [D -> R + rope] (attn_kv_a_mqa: latent then rope key)
  Weight kv_a_norm;            // [R]
  Weight wk_b;                 // H matrices [nope -> R] (attn_k_b)
  Weight wv_b;                 // H matrices [R -> dv] (attn_v_b)
  Weight wo;                   // [H*dv -> D]
};

struct MlaParams {
  int32_t layer = 0;
  int64_t n_head = 0;
  int64_t kv_lora_rank = 0;    // R
  int64_t qk_nope = 0, qk_rope = 0, v_head_dim = 0;
  float norm_eps = 1e-6f;      // the input, q_a and kv_a norms
  float scale = 0;             // softmax scale (DeepSeek: mscale^2 / sqrt(nope + rope) with YaRN)
  RopeParams rope;             // n_rot = qk_rope; rotates the rope parts only
};

// Which experts each token uses and with what weight: ids [T, k], weights [T, k], in backend
// memory (host memory for the CPU backend).
struct MoeRoute {
  int32_t* ids = nullptr;
  float* weights = nullptr;
  int64_t n_tokens = 0;
  int64_t k = 0;
};

// Options of the ops and blocks beyond the llama family's, which a backend may not compute yet.
// An architecture lists the ones it needs (model::Config::features); Model::load refuses, before
// any weight is read, a model that needs one a backend of its placement lacks.
enum class Feature {
  AttentionSinks,       // AttentionParams::sinks
  SlidingWindow,        // AttentionParams::window
  YarnRope,             // RopeParams::yarn_*, attn_factor
  AttentionOutputBias,  // AttentionLayer::bo
  ExpertBiases,         // MoeLayer::router_b, gate/up/down_exps_b
  ClampedSwiglu,        // ExpertGlu::Kind::Clamped
  LatentAttention,      // mla_attention_block, StepShape::kv_shared_v
  SharedExperts,        // MoeLayer::gate_shexp, up_shexp, down_shexp
  GroupedRouting,       // MoeParams scoring, selection_bias, n_group, weights_scale
};
const char* feature_name(Feature f);  // "attention sinks", ...

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)"
  virtual Device device() const = 0;
  // Whether attention can use a KV cache of this type (K and V are asked separately).
  virtual bool supports_cache_type(DType type) const = 0;
  // Whether the ops and blocks compute `feature` (the default: no).
  virtual bool supports(Feature /*feature*/) const { return false; }

  // --- Memory (at load) ---------------------------------------------------------------------
  // A weight from bytes in host memory (the mmap'd file). The backend may keep the pointer (CPU:
  // zero copy) or copy it to device memory; `bytes` and the text `name` views must outlive the
  // backend. Throws when the type is one the backend cannot compute with.
  virtual Weight upload(std::string_view name, DType type, std::span<const int64_t> shape, const uint8_t* bytes) = 0;
  // Allocates activations, scratch, the KV cache of shape.kv_layers and the logits buffer.
  virtual void reserve(const StepShape& shape) = 0;
  // For the check before loading (Model::load): device memory a weight takes once uploaded, what
  // reserve(shape) allocates, and what is free now. A backend on host memory answers 0 / 0 /
  // nothing (its weights stay in the file's mapping; the OS pages them).
  virtual uint64_t weight_bytes(DType /*type*/, std::span<const int64_t> /*shape*/) const { return 0; }
  virtual uint64_t reserve_bytes(const StepShape& /*shape*/) const { return 0; }
  virtual std::optional<uint64_t> free_bytes() const { return std::nullopt; }
  // Bytes of the KV cache reserve(shape) allocates (part of reserve_bytes).
  static uint64_t kv_cache_bytes(const StepShape& shape);
  const StepShape& shape() const { return shape_; }
  // An activation buffer of [capacity, n_cols] (also used by the reference blocks for scratch).
  virtual Act alloc(int64_t capacity, int64_t n_cols) = 0;

  // --- Moving data (in stream order: after every op issued before, before every op after) ---
  // dst rows [0, n_rows) = src [n_rows, dst.n_cols] (host memory); sets dst.n_rows. `src` may
  // be reused when this returns.
  virtual void write(Act& dst, const float* src, int64_t n_rows) = 0;
  // dst [src.n_rows, src.n_cols] (host memory) = src, once every op issued before has run.
  virtual void read(const Act& src, float* dst) = 0;
  // Waits for every op issued so far. A device fault (engine::DeviceFault) surfaces here, in
  // read() or in read_output().
  virtual void synchronize() = 0;

  // --- KV cache sequences ---------------------------------------------------------------------
  // Positions [0, n_positions) of sequence src become those of dst, in every layer held here
  // (prefix sharing). The cache does not track which positions are filled, so clearing or
  // truncating a sequence needs no call: later steps overwrite positions (engine/batch.h).
  virtual void seq_copy(int32_t src_seq, int32_t dst_seq, int64_t n_positions) = 0;

  // --- A step --------------------------------------------------------------------------------
  // Validates the batch and fills the step's input buffers (ids, positions, seq ids, output
  // rows). Throws velocity::Error on a batch larger than max_tokens, more than max_logits
  // output rows, a token id outside the vocabulary, a seq id outside [0, n_slots) or a position
  // outside [0, n_ctx) (the message says the context length).
  virtual void begin_step(const Batch& batch) = 0;
  // Runs `ops`, which issues every op of this step on this backend (embed .. output_block). A
  // backend may record the ops once per step shape and replay the recording on later steps of
  // that shape (CUDA graphs), so `ops` must issue the same calls for the same batch size and
  // must not depend on values the step computes. The CPU backend just calls it.
  virtual void run_step(FunctionRef<void()> ops) { ops(); }
  // The step's outputs (engine/batch.h), once the step has run; host memory valid until the
  // next step.
  virtual StepOutput read_output() = 0;

  // --- Primitive ops (on the current step's tokens) --------------------------------------------
  // out[t] = table[token t] (dequantised); out: [T, D]
  virtual void embed(const Weight& table, Act& out) = 0;
  // out[t] = x[t] / rms(x[t]) * w (w may be absent: no scale); out may alias x
  virtual void rms_norm(const Act& x, const Weight& w, float eps, Act& out) = 0;
  // per head of head_dim: x[t, h] = x[t, h] / rms(x[t, h]) * w[head_dim], in place
  virtual void rms_norm_heads(Act& x, int64_t head_dim, const Weight& w, float eps) = 0;
  // y = x W^T: y[t, r] = sum_i W[r, i] x[t, i]; x [T, n_in] -> y [T, n_out]
  virtual void matmul(const Weight& w, const Act& x, Act& y) = 0;
  // y_i = x W_i^T for products that share their input (Q, K, V; gate, up): a backend may prepare
  // x once for all of them (the CUDA backend converts it once). The default runs matmul for each.
  virtual void matmuls(const Act& x, std::span<const Weight* const> ws, std::span<Act* const> ys);
  // y[t] += b
  virtual void add_bias(Act& y, const Weight& b) = 0;
  // rotary embedding of every head of head_dim in x [T, n_heads * head_dim], in place, at each
  // token's position
  virtual void rope(Act& x, int64_t head_dim, const RopeParams& rope) = 0;
  // Writes k [T, Hkv*Dh] and v [T, Hkv*Dhv] into the KV cache of p.layer at each token's
  // (seq, position), then causal attention of q [T, H*Dh] over its sequence's cache
  // positions [0, position]: out [T, H*Dhv].
  virtual void attention(const AttentionParams& p, const Act& q, const Act& k, const Act& v, Act& out) = 0;
  // out = silu(gate) * up, elementwise; out may alias gate
  virtual void swiglu(const Act& gate, const Act& up, Act& out) = 0;
  // The clamped variant (ExpertGlu::Kind::Clamped), elementwise; out may alias gate. The
  // default throws: a backend without Feature::ClampedSwiglu never gets such a model.
  virtual void swiglu_clamped(const Act& gate, const Act& up, const ExpertGlu& glu, Act& out);
  // x += y
  virtual void add(Act& x, const Act& y) = 0;
  // router logits [T, E] -> top-k experts per token and their weights (softmax over all E,
  // then the k largest, renormalised if asked); ties to the lower expert id
  virtual void moe_route(const Act& router_logits, const MoeParams& p, MoeRoute& route) = 0;
  // out[t] = sum_j route.weights[t, j] * (down_e(glu(gate_e x[t] + bg_e, up_e x[t] + bu_e)) + bd_e),
  // e = route.ids[t, j]; glu = layer.glu, biases b*_e as present in the layer
  virtual void moe_experts(const MoeRoute& route, const MoeLayer& layer, const Act& x, Act& out) = 0;
  // out = the rows of x whose token has an output, in batch order
  virtual void select_output_rows(const Act& x, Act& out) = 0;
  // Multi-head latent attention (MlaLayer) of q [T, H*(nope+rope)] and kv [T, R + rope] (the
  // attn_kv_a_mqa product; normed and rotated in place): writes each token's [c | k_rope] row
  // to the cache of p.layer, attends absorbed, out [T, H*dv] (before attn_output). The default
  // throws: a backend without Feature::LatentAttention never gets such a model.
  virtual void mla_attention(const MlaParams& p, const MlaLayer& layer, const Act& q, Act& kv, Act& out);

  // --- Blocks (reference composition in backend.cpp; override to fuse) --------------------------
  // x += attention(rms_norm(x)) (+ bo)
  virtual void attention_block(const AttentionLayer& layer, const AttentionParams& p, Act& x);
  // x += down(silu(gate(rms_norm(x))) * up(rms_norm(x)))
  virtual void ffn_block(const FfnLayer& layer, float eps, Act& x);
  // x += moe(rms_norm(x)), the router logits with router_b when present; + the shared experts
  virtual void moe_block(const MoeLayer& layer, const MoeParams& p, float eps, Act& x);
  // x += wo(mla_attention(q(rms_norm(x)), kv_a(rms_norm(x)))), q through the q LoRA when present
  virtual void mla_attention_block(const MlaLayer& layer, const MlaParams& p, Act& x);
  // logits = head(rms_norm(x)) for the output rows; kept for read_output()
  virtual void output_block(const Weight& norm, const Weight& head, float eps, const Act& x);

  // For tests: the logits of the last step's output rows, [n_outputs, n_vocab] on the device.
  const Act& logits() const { return scratch_.logits; }

 protected:
  // Scratch for the reference blocks; allocated by reserve_blocks() from shape_.
  struct BlockScratch {
    Act norm, q, k, v, attn, proj;   // [T, D], [T, H*Dh], [T, Hkv*Dh], [T, Hkv*Dhv], [T, H*Dhv], [T, D]
    Act gate, up;                    // [T, F]
    Act router;                      // [T, E]
    MoeRoute route;
    Act logits_in, logits;           // [T, D], [T, V]
    Act mla_q, mla_qa, mla_out;      // [T, H*(nope+rope)], [T, Rq], [T, H*dv] (MLA models)
  };
  // Called by reserve() implementations once shape_ is set: allocates BlockScratch through alloc()
  // and route storage through alloc_route().
  void reserve_blocks();
  // Bytes reserve_blocks() allocates for `shape` (activations, routes, logits).
  static uint64_t block_scratch_bytes(const StepShape& shape);
  virtual MoeRoute alloc_route(int64_t max_tokens, int64_t k) = 0;
  int64_t step_tokens() const { return step_tokens_; }
  int64_t step_outputs() const { return step_outputs_; }
  // Checks a batch against shape_ (the messages begin_step promises); sets step_tokens_ and
  // step_outputs_.
  void check_batch(const Batch& batch);

  StepShape shape_;
  BlockScratch scratch_;
  int64_t step_tokens_ = 0;   // set by begin_step
  int64_t step_outputs_ = 0;

 private:
  std::vector<int32_t> seq_count_;  // check_batch scratch, [n_slots]
};

// The CPU backend (engine/cpu). n_threads <= 0: one per online core.
std::unique_ptr<Backend> make_cpu_backend(int n_threads = 0);
std::unique_ptr<Backend> make_cpu_backend(int n_threads, int32_t index);  // "cpu:N", for tests
// The CUDA backend on GPU `index` (engine/cuda); throws Error when this build has no CUDA or the
// GPU is absent.
std::unique_ptr<Backend> make_cuda_backend(int index);
// Number of CUDA GPUs this process can use (0 without CUDA support or a driver).
int cuda_device_count();
// Whether cuda:index exists and the CUDA kernels support it (compute capability 8.0 or newer).
bool cuda_device_supported(int index);
// The backend for `device`.
std::unique_ptr<Backend> make_backend(Device device, int n_threads = 0);
// The device a model runs on when none is named: cuda:0 when a CUDA GPU is present, else the CPU.
Device default_device();
// GPU ceilings for benchmarks (nothing for the CPU, or without CUDA): the device-to-device copy
// rate over a buffer of `bytes` (bytes read + bytes written per second, best of a few runs), and
// the dense BF16 tensor-core peak in FLOP/s from the SM count, the clock and the architecture.
std::optional<double> measure_copy_bandwidth(Device device, uint64_t bytes);
std::optional<double> tensor_peak_flops(Device device);

}  // namespace velocity::engine
