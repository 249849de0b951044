// The CUDA backend's kernels, as host functions that enqueue work on a stream. Each op has one
// .cu file (matmul_*.cu, attention_*.cu, elementwise.cu, moe.cu); CudaBackend (cuda_backend.cu)
// composes them. Every function here is tested against the CPU backend in tests/gpu and timed
// in the kernel lab (bench/cuda).
//
// Conventions:
//   - Pointers are device memory unless a comment says host. Activations are F32, row-major,
//     with a leading dimension (ld*) in elements.
//   - Nothing here allocates or synchronises: scratch comes from a workspace sized at reserve(),
//     and every launch is on `stream`, so a step can be captured into a CUDA graph. Sizes
//     passed as host values (n_tokens, n_decode) are fixed for a captured step shape; what
//     varies between replays (ids, positions, sequence ids) is read from device memory.
//   - Determinism: tokens [0, n_decode) of a call are decode tokens (one per sequence, its next
//     token) and take the small-batch kernels; the others are prompt tokens and take the
//     tensor-core / tiled kernels. Within each path a token's result is computed in an order
//     that does not depend on n_tokens or on the other tokens, so a request's greedy output is
//     the same alone or beside others.
//   - A padding token (seq id -1, used to round a decode batch up to a captured size) writes
//     nothing to the KV cache; its outputs are unspecified but finite.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>

#include "core/dtype.h"
#include "engine/tensor.h"

