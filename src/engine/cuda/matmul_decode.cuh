// The decode path: W (n_out, n_in) @ x16 (n_tok, Kp) -> y (n_tok, n_out) for n_tok <= 64 decode
// tokens, every weight byte read once per call. Memory-bound: what matters is keeping enough
// weight bytes in flight and spending few instructions per weight.
//
// A block is 8 warps; a warp owns a tile of 16 rows (rows g and g + 8 in each lane, as the A
// fragment of mma.sync.m16n8k16 wants them) and a run of K, walked in iterations of
// Fmt::kIterChunks chunks of 64: the next iteration's weights are loaded (16-byte loads where the
// layout allows) while the current one is decoded, so two iterations' bytes are in flight per
// warp. (A per-warp cp.async shared-memory pipeline of 3-4 stages was measured instead: slower
// on every format but the folded K-quants; docs/NOTES.md, branch decode-staged.) Each 16-element
// k step: the lane turns its 8 weights into exact integer levels in f16 (a few integer ops),
// loads its B fragment (4 consecutive f16 activations of token g, one 8-byte load, from L1: the
// block's 8 warps read the same activations), and issues one mma per 8 tokens. After each
// sub-block (16 or 32 k) the sub-block sum is scaled in f32: acc += s * sum (+ o * sum x for the
// formats with an offset, sum x precomputed by the converter). Q4_K and Q5_K fold the sub-block
// scale into the levels instead (sc * q, exact in f16) and scale by d once per super-block.
// Tokens 8..63 take further n-tiles of the same A fragment, so 64 tokens cost 8 mma per step but
// no more weight traffic.
//
// Q4_K (kI8) multiplies in int8 instead: its 4-bit levels are int8 operands after one mask (and
// one shift for the high nibbles), where an f16 level costs a mask, an or and a fused multiply-add
// per two weights; the activations are int8 (x8, the CPU backend's Q8_K rounding: per token and
// 256 elements a float scale), stored in the order of the lane's nibbles. One mma.m16n8k32 per
// 32-element sub-block gives integer dot products; the sub-block scale multiplies them as
// integers (sc_j dot_j summed over the super-block in int32), the mins meet the per-32 sums of
// x8 in four dp2a, and floats appear once per super-block: xd (d isc - dmin imn). About 2.5 times
// fewer instructions per weight than the f16 form, which was instruction-bound (docs/NOTES.md).
//
// Work split: plain products use 8 tiles (128 rows) per block and split K across blocks (a fixed
// split chosen from the weight's shape and the SM count) when the rows alone give too few
// blocks; the partial sums go to the workspace and the last block to finish a row block adds
// them in split order (a counter per row block, reset by that block). Weights that share their
// input and type (Q, K, V; gate, up) go in one launch, each part with the split it would have
// alone. matmul_ids jobs (one token, one expert each) instead split K across the warps of a
// block and add the warps' sums in warp order through shared memory. Both orders depend on the
// shape only.
//
// The kernel starts with programmatic dependent launch on sm_90+: its first weight loads are in
// flight before the converter (the previous kernel) has finished writing x16.
#pragma once

#include <type_traits>

#include "engine/cuda/matmul_common.cuh"

namespace velocity::engine::cuda::mm {

// Where a lane reads its activations, advanced by one iteration at a time: B fragments of
// n-tile nt at x[nt] (halves: the lane's x16 row, its k offset, the iteration's first chunk),
// the sub-block sums of tokens (2c, 2c + 1) of n-tile nt at s[nt][0 or 1] (floats: the token's
// xs row at the iteration's first sub-block). Every offset inside an iteration is then a
// compile-time constant. Tokens past the job's last are clamped to it: their loads need no
// predicate and stay in bounds, and what they load only reaches their own output columns (an
// mma column depends on its B column alone), which are never stored.
template <class F, int kNT>
struct ActPtrs {
  static constexpr int kSubs = 4 / F::kScaleSteps;  // sub-blocks (of xs16 or xs32) per chunk
  const __half* x[kNT];
  const float* s[F::kOffset ? kNT : 1][2];
  __device__ __forceinline__ ActPtrs(const ActView& a, int xr0, int ntok, int g, int c, int it0) {
    const int64_t ld_sub = a.ldk / (kChunkK / kSubs);
    const float* xs = F::kScaleSteps == 1 ? a.xs16 : a.xs32;
    VELOCITY_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      x[nt] = a.x16 + (xr0 + min(8 * nt + g, ntok - 1)) * a.ldk + F::k_lane(c) + int64_t{it0} * F::kIterChunks * kChunkK;
      if constexpr (F::kOffset)
        VELOCITY_UNROLL
      for (int h = 0; h < 2; ++h)
        s[nt][h] = xs + (xr0 + min(8 * nt + 2 * c + h, ntok - 1)) * ld_sub + int64_t{it0} * F::kIterChunks * kSubs;
    }
  }
  __device__ __forceinline__ void next() {
    VELOCITY_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      x[nt] += F::kIterChunks * kChunkK;
      if constexpr (F::kOffset) s[nt][0] += F::kIterChunks * kSubs, s[nt][1] += F::kIterChunks * kSubs;
    }
  }
};

