// attention(): which kernel serves which tokens, the workspace, and the generic kernel.
//
// Decode tokens [0, n_decode) go to the split-KV decode kernel (attention_decode.cu), prompt
// tokens to the tiled tensor-core kernel (attention_prompt.cu), both instantiated per head dim
// (64, 80, 96, 128, 256) and serving every pair of cache types. Anything else — other head dims,
// K and V head dims that differ, a cache whose (slot, head) runs are not 16-byte aligned (n_ctx *
// row bytes not a multiple of 16), a layout that does not fit the device's shared memory — goes
// to the generic kernel below: one block per (token, query head), f32 arithmetic on CUDA cores,
// correct for any of those and much slower. The choice depends only on the cache's shape and the
// device, never on the batch, so the determinism rule holds on every path.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

#include "engine/cuda/attention_common.cuh"

namespace velocity::engine::cuda {

namespace attn {

namespace {

constexpr int kGenericThreads = 128;
constexpr int kGenericMaxDk = 1024;
constexpr int kGenericMaxDv = 512;
// Partial outputs held by one decode launch; more decode tokens than fit take several launches
// (Llama-3-8B: 126 tokens at n_ctx 8192, 31 at 32768).
constexpr int64_t kPartialBudgetBytes = 64ll << 20;

int kind_of(DType t) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::Q8_0: return kQ8_0;
    case DType::Q4_0: return kQ4_0;
    case DType::Q4_1: return kQ4_1;
    case DType::Q5_1: return kQ5_1;
    default: break;
  }
  throw_error(
      (std::string("KV cache type ") + std::string(dtype_name(t)) + " is not supported by CUDA attention").c_str());
}

// One element of a cache row (any supported type), as the reference dequantiser gives it.
__device__ __forceinline__ float cache_elem(int kind, const uint8_t* row, int e) {
  switch (kind) {
    case kF32: return reinterpret_cast<const float*>(row)[e];
    case kF16: return ld_half(row + 2 * e);
    case kQ8_0: {
      const uint8_t* b = row + (e >> 5) * 34;
      return static_cast<float>(static_cast<int8_t>(b[2 + (e & 31)])) * ld_half(b);
    }
    case kQ4_0: {
      const uint8_t* b = row + (e >> 5) * 18;
      const int j = e & 31;
      const int q = (b[2 + (j & 15)] >> (j >= 16 ? 4 : 0)) & 0xF;
      return static_cast<float>(q - 8) * ld_half(b);
    }
    case kQ4_1: {
      const uint8_t* b = row + (e >> 5) * 20;
      const int j = e & 31;
      const int q = (b[4 + (j & 15)] >> (j >= 16 ? 4 : 0)) & 0xF;
      return static_cast<float>(q) * ld_half(b) + ld_half(b + 2);
    }
    default: {  // Q5_1
      const uint8_t* b = row + (e >> 5) * 24;
      const int j = e & 31;
      const uint32_t qh = ld_u16(b + 4) | ld_u16(b + 6) << 16;
      const int q = ((b[8 + (j & 15)] >> (j >= 16 ? 4 : 0)) & 0xF) | static_cast<int>((qh >> j) & 1u) << 4;
      return static_cast<float>(q) * ld_half(b) + ld_half(b + 2);
    }
  }
}

// Tokens [t_begin, t_begin + gridDim.x), query head blockIdx.y: q [T, H * dk] -> out [T, H * dv].
// 128 positions at a time: each thread one score (a full dot product), the block's max and sum,
// then each thread a few output dims over those positions. block 128.
__global__ void __launch_bounds__(kGenericThreads) generic_kernel(const Launch a, int dk, int dv, int t_begin) {
  __shared__ float s_q[kGenericMaxDk];
  __shared__ float s_p[kGenericThreads];
  __shared__ float s_red[2][kGenericThreads / 32];
  const int t = t_begin + blockIdx.x, h = blockIdx.y, hk = h / a.group;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int seq = a.seq_ids[t], pos = a.positions[t];
  float* out = a.out + static_cast<int64_t>(t) * a.ldo + static_cast<int64_t>(h) * dv;
  if (seq < 0 || seq >= a.n_slots || pos < 0 || pos >= a.n_ctx) {
    for (int d = tid; d < dv; d += kGenericThreads) out[d] = 0.0f;
    return;
  }
  const float* q = a.q + static_cast<int64_t>(t) * a.ldq + static_cast<int64_t>(h) * dk;
  for (int e = tid; e < dk; e += kGenericThreads) s_q[e] = q[e] * a.q_scale;
  const int64_t run_row = (static_cast<int64_t>(seq) * a.n_head_kv + hk) * a.n_ctx;
  const uint8_t* run_k = a.k.base + run_row * a.k.row_bytes;
  const uint8_t* run_v = a.v.base + run_row * a.v.row_bytes;
  constexpr int kPerThread = kGenericMaxDv / kGenericThreads;
  float o[kPerThread] = {};
  float m = -INFINITY, l = 0.0f;
  __syncthreads();
  for (int j0 = first_position(a, pos); j0 <= pos; j0 += kGenericThreads) {
    const int j = j0 + tid;
    float s = -INFINITY;
    if (j <= pos) {
      const uint8_t* kr = run_k + static_cast<int64_t>(j) * a.k.row_bytes;
      float acc = 0.0f;
      for (int e = 0; e < dk; ++e) acc += s_q[e] * cache_elem(a.k.kind, kr, e);
      s = acc;
    }
    float bm = warp_max(s);
    if (lane == 0) s_red[0][warp] = bm;
    __syncthreads();
    bm = s_red[0][0];
    for (int w = 1; w < kGenericThreads / 32; ++w) bm = fmaxf(bm, s_red[0][w]);
    const float mn = fmaxf(m, bm);  // finite: position j0 <= pos is in this group
    const float alpha = exp2f(m - mn);
    const float p = j <= pos ? exp2f(s - mn) : 0.0f;
    s_p[tid] = p;
    float bs = warp_sum(p);
    if (lane == 0) s_red[1][warp] = bs;
    __syncthreads();
    bs = s_red[1][0];
    for (int w = 1; w < kGenericThreads / 32; ++w) bs += s_red[1][w];
    l = l * alpha + bs;
    m = mn;
    const int n = min(kGenericThreads, pos + 1 - j0);
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int d = tid + kGenericThreads * i;
      if (d < dv) {
        float acc = o[i] * alpha;
        for (int jj = 0; jj < n; ++jj)
          acc += s_p[jj] * cache_elem(a.v.kind, run_v + static_cast<int64_t>(j0 + jj) * a.v.row_bytes, d);
        o[i] = acc;
      }
    }
    __syncthreads();  // s_p and s_red are rewritten by the next group
  }
  const float denom = l + sink_weight(a, h, m);
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int d = tid + kGenericThreads * i;
    if (d < dv) out[d] = o[i] / denom;
  }
}

