// Elementwise and row-wise ops of the CUDA backend: RMSNorm (whole rows and per head), RoPE,
// SwiGLU, adds, row gathers, argmax over logits rows, MoE routing and combining. Each moves a
// few bytes per element; what matters is one pass over memory and no launch per row.
#include <cfloat>
#include <cmath>

#include "engine/cuda/common.cuh"
#include "engine/cuda/kernels.h"

namespace velocity::engine::cuda {

namespace {

// x (n_rows, n) -> out (n_rows, n): out = x / sqrt(mean(x^2) + eps) * w. One block of
// kRmsThreads per row.
__global__ void __launch_bounds__(kRmsThreads) rms_norm_kernel(const float* x, int64_t ldx, const float* w, float eps,
                                                               int64_t n, float* out, int64_t ldo) {
  __shared__ float shared[32];
  const float* xr = x + blockIdx.x * ldx;
  float* o = out + blockIdx.x * ldo;
  const float s = row_rms_scale(xr, n, eps, shared);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = w ? xr[i] * s * w[i] : xr[i] * s;
}

// x (n_rows, n_heads * head_dim), in place per head. One warp per (row, head).
__global__ void rms_norm_heads_kernel(float* x, int64_t ldx, int64_t n_rows, int64_t n_heads, int64_t head_dim,
                                      const float* w, float eps) {
  const int64_t job = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (job >= n_rows * n_heads) return;
  const int lane = threadIdx.x % 32;
  float* xh = x + (job / n_heads) * ldx + (job % n_heads) * head_dim;
  float ss = 0;
  for (int64_t i = lane; i < head_dim; i += 32) ss += xh[i] * xh[i];
  ss = warp_sum(ss);
  const float s = rsqrtf(ss / static_cast<float>(head_dim) + eps);
  for (int64_t i = lane; i < head_dim; i += 32) xh[i] = xh[i] * s * w[i];
}

// One block per row: the angle of each pair i in double (positions reach 10^5, where float
// angles would be off by 10^-2 radians), once per row into shared memory, then every head's
// pairs rotated in float by the whole block. Pairs are (2i, 2i+1) (normal) or (i, i + n_rot/2)
// (neox); every head of the row uses the same angle. (A thread per (row, pair) looping over the
// heads left a decode step with 64 threads: 12 us a call on an H100, ncu.)
constexpr int kRopeThreads = 256;
// The heads of x and then those of x2 (n_heads2 may be 0): Q and K rotated in one launch.
__global__ void __launch_bounds__(kRopeThreads)
    rope_kernel(float* x, int64_t ldx, int64_t n_heads, float* x2, int64_t ldx2, int64_t n_heads2, int64_t head_dim,
                int64_t n_rot, bool neox, float freq_base, float freq_scale, const float* factors,
                const int32_t* positions, const RopeYarn yarn) {
  extern __shared__ float cs[];  // [half][2]: cos, sin
  const int64_t half = n_rot / 2, t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < half; i += kRopeThreads) {
    // engine::rope_inv_freq, step for step
    const double nr = static_cast<double>(n_rot), base = static_cast<double>(freq_base);
    const double extrapolated = pow(base, -2.0 * static_cast<double>(i) / nr);
    double inv_freq = extrapolated * static_cast<double>(freq_scale);
    if (yarn.factor != 0) {
      constexpr double kPi = 3.14159265358979323846;
      const double ln_base = log(base), ctx = static_cast<double>(yarn.orig_ctx);
      double low = nr * log(ctx / (yarn.beta_fast * 2 * kPi)) / (2 * ln_base);
      double high = nr * log(ctx / (yarn.beta_slow * 2 * kPi)) / (2 * ln_base);
      if (yarn.truncate) low = floor(low), high = ceil(high);
      low = fmax(low, 0.0);
      high = fmin(high, nr - 1);
      if (low == high) high += 0.001;
      const double ramp = fmin(fmax((static_cast<double>(i) - low) / (high - low), 0.0), 1.0);
      inv_freq = extrapolated / yarn.factor * ramp + extrapolated * (1 - ramp);
    }
    if (factors) inv_freq /= static_cast<double>(factors[i]);
    const double theta = static_cast<double>(positions[t]) * inv_freq;
    double sd, cd;
    sincos(theta, &sd, &cd);
    cs[2 * i] = static_cast<float>(cd * yarn.attn_factor);
    cs[2 * i + 1] = static_cast<float>(sd * yarn.attn_factor);
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < (n_heads + n_heads2) * half; j += kRopeThreads) {
    const int64_t h = j / half, i = j % half;
    const float c = cs[2 * i], s = cs[2 * i + 1];
    const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float* xh = h < n_heads ? x + t * ldx + h * head_dim : x2 + t * ldx2 + (h - n_heads) * head_dim;
    const float x0 = xh[a], x1 = xh[b];
    xh[a] = x0 * c - x1 * s;
    xh[b] = x0 * s + x1 * c;
  }
}

__global__ void swiglu_kernel(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t n_rows, int64_t n,
                              float* out, int64_t ldo) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * n) return;
  const int64_t t = idx / n, i = idx % n;
  const float g = gate[t * ldg + i];
  out[t * ldo + i] = swiglu_value(g, up[t * ldu + i]);
}