namespace velocity::engine::cuda {

// ---- Weights (matmul.cu) ---------------------------------------------------------------------
// Weight types the matrix products read (every type the CPU backend computes).
bool matmul_supports(DType type);
// The CUDA layout of a 2-D or 3-D weight: `stride` bytes per row (Weight::stride; a matrix of
// n_out rows is n_out * stride bytes, matrices one after another). The GGUF layout itself when
// stride == dtype_row_bytes(type, n_in).
int64_t weight_stride(DType type, int64_t n_in);
// Converts n_rows GGUF rows (host memory) to the CUDA layout (host memory, n_rows * stride
// bytes), ready to be copied to the device.
void to_weight_layout(DType type, int64_t n_in, int64_t n_rows, const uint8_t* gguf, uint8_t* out);

// ---- Matrix products (matmul*.cu) ------------------------------------------------------------
// Device scratch for the activations in the form the kernels read them (e.g. F16 or Q8 blocks),
// for up to max_tokens rows of up to max_n_in inputs (expert calls: max_tokens * k rows).
class MatmulWorkspace {
 public:
  virtual ~MatmulWorkspace() = default;
};
std::unique_ptr<MatmulWorkspace> make_matmul_workspace(int64_t max_rows, int64_t max_n_in);
// The device bytes make_matmul_workspace allocates (for the memory check before loading).
uint64_t matmul_workspace_bytes(int64_t max_rows, int64_t max_n_in);

// y[t, r] = sum_i W[r, i] x[t, i] for t < n_tokens, r < w.n_out (w.n_mat == 1, CUDA layout).
void matmul(const Weight& w, const float* x, int64_t ldx, int64_t n_tokens, int64_t n_decode, float* y,
            int64_t ldy, MatmulWorkspace& ws, cudaStream_t stream);
// Several products of one input (Q, K and V; gate and up): x converted once for all of them.
// Every weight takes the same n_in.
struct MatmulOut {
  const Weight* w = nullptr;
  float* y = nullptr;
  int64_t ldy = 0;
  bool accumulate = false;  // y += the product (a residual add fused; the same bits as add())
};
// What the products' input is made from, fused into the activation converter (the same bits as
// the separate kernel, one pass over memory and one launch fewer): x itself, rms_norm(x) * norm_w
// (rms_norm()), or silu(gate) * x (swiglu() with x as up). Only for weights where
// matmul_fuses() holds.
struct MatmulPrologue {
  const float* norm_w = nullptr;  // F32 [n_in]
  float norm_eps = 0.0f;
  const float* gate = nullptr;  // [n_tokens, ldgate]
  int64_t ldgate = 0;
};
void matmul(std::span<const MatmulOut> outs, const float* x, int64_t ldx, int64_t n_tokens, int64_t n_decode,
            MatmulWorkspace& ws, cudaStream_t stream, const MatmulPrologue& prologue = {});
// Whether a product with this weight takes a prologue (its input goes through the converter).
bool matmul_fuses(const Weight& w);
// Whether decode tokens of this type multiply int8 activations (per token and 256 inputs a float
// scale, rounded as the CPU backend's Q8_K: |x - d q| <= d / 2 with d = amax / 127) rather than
// x rounded to f16 (relative 2^-11). The error bound of a decode product follows from it.
bool matmul_decode_int8(DType type);

// Expert products (w 3-D, n_mat experts): for t < n_tokens, j < k,
//   y[t*k + j, r] = sum_i W_e[r, i] x[row, i],  e = ids[t*k + j],  row = x_per_slot ? t*k + j : t.
// ids in [0, n_mat) (device memory). Tokens [0, n_decode) are decode tokens as above.
void matmul_ids(const Weight& w, const int32_t* ids, int64_t k, const float* x, int64_t ldx, bool x_per_slot,
                int64_t n_tokens, int64_t n_decode, float* y, int64_t ldy, MatmulWorkspace& ws, cudaStream_t stream);

// out[t, :] = row ids[t] of w dequantised to F32 (the embedding lookup; ids in [0, n_out * n_mat)).
void get_rows(const Weight& w, const int32_t* ids, int64_t n, float* out, int64_t ldo, cudaStream_t stream);

// ---- KV cache and attention (attention*.cu) --------------------------------------------------
// Cache element types attention reads: F32, F16, Q8_0, Q4_0, Q4_1, Q5_1 (K and V separately).
bool kv_cache_supports(DType type);

// One layer's cache: rows [slot][kv_head][pos] of head_dim elements in the cache type.
struct KvLayer {
  uint8_t* k = nullptr;
  uint8_t* v = nullptr;
  DType type_k = DType::F16, type_v = DType::F16;
  int64_t n_slots = 0, n_ctx = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
  int64_t k_row_bytes() const { return dtype_row_bytes(type_k, head_dim_k); }
  int64_t v_row_bytes() const { return dtype_row_bytes(type_v, head_dim_v); }
  uint64_t bytes() const {
    return static_cast<uint64_t>(n_slots * n_head_kv * n_ctx) * static_cast<uint64_t>(k_row_bytes() + v_row_bytes());
  }
};

// Scratch for split-KV decode (partial outputs, maxima, sums) and the prompt kernel.
class AttentionWorkspace {
 public:
  virtual ~AttentionWorkspace() = default;
};
std::unique_ptr<AttentionWorkspace> make_attention_workspace(int64_t max_tokens, int64_t n_head, int64_t n_ctx,
                                                             int64_t head_dim_v);
// The device bytes make_attention_workspace allocates.
uint64_t attention_workspace_bytes(int64_t max_tokens, int64_t n_head, int64_t n_ctx, int64_t head_dim_v);

// Stores k [T, Hkv*Dk] and v [T, Hkv*Dv] at each token's (seq, position), quantised to the cache
// types; tokens with seq id -1 are skipped.
void kv_store(const KvLayer& cache, const float* k, int64_t ldk, const float* v, int64_t ldv,
              const int32_t* positions, const int32_t* seq_ids, int64_t n_tokens, cudaStream_t stream);

// out[t, h] = softmax_j(scale * q[t, h] . K_j) V_j over j in [lo, positions[t]] of seq_ids[t]'s
// cache, for the n_head query heads (GQA: head h reads KV head h / (n_head / n_head_kv)).
// q [T, H*Dk], out [T, H*Dv]. Head dims 64, 80, 96, 128, 256 (and any multiple of 32 that the
// cache type's block divides, more slowly). Options (gpt-oss): window > 0 keeps the last
// `window` positions (lo = max(0, pos - window + 1), else lo = 0); sinks (device, F32 [n_head],
// or null) adds one logit per head to the softmax's denominator (a sink that takes probability
// mass and contributes no value).
struct AttentionOptions {
  int64_t window = 0;
  const float* sinks = nullptr;
};
void attention(const KvLayer& cache, const float* q, int64_t ldq, int64_t n_head, float scale,
               const int32_t* positions, const int32_t* seq_ids, int64_t n_tokens, int64_t n_decode, float* out,
               int64_t ldo, AttentionWorkspace& ws, cudaStream_t stream, const AttentionOptions& options = {});

// Positions [0, n) of slot src copied to slot dst (prefix sharing).
void kv_copy_sequence(const KvLayer& cache, int32_t src, int32_t dst, int64_t n, cudaStream_t stream);

// ---- Elementwise (elementwise.cu) ------------------------------------------------------------
// out[t] = x[t] / rms(x[t]) * w[n] (w may be null)
void rms_norm(const float* x, int64_t ldx, const float* w, float eps, int64_t n_rows, int64_t n, float* out,
              int64_t ldo, cudaStream_t stream);
// Per head of head_dim, in place: x[t, h] = x[t, h] / rms(x[t, h]) * w[head_dim]
void rms_norm_heads(float* x, int64_t ldx, int64_t n_rows, int64_t n_heads, int64_t head_dim, const float* w,
                    float eps, cudaStream_t stream);
enum class RopeKind { Normal, Neox };
// YaRN (engine::RopeParams' yarn fields; factor 0: off): pair i's frequency blends the
// interpolated and the extrapolated one (engine::rope_inv_freq, computed the same way in double),
// and cos and sin are multiplied by attn_factor.
struct RopeYarn {
  double factor = 0;
  int64_t orig_ctx = 0;
  double beta_fast = 32, beta_slow = 1;
  bool truncate = true;
  double attn_factor = 1;
};
// Rotary embedding in place on every head of x [T, n_heads * head_dim] at positions[t]:
// theta_i = pos * freq_scale * base^(-2i/n_rot) / factors[i] (factors may be null); with YaRN
// (yarn.factor > 0) the frequency of rope_inv_freq instead of freq_scale * base^(-2i/n_rot).
void rope(float* x, int64_t ldx, int64_t n_rows, int64_t n_heads, int64_t head_dim, int64_t n_rot, RopeKind kind,
          float freq_base, float freq_scale, const float* factors, const int32_t* positions, cudaStream_t stream,
          const RopeYarn& yarn = {});
// rope on the heads of x and of x2 (same rows and positions) in one launch: Q and K.
void rope2(float* x, int64_t ldx, int64_t n_heads, float* x2, int64_t ldx2, int64_t n_heads2, int64_t n_rows,
           int64_t head_dim, int64_t n_rot, RopeKind kind, float freq_base, float freq_scale, const float* factors,
           const int32_t* positions, cudaStream_t stream, const RopeYarn& yarn = {});
// out = silu(gate) * up; out may alias gate
void swiglu(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t n_rows, int64_t n, float* out,
            int64_t ldo, cudaStream_t stream);
// gpt-oss's clamped variant: g = min(gate, limit), u = clamp(up, -limit, limit),
// out = (u + 1) * g / (1 + exp(-alpha g)); out may alias gate
void swiglu_clamped(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t n_rows, int64_t n,
                    float alpha, float limit, float* out, int64_t ldo, cudaStream_t stream);
// x += y
void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t n_rows, int64_t n, cudaStream_t stream);
// y[t] += b
void add_bias(float* y, int64_t ldy, const float* b, int64_t n_rows, int64_t n, cudaStream_t stream);
// y[i] += table[ids[i]] for i < n_rows (a per-expert bias: table [n_expert][n] F32 rows of ldt;
// ids of the (token, slot) pairs, valid expert ids)
void add_bias_ids(float* y, int64_t ldy, const float* table, int64_t ldt, const int32_t* ids, int64_t n_rows,
                  int64_t n, cudaStream_t stream);