__device__ __forceinline__ uint2 load_b(const __half* p) { return __ldg(reinterpret_cast<const uint2*>(p)); }

// Where a lane reads its int8 activations, advanced one super-block (256 elements) at a time: the
// lane's 8 bytes of each 32 of token g of n-tile nt at x[nt], the scale and the 8 sums of 32 of
// tokens (2c, 2c + 1) at xd[nt][h] and bs[nt][h]. Tokens past the job's last are clamped, as above.
template <int kNT>
struct ActPtrs8 {
  const int8_t* x[kNT];
  const float* xd[kNT][2];
  const int16_t* bs[kNT][2];
  __device__ __forceinline__ ActPtrs8(const ActView& a, int xr0, int ntok, int g, int c, int it0) {
    VELOCITY_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      x[nt] = a.x8 + (xr0 + min(8 * nt + g, ntok - 1)) * a.ldk + 8 * c + int64_t{it0} * 256;
      VELOCITY_UNROLL
      for (int h = 0; h < 2; ++h) {
        const int64_t tk = xr0 + min(8 * nt + 2 * c + h, ntok - 1);
        xd[nt][h] = a.xd + tk * (a.ldk / 256) + it0;
        bs[nt][h] = a.bs32 + tk * (a.ldk / 32) + int64_t{it0} * 8;
      }
    }
  }
  __device__ __forceinline__ void next() {
    VELOCITY_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      x[nt] += 256;
      xd[nt][0] += 1, xd[nt][1] += 1;
      bs[nt][0] += 8, bs[nt][1] += 8;
    }
  }
};

// One super-block of a kI8 format (Q4_K): acc[nt] += W(rows g, g + 8) . x(tokens) over its 256 k.
// Word j of a row's data holds the lane's 8 levels of sub-block j, elements 16 h + 4 c + kk of the
// sub-block (R4, quant_device.cuh): byte b has element (h, kk) = (b & 1, b >> 1) in its low
// nibble and (b & 1, 2 + (b >> 1)) in its high one. x8 stores element 16 h + 4 c + kk at byte
// 8 c + 2 kk + h of the sub-block, so the lane's 8 bytes there are the low nibbles' elements, then
// the high nibbles': the A fragment is the two masked words as they stand (a0, a1 the low
// nibbles of rows g, g + 8; a2, a3 the high ones; mma's k order is ours to choose) and B is one
// 8-byte load.
template <class F, int kNT>
__device__ __forceinline__ void decode_iteration_i8(const typename F::template Data<F::kIterChunks>& d,
                                                    const ActPtrs8<kNT>& ap, int n_nt, float (&acc)[kNT][4]) {
  static_assert(F::kIterChunks == 4, "one K-quant super-block an iteration");
  const typename F::Fold f = F::fold(d);
  int isc[kNT][4];
  VELOCITY_UNROLL
  for (int nt = 0; nt < kNT; ++nt) isc[nt][0] = isc[nt][1] = isc[nt][2] = isc[nt][3] = 0;
  VELOCITY_UNROLL
  for (int j = 0; j < 8; ++j) {
    const uint32_t a[4] = {d.q[0][j] & 0x0F0F0F0Fu, d.q[1][j] & 0x0F0F0F0Fu, (d.q[0][j] >> 4) & 0x0F0F0F0Fu,
                           (d.q[1][j] >> 4) & 0x0F0F0F0Fu};
    const int s0 = static_cast<int>((f.sc[0][j >> 2] >> (8 * (j & 3))) & 0xFFu);
    const int s1 = static_cast<int>((f.sc[1][j >> 2] >> (8 * (j & 3))) & 0xFFu);
    VELOCITY_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      if (nt >= n_nt) continue;
      const uint2 b = __ldg(reinterpret_cast<const uint2*>(ap.x[nt] + 32 * j));
      int dot[4];
      mma_16832_s8_zero(dot, a, b.x, b.y);
      isc[nt][0] += s0 * dot[0];
      isc[nt][1] += s0 * dot[1];
      isc[nt][2] += s1 * dot[2];
      isc[nt][3] += s1 * dot[3];
    }
  }
  // The mins: sum_j m_j bs_j, two int16 sums by two bytes of mins per dp2a.
  VELOCITY_UNROLL
  for (int nt = 0; nt < kNT; ++nt) {
    if (nt >= n_nt) continue;
    VELOCITY_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int4 bs = __ldg(reinterpret_cast<const int4*>(ap.bs[nt][h]));
      const float xd = __ldg(ap.xd[nt][h]);
      VELOCITY_UNROLL
      for (int r = 0; r < 2; ++r) {
        const int mn0 = static_cast<int>(f.mn[r][0]), mn1 = static_cast<int>(f.mn[r][1]);
        int m = __dp2a_lo(bs.x, mn0, 0);
        m = __dp2a_hi(bs.y, mn0, m);
        m = __dp2a_lo(bs.z, mn1, m);
        m = __dp2a_hi(bs.w, mn1, m);
        const int i = 2 * r + h;
        const float v = __fmaf_rn(f.neg_dmin[r], static_cast<float>(m), f.d[r] * static_cast<float>(isc[nt][i]));
        acc[nt][i] = __fmaf_rn(xd, v, acc[nt][i]);
      }
    }
  }
}