__global__ void swiglu_clamped_kernel(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t n_rows,
                                      int64_t n, float alpha, float limit, float* out, int64_t ldo) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * n) return;
  const int64_t t = idx / n, i = idx % n;
  const float g = fminf(gate[t * ldg + i], limit), u = fminf(fmaxf(up[t * ldu + i], -limit), limit);
  out[t * ldo + i] = (u + 1.0f) * (g / (1.0f + expf(-alpha * g)));
}

__global__ void add_bias_ids_kernel(float* y, int64_t ldy, const float* table, int64_t ldt, const int32_t* ids,
                                    int64_t n_rows, int64_t n) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * n) return;
  const int64_t r = idx / n, i = idx % n;
  y[r * ldy + i] += table[static_cast<int64_t>(ids[r]) * ldt + i];
}

__global__ void add_kernel(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t n_rows, int64_t n) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * n) return;
  const int64_t t = idx / n, i = idx % n;
  x[t * ldx + i] += y[t * ldy + i];
}

__global__ void add_bias_kernel(float* y, int64_t ldy, const float* b, int64_t n_rows, int64_t n) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * n) return;
  y[(idx / n) * ldy + idx % n] += b[idx % n];
}

__global__ void gather_rows_kernel(const float* x, int64_t ldx, const int32_t* rows, int64_t n, float* out,
                                   int64_t ldo) {
  const float* src = x + static_cast<int64_t>(rows[blockIdx.x]) * ldx;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * ldo;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

// One block per row. (value, index) pairs reduce to the larger value, the lower index on ties;
// a NaN or +inf anywhere, or a row of -inf only, gives -1 (Sampler::sample raises there).
__global__ void argmax_kernel(const float* logits, int64_t ld, int64_t n, int32_t* tokens) {
  __shared__ float best_v[32];
  __shared__ int32_t best_i[32];
  __shared__ int bad_any;
  if (threadIdx.x == 0) bad_any = 0;
  __syncthreads();
  const float* row = logits + blockIdx.x * ld;
  float v = -INFINITY;
  int32_t idx = INT32_MAX;
  bool bad = false;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float x = row[i];
    if (isnan(x) || x == INFINITY) bad = true;
    if (x > v || (x == v && static_cast<int32_t>(i) < idx && x != -INFINITY)) {
      v = x;
      idx = static_cast<int32_t>(i);
    }
  }
  if (bad) atomicOr(&bad_any, 1);
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > v || (ov == v && oi < idx)) {
      v = ov;
      idx = oi;
    }
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    best_v[warp] = v;
    best_i[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    v = lane < blockDim.x / 32 ? best_v[lane] : -INFINITY;
    idx = lane < blockDim.x / 32 ? best_i[lane] : INT32_MAX;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
      if (ov > v || (ov == v && oi < idx)) {
        v = ov;
        idx = oi;
      }
    }
    if (lane == 0) tokens[blockIdx.x] = (bad_any || v == -INFINITY || idx == INT32_MAX) ? -1 : idx;
  }
}