// out[i] = x[rows[i]] for i < n_rows
void gather_rows(const float* x, int64_t ldx, const int32_t* rows, int64_t n_rows, int64_t n, float* out,
                 int64_t ldo, cudaStream_t stream);
// tokens[i] = argmax of logits row i (lowest id among ties), or -1 when the row holds a NaN or
// +inf or is all -inf (the sampler's errors).
void argmax_rows(const float* logits, int64_t ld, int64_t n_rows, int64_t n, int32_t* tokens, cudaStream_t stream);
// MoE routing: softmax over the E logits of each row, the k largest (ties to the lower id),
// weights renormalised to sum 1 when normalize. ids, weights: [T, k].
void moe_route(const float* logits, int64_t ld, int64_t n_rows, int64_t n_expert, int64_t k, bool normalize,
               int32_t* ids, float* weights, cudaStream_t stream);
// out[t] = sum_j weights[t, j] * y[t*k + j] for the k expert outputs y [T*k, n]
void moe_combine(const float* y, int64_t ldy, const float* weights, int64_t n_rows, int64_t k, int64_t n, float* out,
                 int64_t ldo, cudaStream_t stream);

// ---- Testing ------------------------------------------------------------------------------
// Makes the device fault on purpose (an illegal address): the context becomes unusable, as after
// a real hardware or kernel fault. For the fault-handling tests (VELOCITY_CUDA_FAULT_AFTER_STEPS).
void inject_fault(cudaStream_t stream);

}  // namespace velocity::engine::cuda
