// The small kernels around the matrix products: the activation converter, the MoE routing
// tables, the generic f32 product and get_rows. None of them is where the time goes (the
// converter moves n_tokens * n_in * 6 bytes, get_rows n * n_in * 4), so they are written for
// clarity; the generic product serves F32 weights (routers, small) and odd-length F16/BF16 rows.
#include <cfloat>

#include "engine/cuda/matmul_common.cuh"
#include "engine/cuda/matmul_gguf.cuh"

namespace velocity::engine::cuda::mm {
namespace {

// x (n_rows, ldx) -> x16 (n_rows, ldk); one block of 1024 threads per row, thread t owning the
// elements t + 1024 i (coalesced loads; the order in which rms_norm sums, so the fused norm gives
// its bits). Each row: e = 14 - (exponent of max |x|), so max |x| * 2^e is in [2^13, 2^14): the
// f16 range with no overflow and the full 11-bit precision for everything within 2^-14 of the
// maximum. Then the f16 values and, for decode rows, the f32 sums of each 16 and 32 of them (a
// butterfly over the 16 or 32 lanes that hold them). A prologue replaces x by rms_norm(x) * w or
// by silu(gate) * x first, computed exactly as the rms_norm and swiglu kernels compute them.
// kE > 0: the row's values stay in kE registers per thread (one pass over memory; k_pad <= 1024 kE);
// kE == 0: longer rows, each pass reads the row again (from L1/L2).
// A decode call used to take 11 us here (ncu: a grid of 512-thread blocks, three passes of
// strided scalar loads, every block of a long row repeating the reductions). 256 threads a row
// made 14336-long rows 5 us slower than that (56 values a thread: measured on an H200).
constexpr int kConvertThreads = kRmsThreads;

// max |v| over the warp in one instruction (sm_80+ integer redux: the bits of non-negative floats
// order as the floats do).
__device__ __forceinline__ float warp_amax(float v) {
  return __uint_as_float(__reduce_max_sync(0xffffffffu, __float_as_uint(fabsf(v))));
}
template <int kE>
__global__ void __launch_bounds__(kConvertThreads) convert_kernel(const ConvertParams p) {
  pdl_launch_dependents();  // the decode kernel may start prefetching weights now
  __shared__ float s_red[32];
  const int row = blockIdx.x, t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const float* x = p.x + static_cast<int64_t>(row) * p.ldx;
  const float* gate = p.gate != nullptr ? p.gate + static_cast<int64_t>(row) * p.ldgate : nullptr;
  const int n_in = p.n_in, k_pad = p.k_pad;
  const int n_it = kE > 0 ? kE : (k_pad + kConvertThreads - 1) / kConvertThreads;
  float cache[kE > 0 ? kE : 1];
  float rs = 0.0f;
  if (p.norm_w != nullptr) {
    float ss = 0.0f;
    VELOCITY_UNROLL
    for (int i = 0; i < n_it; ++i) {
      const int k = t + kConvertThreads * i;
      const float v = k < n_in ? x[k] : 0.0f;
      if constexpr (kE > 0) cache[i] = v;
      if (k < n_in) ss = rms_step(ss, v);
    }
    rs = rms_finish(ss, n_in, p.norm_eps, s_red);
  }
  // The value of element k (i = its index in this thread), as rms_norm / swiglu compute it.
  auto value = [&](int i, int k) -> float {
    if (k >= n_in) return 0.0f;
    if (p.norm_w != nullptr) {
      float xv;
      if constexpr (kE > 0)
        xv = cache[i];
      else
        xv = x[k];
      return xv * rs * p.norm_w[k];
    }
    if (gate != nullptr) return swiglu_value(gate[k], x[k]);
    return x[k];
  };
  float m = 0.0f;
  VELOCITY_UNROLL
  for (int i = 0; i < n_it; ++i) {
    const float v = value(i, t + kConvertThreads * i);
    if constexpr (kE > 0) cache[i] = v;
    m = fmaxf(m, fabsf(v));
  }
  m = warp_max(m);
  if (lane == 0) s_red[warp] = m;
  __syncthreads();
  m = s_red[0];
  VELOCITY_UNROLL
  for (int w = 1; w < kConvertThreads / 32; ++w) m = fmaxf(m, s_red[w]);
  int e = 0;
  if (m > 0.0f && m <= FLT_MAX) {
    int exponent;
    frexpf(m, &exponent);  // m = f * 2^exponent, f in [0.5, 1)
    e = min(max(14 - exponent, -100), 100);
  }
  const float scale = ldexpf(1.0f, e);  // a power of two: x * scale is exact
  if (t == 0) p.inv_scale[row] = ldexpf(1.0f, -e);

  __half* x16 = p.x16 + static_cast<int64_t>(row) * p.ldk;
  const bool sums = row < p.n_xs;  // the same for the whole block
  float* xs16 = p.xs16 + static_cast<int64_t>(row) * (p.ldk / 16);
  float* xs32 = p.xs32 + static_cast<int64_t>(row) * (p.ldk / 32);
  VELOCITY_UNROLL
  for (int i = 0; i < n_it; ++i) {
    const int k = t + kConvertThreads * i;
    if (k - lane >= k_pad) break;  // the same for the whole warp (k_pad is a multiple of 64)
    float v;
    if constexpr (kE > 0)
      v = cache[i];
    else
      v = value(i, k);
    const __half h = __float2half_rn(v * scale);
    x16[k] = h;
    if (sums) {
      float s = __half2float(h);
      VELOCITY_UNROLL
      for (int o = 1; o < 16; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      const float other = __shfl_xor_sync(0xffffffffu, s, 16);
      if ((lane & 15) == 0) xs16[k >> 4] = s;
      if (lane == 0) xs32[k >> 5] = s + other;
    }
  }
  if (row >= p.n_x8) return;

  // int8 values for the kI8 decode formats: a 256-element block is 8 consecutive warps of one i,
  // its maximum met in shared memory; a 32-element sub-block is one warp. With the row in
  // registers (kE > 0) every i's warp maxima go to shared memory before one barrier; otherwise
  // one barrier an i (two slots). Every thread reaches every barrier (the k_pad test only guards
  // the stores).
  constexpr int kSlots = kE > 0 ? kE : 2;
  __shared__ float s_amax[kSlots][kConvertThreads / 32];
  int8_t* x8 = p.x8 + static_cast<int64_t>(row) * p.ldk;
  float* xd = p.xd + static_cast<int64_t>(row) * (p.ldk / 256);
  int16_t* bs32 = p.bs32 + static_cast<int64_t>(row) * (p.ldk / 32);
  auto scaled = [&](int i, int k) -> float {
    if (k - lane >= k_pad) return 0.0f;  // the same for the whole warp
    if constexpr (kE > 0)
      return cache[i] * scale;
    else
      return value(i, k) * scale;
  };
  auto quantise = [&](int i, int k, float v) {
    const int w0 = warp & ~7;
    float amax = s_amax[i % kSlots][w0];
    VELOCITY_UNROLL
    for (int w = 1; w < 8; ++w) amax = fmaxf(amax, s_amax[i % kSlots][w0 + w]);
    if (k - lane >= k_pad) return;
    const float iscale = amax > 0.0f ? 127.0f / amax : 0.0f;
    const int q = min(127, max(-127, __float2int_rn(v * iscale)));
    x8[(k & ~31) + 8 * ((lane >> 2) & 3) + 2 * (lane & 3) + (lane >> 4)] = static_cast<int8_t>(q);
    const int sum = __reduce_add_sync(0xffffffffu, q);
    if (lane == 0) {
      bs32[k >> 5] = static_cast<int16_t>(sum);
      if ((warp & 7) == 0) xd[k >> 8] = amax / 127.0f;
    }
  };
  if constexpr (kE > 0) {
    VELOCITY_UNROLL
    for (int i = 0; i < kE; ++i) {
      const float wm = warp_amax(scaled(i, t + kConvertThreads * i));
      if (lane == 0) s_amax[i][warp] = wm;
    }
    __syncthreads();
    VELOCITY_UNROLL
    for (int i = 0; i < kE; ++i) quantise(i, t + kConvertThreads * i, scaled(i, t + kConvertThreads * i));
  } else {
    for (int i = 0; i < n_it; ++i) {
      const int k = t + kConvertThreads * i;
      const float v = scaled(i, k);
      const float wm = warp_amax(v);
      if (lane == 0) s_amax[i & 1][warp] = wm;
      __syncthreads();
      quantise(i, k, v);
    }
  }
}

template <int kE>
void launch_convert_e(const ConvertParams& p, cudaStream_t stream) {
  convert_kernel<kE><<<static_cast<unsigned>(p.n_rows), kConvertThreads, 0, stream>>>(p);
  VELOCITY_CUDA_LAUNCHED();
}

// Pairs [p0, p1) grouped by expert; one block of 1024 threads, thread e owns expert e. The order
// of the pairs within an expert's list is that of the atomics: results do not depend on it (a
// pair's outputs are its own mma column whichever tile slot it lands in).
__global__ void __launch_bounds__(1024) route_kernel(const int32_t* ids, int p0, int p1, int n_expert,
                                                     int32_t* expert_off, int32_t* tile_off, int32_t* list) {
  static_assert(kMaxExperts == 1024, "one thread per expert");
  __shared__ int count[kMaxExperts], cursor[kMaxExperts], warp_pairs[32], warp_tiles[32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  count[tid] = 0;
  __syncthreads();
  for (int p = p0 + tid; p < p1; p += 1024) {
    const int e = ids[p];
    if (e >= 0 && e < n_expert) atomicAdd(&count[e], 1);
  }
  __syncthreads();
  // Exclusive scans over experts of the pair counts and of the tile counts.
  const int c = tid < n_expert ? count[tid] : 0, t = (c + kPromptTokens - 1) / kPromptTokens;
  int ic = c, it = t;
  for (int o = 1; o < 32; o <<= 1) {
    const int a = __shfl_up_sync(0xffffffffu, ic, o), b = __shfl_up_sync(0xffffffffu, it, o);
    if (lane >= o) ic += a, it += b;
  }
  if (lane == 31) warp_pairs[warp] = ic, warp_tiles[warp] = it;
  __syncthreads();
  if (warp == 0) {
    const int a0 = warp_pairs[lane], b0 = warp_tiles[lane];
    int a = a0, b = b0;
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffffu, a, o), v = __shfl_up_sync(0xffffffffu, b, o);
      if (lane >= o) a += u, b += v;
    }
    warp_pairs[lane] = a - a0, warp_tiles[lane] = b - b0;
  }
  __syncthreads();
  const int off_c = warp_pairs[warp] + ic - c, off_t = warp_tiles[warp] + it - t;
  if (tid < n_expert) {
    expert_off[tid] = off_c, tile_off[tid] = off_t, cursor[tid] = off_c;
    if (tid == n_expert - 1) expert_off[n_expert] = off_c + c, tile_off[n_expert] = off_t + t;
  }
  __syncthreads();
  for (int p = p0 + tid; p < p1; p += 1024) {
    const int e = ids[p];
    if (e >= 0 && e < n_expert) list[atomicAdd(&cursor[e], 1)] = p;
  }
}

// W (n_out, n_in) GGUF rows . x (tokens, n_in) F32 -> y; grid (ceil(n_out / 4), token groups of 8,
// jobs), 128 threads. Lane l takes the 32-element items l, l + 32, ... of the row in order; the
// lanes' sums meet in a fixed butterfly.
__global__ void __launch_bounds__(128) generic_kernel(const GenericParams p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row = static_cast<int>(blockIdx.x) * 4 + warp;
  if (row >= p.n_out) return;
  const uint8_t* wmat = p.w;
  int xr0, yr0, ntok;
  if (p.ids != nullptr) {
    const int job = static_cast<int>(blockIdx.z);
    int e = p.ids[job];
    e = e < 0 ? 0 : (e >= p.n_mat ? p.n_mat - 1 : e);
    wmat += static_cast<int64_t>(e) * p.mat_bytes;
    xr0 = p.x_per_slot ? job : job / p.k;
    yr0 = job;
    ntok = 1;
  } else {
    xr0 = yr0 = 8 * static_cast<int>(blockIdx.y);
    ntok = min(8, p.n_tok - xr0);
  }
  const uint8_t* wrow = wmat + static_cast<int64_t>(row) * p.stride;
  float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  const int n_items = (p.n_in + 31) / 32;
  for (int item = lane; item < n_items; item += 32) {
    const int cnt = min(32, p.n_in - 32 * item);
    float v[32];
    dequant32_gguf(p.type, wrow, item, cnt, v);
    VELOCITY_UNROLL
    for (int t = 0; t < 8; ++t) {
      if (t >= ntok) break;
      const float* xt = p.x + static_cast<int64_t>(xr0 + t) * p.ldx + 32 * item;
      VELOCITY_UNROLL
      for (int i = 0; i < 32; ++i)
        if (i < cnt) acc[t] = __fmaf_rn(v[i], xt[i], acc[t]);
    }
  }
  VELOCITY_UNROLL
  for (int t = 0; t < 8; ++t) {
    if (t >= ntok) break;
    const float s = warp_sum(acc[t]);
    if (lane == 0) store_y(p.y + static_cast<int64_t>(yr0 + t) * p.ldy + row, s, 1.0f, p.accumulate != 0);
  }
}

// One row of the CUDA row layout: thread (chunk J, lane c) decodes its 16 elements of the chunk
// exactly as the decode path's lane c does (as row g of the lane's pair).
template <class F>
__device__ void get_row_layout(const uint8_t* row, const RowLayout& rl, int n_in, float* out) {
  for (int idx = threadIdx.x; idx < rl.nc * 4; idx += blockDim.x) {
    const int J = idx >> 2, c = idx & 3;
    typename F::template Data<1> d{};
    LoadGlobal ld;
    F::template load<LoadGlobal, 1>(ld, row, nullptr, rl, J, c, d);
    VELOCITY_UNROLL
    for (int s = 0; s < 4; ++s) {
      uint32_t a[4];
      float sc[2], off[2];
      F::template frag<1>(d, 0, J & 3, s, a);
      F::template scale<1>(d, 0, J & 3, s, sc, off);
      VELOCITY_UNROLL
      for (int kk = 0; kk < 4; ++kk) {
        const int k = kChunkK * J + F::k_step(s) + F::k_lane(c) + kk;
        if (k < n_in) out[k] = dequant_value<F>(sc[0], h2f(a[2 * (kk >> 1)] >> (16 * (kk & 1))), off[0]);
      }
    }
  }
}

// out[t] = row ids[t] as F32; grid n, 128 threads.
__global__ void __launch_bounds__(128) get_rows_kernel(const GetRowsParams p) {
  int64_t id = p.ids[blockIdx.x];
  id = id < 0 ? 0 : (id >= p.n_rows ? p.n_rows - 1 : id);  // ids are promised valid
  const uint8_t* row = p.w + id * p.stride;
  float* out = p.out + static_cast<int64_t>(blockIdx.x) * p.ldo;
  if (!p.row_layout) {
    const int n_items = (p.n_in + 31) / 32;
    for (int item = threadIdx.x; item < n_items; item += blockDim.x) {
      const int cnt = min(32, p.n_in - 32 * item);
      float v[32];
      dequant32_gguf(p.type, row, item, cnt, v);
      for (int i = 0; i < cnt; ++i) out[32 * item + i] = v[i];
    }
    return;
  }
  switch (p.type) {
    case DType::Q8_0: get_row_layout<Fmt<DType::Q8_0>>(row, p.rl, p.n_in, out); break;
    case DType::Q4_0: get_row_layout<Fmt<DType::Q4_0>>(row, p.rl, p.n_in, out); break;
    case DType::Q4_1: get_row_layout<Fmt<DType::Q4_1>>(row, p.rl, p.n_in, out); break;
    case DType::Q5_0: get_row_layout<Fmt<DType::Q5_0>>(row, p.rl, p.n_in, out); break;
    case DType::Q5_1: get_row_layout<Fmt<DType::Q5_1>>(row, p.rl, p.n_in, out); break;
    case DType::MXFP4: get_row_layout<Fmt<DType::MXFP4>>(row, p.rl, p.n_in, out); break;
    case DType::Q2_K: get_row_layout<Fmt<DType::Q2_K>>(row, p.rl, p.n_in, out); break;
    case DType::Q3_K: get_row_layout<Fmt<DType::Q3_K>>(row, p.rl, p.n_in, out); break;
    case DType::Q4_K: get_row_layout<Fmt<DType::Q4_K>>(row, p.rl, p.n_in, out); break;
    case DType::Q5_K: get_row_layout<Fmt<DType::Q5_K>>(row, p.rl, p.n_in, out); break;
    case DType::Q6_K: get_row_layout<Fmt<DType::Q6_K>>(row, p.rl, p.n_in, out); break;
    default: break;
  }
}

}  // namespace

void launch_convert(const ConvertParams& p, cudaStream_t stream) {
  if (p.n_rows <= 0) return;
  const int per_thread = static_cast<int>(ceil_div(p.k_pad, kConvertThreads));
  if (per_thread <= 1) return launch_convert_e<1>(p, stream);
  if (per_thread <= 4) return launch_convert_e<4>(p, stream);
  if (per_thread <= 8) return launch_convert_e<8>(p, stream);
  if (per_thread <= 16) return launch_convert_e<16>(p, stream);
  if (per_thread <= 32) return launch_convert_e<32>(p, stream);
  launch_convert_e<0>(p, stream);
}

void launch_route(const int32_t* ids, int p0, int p1, int n_expert, Workspace& ws, cudaStream_t stream) {
  route_kernel<<<1, 1024, 0, stream>>>(ids, p0, p1, n_expert, ws.expert_off, ws.tile_off, ws.pair_list);
  VELOCITY_CUDA_LAUNCHED();
}

void launch_generic(const GenericParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(p.n_out, 4)), p.ids ? 1u : static_cast<unsigned>(ceil_div(p.n_tok, 8)),
                  p.ids ? static_cast<unsigned>(p.n_pairs) : 1u);
  generic_kernel<<<grid, 128, 0, stream>>>(p);
  VELOCITY_CUDA_LAUNCHED();
}

void launch_get_rows(const GetRowsParams& p, cudaStream_t stream) {
  get_rows_kernel<<<p.n, 128, 0, stream>>>(p);
  VELOCITY_CUDA_LAUNCHED();
}

}  // namespace velocity::engine::cuda::mm
