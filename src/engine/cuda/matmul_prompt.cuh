// The prompt path: W (n_out, n_in) @ x16 (tokens, Kp) -> y (tokens, n_out) on the tensor cores,
// for the tokens after the decode tokens (plain) or the routed (token, slot) pairs of one expert
// (matmul_ids). Compute-bound: what matters is feeding mma.sync from shared memory.
//
// A block computes 128 weight rows x 128 tokens, walking K in chunks of 64 (the layout's chunk):
//   - activations: x16 rows of the block's tokens, copied by cp.async into a 3-stage ring of
//     [128 tokens][64] f16 tiles (rows of absent tokens zero-filled);
//   - weights: each of the 8 warps owns 16 of the 128 rows and loads its lanes' bits of the next
//     chunk into registers (the decode path's loaders, one chunk ahead) while the tensor cores
//     work; at the chunk it decodes them with the decode path's decoders, y = s * q + o in f32
//     (the reference's rounding), and stores them rounded to f16 into one [128 rows][64] tile;
//   - mma: warps 2 (rows) x 4 (tokens), a warp tile of 64 rows x 32 tokens: per 16-k step 4
//     ldmatrix.x4 of weights, 2 of activations, 16 mma.sync.m16n8k16 (f32 accumulators).
// Tiles are stored with 16-byte chunks swizzled by row (chunk ^ row % 8), so ldmatrix and the
// stores are free of bank conflicts. Two barriers per chunk: one before the weight tile is
// rewritten (everyone's mma on it done, this chunk's activations landed), one before the mma.
// Shared memory 65 KiB: two blocks per SM on sm_90 (registers are capped at 128 for that), one
// or more on sm_80..sm_120.
//
// Each token's outputs come from its own B column and the same k order (chunk by chunk, each
// weight rounded the same way), whatever tile it sits in and whichever tokens share the call.
#pragma once

#include "engine/cuda/matmul_common.cuh"
#include "engine/cuda/matmul_tile.cuh"