// One warp per row: softmax over n_expert logits (max-subtracted, f32), then k rounds of argmax
// over the experts not yet taken (ties to the lower id), weights renormalised if asked.
__global__ void moe_route_kernel(const float* logits, int64_t ld, int64_t n_rows, int64_t n_expert, int64_t k,
                                 bool normalize, int32_t* ids, float* weights) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= n_rows) return;
  const int lane = threadIdx.x % 32;
  const float* l = logits + row * ld;
  float mx = -INFINITY;
  for (int64_t e = lane; e < n_expert; e += 32) mx = fmaxf(mx, l[e]);
  mx = warp_max(mx);
  float sum = 0;
  for (int64_t e = lane; e < n_expert; e += 32) sum += expf(l[e] - mx);
  sum = warp_sum(sum);
  // Taken experts are remembered as a bit per expert in registers (n_expert <= 32 * 32).
  uint32_t taken = 0;  // bit j: expert lane + 32 j taken
  float picked = 0;
  for (int64_t j = 0; j < k; ++j) {
    float v = -INFINITY;
    int32_t idx = INT32_MAX;
    for (int64_t e = lane, b = 0; e < n_expert; e += 32, ++b) {
      if (taken & (1u << b)) continue;
      const float x = l[e];
      if (x > v || (x == v && e < idx)) {
        v = x;
        idx = static_cast<int32_t>(e);
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
      if (ov > v || (ov == v && oi < idx)) {
        v = ov;
        idx = oi;
      }
    }
    if (idx % 32 == lane) taken |= 1u << (idx / 32);
    const float p = expf(v - mx) / sum;
    picked += p;
    if (lane == 0) {
      ids[row * k + j] = idx;
      weights[row * k + j] = p;
    }
  }
  if (normalize) {
    __syncwarp();
    for (int64_t j = lane; j < k; j += 32) weights[row * k + j] /= picked;
  }
}

__global__ void moe_combine_kernel(const float* y, int64_t ldy, const float* weights, int64_t n_rows, int64_t k,
                                   int64_t n, float* out, int64_t ldo) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * n) return;
  const int64_t t = idx / n, i = idx % n;
  float acc = 0;
  for (int64_t j = 0; j < k; ++j) acc += weights[t * k + j] * y[(t * k + j) * ldy + i];
  out[t * ldo + i] = acc;
}

__global__ void fault_kernel(volatile int* p) { *p = 1; }

unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>(ceil_div(n, threads)); }

}  // namespace

void rms_norm(const float* x, int64_t ldx, const float* w, float eps, int64_t n_rows, int64_t n, float* out,
              int64_t ldo, cudaStream_t stream) {
  if (n_rows == 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(n_rows), kRmsThreads, 0, stream>>>(x, ldx, w, eps, n, out, ldo);
  VELOCITY_CUDA_LAUNCHED();
}

void rms_norm_heads(float* x, int64_t ldx, int64_t n_rows, int64_t n_heads, int64_t head_dim, const float* w,
                    float eps, cudaStream_t stream) {
  const int64_t jobs = n_rows * n_heads;
  if (jobs == 0) return;
  rms_norm_heads_kernel<<<blocks_for(jobs, 8), 256, 0, stream>>>(x, ldx, n_rows, n_heads, head_dim, w, eps);
  VELOCITY_CUDA_LAUNCHED();
}

void rope(float* x, int64_t ldx, int64_t n_rows, int64_t n_heads, int64_t head_dim, int64_t n_rot, RopeKind kind,
          float freq_base, float freq_scale, const float* factors, const int32_t* positions, cudaStream_t stream,
          const RopeYarn& yarn) {
  rope2(x, ldx, n_heads, nullptr, 0, 0, n_rows, head_dim, n_rot, kind, freq_base, freq_scale, factors, positions,
        stream, yarn);
}

void rope2(float* x, int64_t ldx, int64_t n_heads, float* x2, int64_t ldx2, int64_t n_heads2, int64_t n_rows,
           int64_t head_dim, int64_t n_rot, RopeKind kind, float freq_base, float freq_scale, const float* factors,
           const int32_t* positions, cudaStream_t stream, const RopeYarn& yarn) {
  if (n_rows == 0 || n_rot < 2) return;
  rope_kernel<<<static_cast<unsigned>(n_rows), kRopeThreads, sizeof(float) * static_cast<size_t>(n_rot), stream>>>(
      x, ldx, n_heads, x2, ldx2, x2 != nullptr ? n_heads2 : 0, head_dim, n_rot, kind == RopeKind::Neox, freq_base,
      freq_scale, factors, positions, yarn);
  VELOCITY_CUDA_LAUNCHED();
}

void swiglu(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t n_rows, int64_t n, float* out,
            int64_t ldo, cudaStream_t stream) {
  if (n_rows * n == 0) return;
  swiglu_kernel<<<blocks_for(n_rows * n, 256), 256, 0, stream>>>(gate, ldg, up, ldu, n_rows, n, out, ldo);
  VELOCITY_CUDA_LAUNCHED();
}

void swiglu_clamped(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t n_rows, int64_t n,
                    float alpha, float limit, float* out, int64_t ldo, cudaStream_t stream) {
  if (n_rows * n == 0) return;
  swiglu_clamped_kernel<<<blocks_for(n_rows * n, 256), 256, 0, stream>>>(gate, ldg, up, ldu, n_rows, n, alpha, limit,
                                                                          out, ldo);
  VELOCITY_CUDA_LAUNCHED();
}

void add_bias_ids(float* y, int64_t ldy, const float* table, int64_t ldt, const int32_t* ids, int64_t n_rows,
                  int64_t n, cudaStream_t stream) {
  if (n_rows * n == 0) return;
  add_bias_ids_kernel<<<blocks_for(n_rows * n, 256), 256, 0, stream>>>(y, ldy, table, ldt, ids, n_rows, n);
  VELOCITY_CUDA_LAUNCHED();
}

void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t n_rows, int64_t n, cudaStream_t stream) {
  if (n_rows * n == 0) return;
  add_kernel<<<blocks_for(n_rows * n, 256), 256, 0, stream>>>(x, ldx, y, ldy, n_rows, n);
  VELOCITY_CUDA_LAUNCHED();
}