// Formats whose decode folds the sub-block scales into the A fragment (quant_device.cuh, kFold).
template <class F>
inline constexpr bool kFolded = requires { requires F::kFold; };

// acc[nt] += off * (sub-block sums of the lane's tokens): the offset term of sub-block `sub` of
// the iteration.
template <class F, int kNT>
__device__ __forceinline__ void add_offsets(const ActPtrs<F, kNT>& ap, int sub, const float off[2], int n_nt,
                                            float (&acc)[kNT][4]) {
  VELOCITY_UNROLL
  for (int nt = 0; nt < kNT; ++nt) {
    if (nt >= n_nt) continue;
    const float x0 = __ldg(ap.s[nt][0] + sub);
    const float x1 = __ldg(ap.s[nt][1] + sub);
    acc[nt][0] = __fmaf_rn(off[0], x0, acc[nt][0]);
    acc[nt][1] = __fmaf_rn(off[0], x1, acc[nt][1]);
    acc[nt][2] = __fmaf_rn(off[1], x0, acc[nt][2]);
    acc[nt][3] = __fmaf_rn(off[1], x1, acc[nt][3]);
  }
}

// One iteration (kIterChunks chunks, the first `chunks` of them in the row) of a warp:
// acc[nt] += W(rows g, g + 8; chunks) . x(tokens).
template <class F, int kNT>
__device__ __forceinline__ void decode_iteration(const typename F::template Data<F::kIterChunks>& d, int it,
                                                 int chunks, const ActPtrs<F, kNT>& ap, int n_nt,
                                                 float (&acc)[kNT][4]) {
  constexpr int kC = F::kIterChunks, kSS = F::kScaleSteps, kSubs = ActPtrs<F, kNT>::kSubs;
  [[maybe_unused]] float tmp[kNT][4];
  if constexpr (kFolded<F>) {
    // One super-block (kC = 4 chunks): the scaled levels sc_j q accumulate in tmp over all 16
    // steps, d applies once; the offsets per sub-block.
    static_assert(kC == 4 && kSS == 2, "folded formats read one K-quant super-block an iteration");
    const typename F::Fold fold = F::fold(d);
    typename F::Sub sub;
    VELOCITY_UNROLL
    for (int jj = 0; jj < kC; ++jj) {
      VELOCITY_UNROLL
      for (int s = 0; s < 4; ++s) {
        if (s % kSS == 0) sub = F::fold_sub(fold, 2 * jj + s / kSS);
        uint32_t a[4];
        F::template frag_folded<kC>(d, jj, jj, s, sub, a);
        VELOCITY_UNROLL
        for (int nt = 0; nt < kNT; ++nt) {
          if (nt >= n_nt) continue;
          const uint2 b = load_b(ap.x[nt] + jj * kChunkK + F::k_step(s));
          if (jj == 0 && s == 0)
            mma_16816_zero(tmp[nt], a, b.x, b.y);
          else
            mma_16816(tmp[nt], a, b.x, b.y);
        }
        if (s % kSS == kSS - 1) add_offsets<F, kNT>(ap, jj * kSubs + s / kSS, sub.off, n_nt, acc);
      }
    }
    VELOCITY_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      if (nt >= n_nt) continue;
      acc[nt][0] = __fmaf_rn(fold.d[0], tmp[nt][0], acc[nt][0]);
      acc[nt][1] = __fmaf_rn(fold.d[0], tmp[nt][1], acc[nt][1]);
      acc[nt][2] = __fmaf_rn(fold.d[1], tmp[nt][2], acc[nt][2]);
      acc[nt][3] = __fmaf_rn(fold.d[1], tmp[nt][3], acc[nt][3]);
    }
  } else {
    VELOCITY_UNROLL
    for (int jj = 0; jj < kC; ++jj) {
      if (kC > 1 && jj >= chunks) break;
      const int jpos = kC == 4 ? jj : ((it * kC + jj) & 3);
      VELOCITY_UNROLL
      for (int s = 0; s < 4; ++s) {
        uint32_t a[4];
        F::template frag<kC>(d, jj, jpos, s, a);
        const int xoff = jj * kChunkK + F::k_step(s);
        if constexpr (F::kNatural) {
          VELOCITY_UNROLL
          for (int nt = 0; nt < kNT; ++nt) {
            if (nt >= n_nt) continue;
            const uint2 b = load_b(ap.x[nt] + xoff);
            mma_16816(acc[nt], a, b.x, b.y);
          }
        } else {
          VELOCITY_UNROLL
          for (int nt = 0; nt < kNT; ++nt) {
            if (nt >= n_nt) continue;
            const uint2 b = load_b(ap.x[nt] + xoff);
            if (s % kSS == 0)
              mma_16816_zero(tmp[nt], a, b.x, b.y);  // the sub-block's first step
            else
              mma_16816(tmp[nt], a, b.x, b.y);
          }
          if (s % kSS == kSS - 1) {
            float sc[2], off[2];
            F::template scale<kC>(d, jj, jpos, s, sc, off);
            [[maybe_unused]] const int sub = jj * kSubs + s / kSS;  // the sub-block within the iteration
            VELOCITY_UNROLL
            for (int nt = 0; nt < kNT; ++nt) {
              if (nt >= n_nt) continue;
              acc[nt][0] = __fmaf_rn(sc[0], tmp[nt][0], acc[nt][0]);
              acc[nt][1] = __fmaf_rn(sc[0], tmp[nt][1], acc[nt][1]);
              acc[nt][2] = __fmaf_rn(sc[1], tmp[nt][2], acc[nt][2]);
              acc[nt][3] = __fmaf_rn(sc[1], tmp[nt][3], acc[nt][3]);
            }
            if constexpr (F::kOffset) add_offsets<F, kNT>(ap, sub, off, n_nt, acc);
          }
        }
      }
    }
  }
}