namespace velocity::engine::cuda::mm {

inline constexpr int kTileBytes = 128 * kChunkK * 2;  // a [128][64] f16 tile

inline size_t prompt_smem_bytes_impl() {
  return size_t{kPromptStages} * kTileBytes + kTileBytes + 2 * kPromptTokens * sizeof(int);
}

// Decodes the warp's 16 rows of chunk kt into the weight tile (rows 16 warp .. 16 warp + 15).
template <class F>
__device__ __forceinline__ void dequant_chunk(const typename F::template Data<1>& d, int kt, uint8_t* wt, int warp,
                                              int g, int c) {
  const int jpos = kt & 3;
  VELOCITY_UNROLL
  for (int s = 0; s < 4; ++s) {
    uint32_t a[4];
    F::template frag<1>(d, 0, jpos, s, a);
    float sc[2], off[2];
    F::template scale<1>(d, 0, jpos, s, sc, off);
    const int col = F::k_step(s) + F::k_lane(c);  // 4 consecutive k, 8-byte aligned
    VELOCITY_UNROLL
    for (int rh = 0; rh < 2; ++rh) {
      uint2 v;
      if constexpr (F::kNatural) {
        v.x = a[rh], v.y = a[rh + 2];  // already f16 (BF16 converted by frag)
      } else {
        v.x = f2h2(dequant_value<F>(sc[rh], h2f(a[rh]), off[rh]), dequant_value<F>(sc[rh], h2f(a[rh] >> 16), off[rh]));
        v.y = f2h2(dequant_value<F>(sc[rh], h2f(a[rh + 2]), off[rh]),
                   dequant_value<F>(sc[rh], h2f(a[rh + 2] >> 16), off[rh]));
      }
      *reinterpret_cast<uint2*>(wt + tile_swz(16 * warp + 8 * rh + g, col)) = v;
    }
  }
}

// acc += W tile (this warp's 64 rows) x activation tile (its 32 tokens), 64 k. Addresses are
// 32-bit shared-space, a per-lane base plus compile-time offsets (matmul_tile.cuh).
__device__ __forceinline__ void ldsm_x4_s(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

__device__ __forceinline__ void mma_chunk(uint32_t act_s, uint32_t wt_s, int wm, int wn, int lane,
                                          float (&acc)[4][4][4]) {
  VELOCITY_UNROLL
  for (int kk = 0; kk < 4; ++kk) {
    uint32_t af[4][4], bf[4][2];
    const uint32_t a_addr = wt_s + ldsm_a_offset(wm, lane, kk), b_addr = act_s + ldsm_b_offset(wn, lane, kk);
    VELOCITY_UNROLL
    for (int i = 0; i < 4; ++i) ldsm_x4_s(af[i], a_addr + i * 16 * 128);  // rows 16 i .. 16 i + 15
    VELOCITY_UNROLL
    for (int jj = 0; jj < 2; ++jj) {
      uint32_t r[4];
      ldsm_x4_s(r, b_addr + jj * 16 * 128);  // tokens 16 jj .. 16 jj + 15
      bf[2 * jj][0] = r[0], bf[2 * jj][1] = r[1], bf[2 * jj + 1][0] = r[2], bf[2 * jj + 1][1] = r[3];
    }
    VELOCITY_UNROLL
    for (int i = 0; i < 4; ++i) {
      VELOCITY_UNROLL
      for (int j = 0; j < 4; ++j) mma_16816(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
  }
}

// W (n_out, n_in) @ x16 (tokens, Kp) -> y (tokens, n_out); grid (token tiles, row blocks of 128),
// 256 threads, prompt_smem_bytes() of dynamic shared memory.
template <class F>
__global__ void __launch_bounds__(kThreads, 2) prompt_kernel(const PromptParams p) {
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* act = smem;                                    // [kPromptStages][128 tokens][64] f16
  uint8_t* wt = smem + kPromptStages * kTileBytes;        // [128 rows][64] f16
  int* s_xrow = reinterpret_cast<int*>(wt + kTileBytes);  // token slot -> x16 row (-1: none)
  int* s_yrow = s_xrow + kPromptTokens;                   // token slot -> y row

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
  const uint8_t* wmat = p.w.data;
  if (p.ids_mode) {
    // Tile blockIdx.x of the routed pairs: expert e with tile_off[e] <= tile < tile_off[e + 1].
    const int tile = static_cast<int>(blockIdx.x);
    if (tile >= p.tile_off[p.n_expert]) return;  // the grid is sized for the worst case
    int lo = 0, hi = p.n_expert - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (p.tile_off[mid] <= tile)
        lo = mid;
      else
        hi = mid - 1;
    }
    wmat += static_cast<int64_t>(lo) * p.w.mat_bytes;
    const int base = p.expert_off[lo] + (tile - p.tile_off[lo]) * kPromptTokens;
    const int count = min(kPromptTokens, p.expert_off[lo + 1] - base);
    for (int i = tid; i < kPromptTokens; i += kThreads) {
      int xr = -1, yr = -1;
      if (i < count) {
        yr = p.pair_list[base + i];
        xr = p.x_per_slot ? yr : yr / p.k;
      }
      s_xrow[i] = xr, s_yrow[i] = yr;
    }
  } else {
    for (int i = tid; i < kPromptTokens; i += kThreads) {
      const int t = p.t0 + static_cast<int>(blockIdx.x) * kPromptTokens + i;
      s_xrow[i] = s_yrow[i] = t < p.t1 ? t : -1;
    }
  }
  __syncthreads();

  const int row_block = static_cast<int>(blockIdx.y) * kPromptRows;
  const int r0 = row_block + 16 * warp + g, r1 = r0 + 8;  // the rows this lane decodes
  // Row r1 = r0 + 8 is derived when loading: one pointer register pair less across the mma.
  const uint8_t* rbase = wmat + static_cast<int64_t>(r0) * p.w.stride;
  const bool v0 = r0 < p.w.n_out, v1 = r1 < p.w.n_out;
  auto load_chunk = [&](int kt, typename F::template Data<1>& d) {
    LoadGlobal ld;
    F::template load<LoadGlobal, 1>(ld, v0 ? rbase : nullptr, v1 ? rbase + 8 * p.w.stride : nullptr, p.w.rl, kt, c, d);
  };
  const int n_kt = p.w.rl.nc;

  auto copy_act = [&](int kt, int stage) {
    uint8_t* dst = act + stage * kTileBytes;
    for (int idx = tid; idx < kPromptTokens * 8; idx += kThreads) {
      const int r = idx >> 3, ch = idx & 7, xr = s_xrow[r];
      const __half* src = p.a.x16 + static_cast<int64_t>(xr < 0 ? 0 : xr) * p.a.ldk + int64_t{kt} * kChunkK + 8 * ch;
      cp_async16(dst + tile_swz(r, 8 * ch), src, xr < 0 ? 0 : 16);
    }
  };

  for (int s = 0; s < kPromptStages - 1; ++s) {
    if (s < n_kt) copy_act(s, s);
    cp_async_commit();
  }
  typename F::template Data<1> cur{}, nxt{};
  if (n_kt > 0) load_chunk(0, cur);

  const int wm = warp >> 2, wn = warp & 3;
  const uint32_t act_s = smem_addr(act), wt_s = smem_addr(wt);
  float acc[4][4][4];
  VELOCITY_UNROLL
  for (int i = 0; i < 4; ++i) {
    VELOCITY_UNROLL
    for (int j = 0; j < 4; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;
  }

  for (int kt = 0; kt < n_kt; ++kt) {
    cp_async_wait<kPromptStages - 2>();  // this thread's copies of chunk kt landed
    __syncthreads();                     // everyone's landed; everyone's mma on the weight tile done
    const int next = kt + kPromptStages - 1;
    if (next < n_kt) copy_act(next, next % kPromptStages);  // into the stage read at kt - 1
    cp_async_commit();
    dequant_chunk<F>(cur, kt, wt, warp, g, c);
    if (kt + 1 < n_kt) load_chunk(kt + 1, nxt);  // in flight during the mma
    __syncthreads();
    mma_chunk(act_s + (kt % kPromptStages) * kTileBytes, wt_s, wm, wn, lane, acc);
    cur = nxt;
  }

  VELOCITY_UNROLL
  for (int i = 0; i < 4; ++i) {
    const int ra = row_block + 64 * wm + 16 * i + g, rb = ra + 8;
    VELOCITY_UNROLL
    for (int j = 0; j < 4; ++j) {
      VELOCITY_UNROLL
      for (int h = 0; h < 2; ++h) {
        const int slot = 32 * wn + 8 * j + 2 * c + h;
        const int yr = s_yrow[slot];
        if (yr < 0) continue;
        const float inv = p.a.inv_scale[s_xrow[slot]];
        float* yrow = p.y + static_cast<int64_t>(yr) * p.ldy;
        if (ra < p.w.n_out) store_y(yrow + ra, acc[i][j][h], inv, p.accumulate != 0);
        if (rb < p.w.n_out) store_y(yrow + rb, acc[i][j][2 + h], inv, p.accumulate != 0);
      }
    }
  }
}

template <DType kT>
void launch_prompt(const PromptParams& p, dim3 grid, cudaStream_t stream) {
  const size_t smem = prompt_smem_bytes_impl();
  VELOCITY_CUDA(cudaFuncSetAttribute(prompt_kernel<Fmt<kT>>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  prompt_kernel<Fmt<kT>><<<grid, kThreads, smem, stream>>>(p);
  VELOCITY_CUDA_LAUNCHED();
}

}  // namespace velocity::engine::cuda::mm

#define VELOCITY_MATMUL_PROMPT_INSTANTIATE(type) \
  template void velocity::engine::cuda::mm::launch_prompt<type>(const PromptParams&, dim3, cudaStream_t);