void launch_generic(const Launch& a, int dk, int dv, int t_begin, int t_end, cudaStream_t stream) {
  if (t_end <= t_begin) return;
  const dim3 grid(static_cast<unsigned>(t_end - t_begin), static_cast<unsigned>(a.n_head));
  generic_kernel<<<grid, kGenericThreads, 0, stream>>>(a, dk, dv, t_begin);
  VELOCITY_CUDA_LAUNCHED();
}

// Shared memory layout of a fast kernel for head dim d; false when it does not fit max_smem.
// [misc 1 KiB][Q tile (d = 256)][stage 0: K, V][stage 1: K, V][K f16][V f16]; the decode kernel
// reuses everything after misc for the merge of its warps.
bool plan_layout(Launch& a, int d, bool prompt, int max_smem) {
  const int nt = tile_positions(d);
  const int tile16 = nt * tile_row_halves(d) * 2;
  auto round16 = [](int x) { return (x + 15) / 16 * 16; };
  a.k.stage_bytes = a.k.direct ? tile16 : round16(nt * a.k.row_bytes);
  a.v.stage_bytes = a.v.direct ? tile16 : round16(nt * a.v.row_bytes);
  const int q_bytes = d > 128 ? (prompt ? kPromptRows : 16) * tile_row_halves(d) * 2 : 0;
  const int merge_bytes = prompt ? 0 : (nt / 16) * 16 * d * 4;
  for (int stages = 2; stages >= 1; --stages) {
    int off = kMiscBytes;
    a.off_q = off;
    off += q_bytes;
    for (int s = 0; s < stages; ++s) {
      a.off_stage[s][0] = off;
      off += a.k.stage_bytes;
      a.off_stage[s][1] = off;
      off += a.v.stage_bytes;
    }
    if (stages == 1) {  // stage 1 is never used; keep its offsets valid anyway
      a.off_stage[1][0] = a.off_stage[0][0];
      a.off_stage[1][1] = a.off_stage[0][1];
    }
    a.off_k16 = off;
    if (!a.k.direct) off += tile16;
    a.off_v16 = off;
    if (!a.v.direct) off += tile16;
    const int total = std::max(off, kMiscBytes + merge_bytes);
    if (total <= max_smem) {
      a.stages = stages;
      a.smem_bytes = total;
      return true;
    }
  }
  return false;
}