// The part of a grouped launch that owns block bx, read field by field with constant indices
// (a dynamically indexed kernel parameter would be copied to local memory).
__device__ __forceinline__ DecodePart decode_part(const DecodeParams& p, int bx, int& block0) {
  DecodePart q = p.part[0];
  block0 = 0;
  if (p.n_parts > 1 && bx >= p.part[0].block_end) {
    q = p.part[1];
    block0 = p.part[0].block_end;
  }
  if (p.n_parts > 2 && bx >= p.part[1].block_end) {
    q = p.part[2];
    block0 = p.part[1].block_end;
  }
  return q;
}

// W (n_out, n_in) @ x16 (tokens, Kp) -> y (tokens, n_out) for each part; grid (blocks of every
// part, 1, jobs), 256 threads; dynamic shared memory 8 * kNT * 4 * 32 floats when K is split
// over warps.
template <class F, int kNT>
__global__ void __launch_bounds__(kThreads, kNT == 1 ? 2 : 1) decode_kernel(const DecodeParams p) {
  constexpr int kC = F::kIterChunks;
  using Data = typename F::template Data<kC>;
  extern __shared__ float red[];
  __shared__ int s_last;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  const int wk_n = 1 << p.wk_log2;
  const int wk = warp & (wk_n - 1), wr = warp >> p.wk_log2;
  int block0;
  const DecodePart part = decode_part(p, static_cast<int>(blockIdx.x), block0);
  const int rb = (static_cast<int>(blockIdx.x) - block0) % part.row_blocks;
  const int ks = (static_cast<int>(blockIdx.x) - block0) / part.row_blocks;  // this block's K split
  const int tile = rb * p.wr + wr;
  const int row0 = tile * kTileRows + g, row1 = row0 + 8;
  const bool active = tile * kTileRows < part.n_out;

  // The job: the whole call, or one (token, slot) pair of matmul_ids.
  const uint8_t* wmat = part.data;
  int xr0 = 0, yr0 = 0, ntok = p.n_tok;
  if (p.ids != nullptr) {
    int e = p.ids[blockIdx.z];
    e = e < 0 ? 0 : (e >= p.w.n_mat ? p.w.n_mat - 1 : e);  // ids are promised valid; never read out of bounds
    wmat += static_cast<int64_t>(e) * p.w.mat_bytes;
    xr0 = p.x_per_slot ? static_cast<int>(blockIdx.z) : static_cast<int>(blockIdx.z) / p.k;
    yr0 = static_cast<int>(blockIdx.z);
    ntok = 1;
  }
  const uint8_t* rg = row0 < part.n_out ? wmat + static_cast<int64_t>(row0) * p.w.stride : nullptr;
  const uint8_t* rg8 = row1 < part.n_out ? wmat + static_cast<int64_t>(row1) * p.w.stride : nullptr;

  // This warp's iterations: a fixed partition of [0, n_iters) into splits * wk_n runs.
  const int n_split = part.splits << p.wk_log2;
  const int split = (ks << p.wk_log2) + wk;
  const int it0 = static_cast<int>(static_cast<int64_t>(split) * p.n_iters / n_split);
  const int it1 = static_cast<int>(static_cast<int64_t>(split + 1) * p.n_iters / n_split);
  const int n_nt = (ntok + 7) >> 3;

  float acc[kNT][4];
  VELOCITY_UNROLL
  for (int nt = 0; nt < kNT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
  // Two iterations in flight: the first two are requested before waiting for the converter. With
  // one n-tile the two buffers take turns (no register copies: each, once decoded, loads the
  // iteration two ahead); with more, the second is copied into the first (two unrolled copies of
  // the iteration spill there).
  Data buf[2] = {};
  LoadGlobal ld;
  if (active && it0 < it1) F::template load<LoadGlobal, kC>(ld, rg, rg8, p.w.rl, it0 * kC, c, buf[0]);
  if (active && it0 + 1 < it1) F::template load<LoadGlobal, kC>(ld, rg, rg8, p.w.rl, (it0 + 1) * kC, c, buf[1]);
  pdl_wait();  // x16, xs, x8, inv_scale come from the converter
  if (active) {
    std::conditional_t<kI8<F>, ActPtrs8<kNT>, ActPtrs<F, kNT>> ap(p.a, xr0, ntok, g, c, it0);
    auto step = [&](const Data& d, int it) {
      if constexpr (kI8<F>)
        decode_iteration_i8<F, kNT>(d, ap, n_nt, acc);
      else
        decode_iteration<F, kNT>(d, it, p.w.rl.nc - it * kC, ap, n_nt, acc);
      ap.next();
    };
    if constexpr (kNT == 1) {
      for (int it = it0; it < it1; it += 2) {
        VELOCITY_UNROLL
        for (int b = 0; b < 2; ++b) {
          if (b == 1 && it + 1 >= it1) break;
          step(buf[b], it + b);
          if (it + b + 2 < it1) F::template load<LoadGlobal, kC>(ld, rg, rg8, p.w.rl, (it + b + 2) * kC, c, buf[b]);
        }
      }
    } else {
      for (int it = it0; it < it1; ++it) {
        step(buf[0], it);
        if (it + 1 < it1) {
          buf[0] = buf[1];
          if (it + 2 < it1) F::template load<LoadGlobal, kC>(ld, rg, rg8, p.w.rl, (it + 2) * kC, c, buf[1]);
        }
      }
    }
  }

  // K split over the block's warps: warps wk > 0 hand their sums to warp wk = 0, added in order.
  if (p.wk_log2 > 0) {
    if (wk > 0 && active) {
      VELOCITY_UNROLL
      for (int nt = 0; nt < kNT; ++nt) {
        if (nt >= n_nt) continue;
        VELOCITY_UNROLL
        for (int i = 0; i < 4; ++i) red[((warp * kNT + nt) * 4 + i) * 32 + lane] = acc[nt][i];
      }
    }
    __syncthreads();
    if (wk == 0 && active) {
      for (int w = 1; w < wk_n; ++w) {
        VELOCITY_UNROLL
        for (int nt = 0; nt < kNT; ++nt) {
          if (nt >= n_nt) continue;
          VELOCITY_UNROLL
          for (int i = 0; i < 4; ++i) acc[nt][i] += red[(((warp + w) * kNT + nt) * 4 + i) * 32 + lane];
        }
      }
    }
  }
  const bool writer = wk == 0 && active;

  if (part.splits == 1) {
    if (!writer) return;
    VELOCITY_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      if (nt >= n_nt) continue;
      VELOCITY_UNROLL
      for (int h = 0; h < 2; ++h) {
        const int tk = 8 * nt + 2 * c + h;
        if (tk >= ntok) continue;
        const float inv = p.a.inv_scale[xr0 + tk];
        float* yrow = part.y + static_cast<int64_t>(yr0 + tk) * part.ldy;
        if (row0 < part.n_out) store_y(yrow + row0, acc[nt][h], inv, part.accumulate != 0);
        if (row1 < part.n_out) store_y(yrow + row1, acc[nt][2 + h], inv, part.accumulate != 0);
      }
    }
    return;
  }

  // K split over blocks (plain products only): partial sums, then the last block of this row
  // block adds them in split order.
  const int rows_pad = part.row_blocks * p.wr * kTileRows;
  if (writer) {
    VELOCITY_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      if (nt >= n_nt) continue;
      VELOCITY_UNROLL
      for (int h = 0; h < 2; ++h) {
        const int tk = 8 * nt + 2 * c + h;
        if (tk >= ntok) continue;
        float* pt = part.partial + (static_cast<int64_t>(ks) * ntok + tk) * rows_pad;
        pt[row0] = acc[nt][h];
        pt[row1] = acc[nt][2 + h];
      }
    }
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(&part.counters[rb], 1) == part.splits - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const int block_rows = p.wr * kTileRows, row_base = rb * block_rows;
  for (int idx = threadIdx.x; idx < block_rows * ntok; idx += kThreads) {
    const int r = row_base + idx % block_rows, tk = idx / block_rows;
    if (r >= part.n_out) continue;
    float sum = 0.0f;
    for (int s = 0; s < part.splits; ++s)
      sum += __ldcg(part.partial + (static_cast<int64_t>(s) * ntok + tk) * rows_pad + r);
    store_y(part.y + static_cast<int64_t>(tk) * part.ldy + r, sum, p.a.inv_scale[tk], part.accumulate != 0);
  }
  if (threadIdx.x == 0) part.counters[rb] = 0;  // ready for the next launch (stream order)
}

template <class F, int kNT>
void launch_decode_nt(const DecodeParams& p, dim3 grid, bool pdl, cudaStream_t stream) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = p.wk_log2 > 0 ? size_t{8} * kNT * 4 * 32 * sizeof(float) : 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  VELOCITY_CUDA(cudaLaunchKernelEx(&cfg, decode_kernel<F, kNT>, p));
  VELOCITY_CUDA_LAUNCHED();
}

template <DType kT>
void launch_decode(const DecodeParams& p, dim3 grid, int max_tokens_per_job, bool pdl, cudaStream_t stream) {
  // One n-tile for up to 8 tokens (the common case, fewer registers), 8 n-tiles up to 64.
  if (max_tokens_per_job <= 8)
    launch_decode_nt<Fmt<kT>, 1>(p, grid, pdl, stream);
  else
    launch_decode_nt<Fmt<kT>, kDecodeTokens / 8>(p, grid, pdl, stream);
}

}  // namespace velocity::engine::cuda::mm

#define VELOCITY_MATMUL_DECODE_INSTANTIATE(type) \
  template void velocity::engine::cuda::mm::launch_decode<type>(const DecodeParams&, dim3, int, bool, cudaStream_t);