void add_bias(float* y, int64_t ldy, const float* b, int64_t n_rows, int64_t n, cudaStream_t stream) {
  if (n_rows * n == 0) return;
  add_bias_kernel<<<blocks_for(n_rows * n, 256), 256, 0, stream>>>(y, ldy, b, n_rows, n);
  VELOCITY_CUDA_LAUNCHED();
}

void gather_rows(const float* x, int64_t ldx, const int32_t* rows, int64_t n_rows, int64_t n, float* out, int64_t ldo,
                 cudaStream_t stream) {
  if (n_rows == 0) return;
  gather_rows_kernel<<<static_cast<unsigned>(n_rows), 256, 0, stream>>>(x, ldx, rows, n, out, ldo);
  VELOCITY_CUDA_LAUNCHED();
}

void argmax_rows(const float* logits, int64_t ld, int64_t n_rows, int64_t n, int32_t* tokens, cudaStream_t stream) {
  if (n_rows == 0) return;
  argmax_kernel<<<static_cast<unsigned>(n_rows), 1024, 0, stream>>>(logits, ld, n, tokens);
  VELOCITY_CUDA_LAUNCHED();
}

void moe_route(const float* logits, int64_t ld, int64_t n_rows, int64_t n_expert, int64_t k, bool normalize,
               int32_t* ids, float* weights, cudaStream_t stream) {
  VELOCITY_CUDA_CHECK(n_expert <= 32 * 32 && k <= n_expert, "moe_route: at most 1024 experts and k <= experts");
  if (n_rows == 0) return;
  moe_route_kernel<<<blocks_for(n_rows, 4), 128, 0, stream>>>(logits, ld, n_rows, n_expert, k, normalize, ids,
                                                              weights);
  VELOCITY_CUDA_LAUNCHED();
}

void moe_combine(const float* y, int64_t ldy, const float* weights, int64_t n_rows, int64_t k, int64_t n, float* out,
                 int64_t ldo, cudaStream_t stream) {
  if (n_rows * n == 0) return;
  moe_combine_kernel<<<blocks_for(n_rows * n, 256), 256, 0, stream>>>(y, ldy, weights, n_rows, k, n, out, ldo);
  VELOCITY_CUDA_LAUNCHED();
}

void inject_fault(cudaStream_t stream) {
  // An address no allocation can have: the kernel faults with cudaErrorIllegalAddress.
  fault_kernel<<<1, 1, 0, stream>>>(reinterpret_cast<volatile int*>(uintptr_t{8}));
  VELOCITY_CUDA_LAUNCHED();
}

}  // namespace velocity::engine::cuda