template <int D>
void run_fast(const Launch& base, const Workspace& w, int n_tokens, int n_decode, bool& decode_done, bool& prompt_done,
              cudaStream_t stream) {
  if (n_decode > 0) {
    Launch a = base;
    if (plan_layout(a, D, false, w.max_smem)) {
      for (int t0 = 0; t0 < n_decode; t0 += static_cast<int>(w.tokens_cap)) {
        a.token0 = t0;
        launch_decode<D>(a, static_cast<int>(std::min<int64_t>(w.tokens_cap, n_decode - t0)), stream);
      }
      decode_done = true;
    }
  }
  if (n_tokens > n_decode) {
    Launch a = base;
    if (plan_layout(a, D, true, w.max_smem)) {
      launch_prompt<D>(a, n_decode, n_tokens, stream);
      prompt_done = true;
    }
  }
}

// Decode tokens whose partials one launch holds: all of max_tokens, unless that passes the
// budget (long contexts: n_ctx / kChunk chunks per head).
int64_t partial_tokens(int64_t max_tokens, int64_t n_head, int64_t n_ctx, int64_t head_dim_v) {
  const int64_t per_token = n_head * ceil_div(n_ctx, kChunk) * (head_dim_v * 4 + 8);
  return std::max<int64_t>(1, std::min<int64_t>({max_tokens, kPartialBudgetBytes / per_token, 65535}));
}

}  // namespace

uint64_t workspace_bytes(int64_t max_tokens, int64_t n_head, int64_t n_ctx, int64_t head_dim_v) {
  const int64_t tokens = partial_tokens(max_tokens, n_head, n_ctx, head_dim_v);
  const int64_t n_chunks = ceil_div(n_ctx, kChunk);
  return static_cast<uint64_t>(tokens * n_head * n_chunks * head_dim_v) * sizeof(float) +
         static_cast<uint64_t>(tokens * n_head * n_chunks) * sizeof(float2) +
         static_cast<uint64_t>(tokens * n_head) * sizeof(unsigned);
}

Workspace::Workspace(int64_t max_tokens, int64_t n_head_, int64_t n_ctx, int64_t head_dim_v_)
    : n_head(n_head_), n_chunks(ceil_div(n_ctx, kChunk)), head_dim_v(head_dim_v_) {
  VELOCITY_CUDA_CHECK(max_tokens > 0 && n_head_ > 0 && n_ctx > 0 && head_dim_v_ > 0,
                      "attention workspace: sizes must be positive");
  tokens_cap = partial_tokens(max_tokens, n_head, n_ctx, head_dim_v);
  int device = 0;
  VELOCITY_CUDA(cudaGetDevice(&device));
  VELOCITY_CUDA(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  try {
    VELOCITY_CUDA(cudaMalloc(&d_o, static_cast<size_t>(tokens_cap * n_head * n_chunks * head_dim_v) * sizeof(float)));
    VELOCITY_CUDA(cudaMalloc(&d_ml, static_cast<size_t>(tokens_cap * n_head * n_chunks) * sizeof(float2)));
    VELOCITY_CUDA(cudaMalloc(&d_counters, static_cast<size_t>(tokens_cap * n_head) * sizeof(unsigned)));
    // The counters start at zero and every call leaves them at zero.
    VELOCITY_CUDA(cudaMemset(d_counters, 0, static_cast<size_t>(tokens_cap * n_head) * sizeof(unsigned)));
    VELOCITY_CUDA(cudaDeviceSynchronize());
    allow_decode_smem(max_smem);
    allow_prompt_smem(max_smem);
  } catch (...) {
    cudaFree(d_o);
    cudaFree(d_ml);
    cudaFree(d_counters);
    throw;
  }
}

Workspace::~Workspace() {
  cudaFree(d_o);  // errors ignored: a destructor does not throw, and a faulted device frees nothing
  cudaFree(d_ml);
  cudaFree(d_counters);
}

}  // namespace attn

std::unique_ptr<AttentionWorkspace> make_attention_workspace(int64_t max_tokens, int64_t n_head, int64_t n_ctx,
                                                             int64_t head_dim_v) {
  return std::make_unique<attn::Workspace>(max_tokens, n_head, n_ctx, head_dim_v);
}

uint64_t attention_workspace_bytes(int64_t max_tokens, int64_t n_head, int64_t n_ctx, int64_t head_dim_v) {
  if (max_tokens <= 0 || n_head <= 0 || n_ctx <= 0 || head_dim_v <= 0) return 0;
  return attn::workspace_bytes(max_tokens, n_head, n_ctx, head_dim_v);
}

void attention(const KvLayer& cache, const float* q, int64_t ldq, int64_t n_head, float scale, const int32_t* positions,
               const int32_t* seq_ids, int64_t n_tokens, int64_t n_decode, float* out, int64_t ldo,
               AttentionWorkspace& ws, cudaStream_t stream, const AttentionOptions& options) {
  using namespace attn;
  VELOCITY_CUDA_CHECK(n_tokens >= 0 && n_decode >= 0 && n_decode <= n_tokens && n_tokens < (1ll << 31),
                      "attention: token counts");
  if (n_tokens == 0) return;
  VELOCITY_CUDA_CHECK(cache.k && cache.v && cache.n_head_kv > 0 && n_head > 0 && n_head % cache.n_head_kv == 0 &&
                          n_head <= 65535 && cache.n_slots > 0 && cache.n_ctx > 0 &&
                          ceil_div(cache.n_ctx, kChunk) <= 65535,
                      "attention: cache and head counts");
  const int64_t dk = cache.head_dim_k, dv = cache.head_dim_v;
  VELOCITY_CUDA_CHECK(
      dk > 0 && dv > 0 && dk % dtype_block_size(cache.type_k) == 0 && dv % dtype_block_size(cache.type_v) == 0,
      "attention: head dims must be whole blocks of the cache types");
  VELOCITY_CUDA_CHECK(ldq >= n_head * dk && ldo >= n_head * dv, "attention: leading dimensions");
  auto* w = dynamic_cast<Workspace*>(&ws);
  VELOCITY_CUDA_CHECK(w != nullptr, "attention: workspace not made by make_attention_workspace");

  Launch a;
  a.k.base = cache.k;
  a.k.kind = kind_of(cache.type_k);
  a.k.row_bytes = static_cast<int>(cache.k_row_bytes());
  a.v.base = cache.v;
  a.v.kind = kind_of(cache.type_v);
  a.v.row_bytes = static_cast<int>(cache.v_row_bytes());
  a.n_slots = static_cast<int>(cache.n_slots);
  a.n_ctx = static_cast<int>(cache.n_ctx);
  a.n_head_kv = static_cast<int>(cache.n_head_kv);
  a.n_head = static_cast<int>(n_head);
  a.group = static_cast<int>(n_head / cache.n_head_kv);
  a.n_rb = (a.group + 15) / 16;
  a.q = q;
  a.ldq = ldq;
  a.out = out;
  a.ldo = ldo;
  a.q_scale = scale * kLog2e;
  VELOCITY_CUDA_CHECK(options.window >= 0, "attention: negative window");
  a.window = static_cast<int>(std::min<int64_t>(options.window, cache.n_ctx));
  a.sinks = options.sinks;
  a.positions = positions;
  a.seq_ids = seq_ids;
  a.n_tokens = static_cast<int>(n_tokens);
  a.ws_o = w->d_o;
  a.ws_ml = w->d_ml;
  a.ws_counters = w->d_counters;
  a.ws_chunks = static_cast<int>(w->n_chunks);

  // The fast kernels: same head dim for K and V, one of the instantiated ones, 16-byte aligned
  // (slot, head) runs, and a workspace made for at least this cache.
  const bool aligned = reinterpret_cast<uintptr_t>(cache.k) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(cache.v) % 16 == 0 && (cache.n_ctx * a.k.row_bytes) % 16 == 0 &&
                       (cache.n_ctx * a.v.row_bytes) % 16 == 0;
  const bool fits_ws = w->n_head >= n_head && w->n_chunks >= ceil_div(cache.n_ctx, kChunk) && w->head_dim_v >= dv;
  bool decode_done = n_decode == 0, prompt_done = n_tokens == n_decode;
  // F32 caches are for exact work (the reference tests): they take the f32 generic kernel, the
  // fast ones round K and V to f16.
  const bool f32_cache = cache.type_k == DType::F32 || cache.type_v == DType::F32;
  if (dk == dv && aligned && fits_ws && !f32_cache) {
    a.k.direct = a.k.kind == kF16;
    a.v.direct = a.v.kind == kF16;
    switch (dk) {
      case 64: run_fast<64>(a, *w, a.n_tokens, static_cast<int>(n_decode), decode_done, prompt_done, stream); break;
      case 80: run_fast<80>(a, *w, a.n_tokens, static_cast<int>(n_decode), decode_done, prompt_done, stream); break;
      case 96: run_fast<96>(a, *w, a.n_tokens, static_cast<int>(n_decode), decode_done, prompt_done, stream); break;
      case 128: run_fast<128>(a, *w, a.n_tokens, static_cast<int>(n_decode), decode_done, prompt_done, stream); break;
      case 256: run_fast<256>(a, *w, a.n_tokens, static_cast<int>(n_decode), decode_done, prompt_done, stream); break;
      default: break;
    }
  }
  if (decode_done && prompt_done) return;
  VELOCITY_CUDA_CHECK(dk <= kGenericMaxDk && dv <= kGenericMaxDv, "attention: head dim too large for CUDA attention");
  if (!decode_done)
    launch_generic(a, static_cast<int>(dk), static_cast<int>(dv), 0, static_cast<int>(n_decode), stream);
  if (!prompt_done)
    launch_generic(a, static_cast<int>(dk), static_cast<int>(dv), static_cast<int>(n_decode), a.n_tokens, stream);
}

}  // namespace velocity::engine::cuda
