// Decode attention (one query token per sequence): flash-decoding over the KV cache.
//
// Why split: a decode token at depth 8192 reads 8192 K and V rows per KV head and does almost no
// arithmetic on them, so the GPU is only busy if the rows are spread over many blocks. Each
// token's positions [0, pos] are cut into chunks of kChunk positions at fixed absolute
// boundaries; a block takes one (token, KV head, chunk) and serves every query head of the GQA
// group from one read of each K/V row (the group's heads are the rows of the mma, padded to 16).
// The grid is (n_head_kv * n_rb, tokens, ceil(n_ctx / kChunk)): the same on every replay of a
// captured step; blocks past a token's position exit at once. Chunks are the slowest index, so
// the blocks that have work (low chunks) are dispatched first and the empty ones drain beside
// them.
//
// Inside a block, K/V tiles of NT positions are copied to shared memory with cp.async (two
// stages), converted to f16 when the cache type is not F16, and each warp takes 16 positions of
// every tile with its own online softmax; the warps then merge in a fixed order. A token with one
// chunk writes its output directly; otherwise each block writes a partial (unnormalised output,
// max, sum) to the workspace and the last block of the (token, head block) to arrive (an atomic
// counter, reset by that block) combines the chunks in chunk order. Which block is last changes
// from run to run; what it computes does not, so a token's output depends only on its own
// position and data (the determinism rule of kernels.h).
#include <cfloat>
#include <cmath>

#include "engine/cuda/attention_common.cuh"

namespace velocity::engine::cuda::attn {

namespace {

template <int D>
struct DecodeShape {
  static constexpr int NT = tile_positions(D);  // positions per tile
  static constexpr int WARPS = NT / 16;         // warp w: positions [16w, 16w + 16) of each tile
  static constexpr int THREADS = 32 * WARPS;
  static constexpr int ROWH = tile_row_halves(D);
  static constexpr bool Q_SMEM = D > 128;  // Q fragments from shared memory (registers are short at 256)
  static constexpr int KSTEPS = D / 16;
  static constexpr int OTILES = D / 8;  // 8-column output tiles
};

// q [T, H * D] (token0 + blockIdx.y), K/V cache -> out [T, H * D] or partials in the workspace.
// grid (n_head_kv * n_rb, tokens, ceil(n_ctx / kChunk)), block DecodeShape<D>::THREADS.
template <int D>
__global__ void __launch_bounds__(decode_threads(D), D == 64 ? 4 : 3) decode_kernel(const Launch a) {
  using S = DecodeShape<D>;
  extern __shared__ __align__(16) uint8_t smem[];
  const int chunk = blockIdx.z;
  const int hk = blockIdx.x / a.n_rb, rb = blockIdx.x % a.n_rb;
  const int tt = blockIdx.y, t = a.token0 + tt;
  const int seq = a.seq_ids[t], pos = a.positions[t];
  const int h0 = hk * a.group + rb * 16;        // first query head of this block
  const int rows = min(16, a.group - rb * 16);  // query heads of this block
  float* out_t = a.out + static_cast<int64_t>(t) * a.ldo + static_cast<int64_t>(h0) * D;
  if (seq < 0 || seq >= a.n_slots || pos < 0 || pos >= a.n_ctx) {  // padding token: zeros, no cache read
    if (chunk == 0)
      for (int i = threadIdx.x; i < rows * D; i += S::THREADS) out_t[i] = 0.0f;
    return;
  }
  // Chunks [first, last] hold the positions this token sees (the window's start onwards).
  const int lo = first_position(a, pos), first = lo / kChunk, last = pos / kChunk, n_active = last - first + 1;
  if (chunk < first || chunk > last) return;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
  const int lm = lane >> 3, lr = lane & 7;  // ldmatrix: matrix and row this lane addresses

  const int p_begin = chunk * kChunk, p_end = min(p_begin + kChunk, pos + 1);
  const int n_tiles = (p_end - p_begin + S::NT - 1) / S::NT;
  const int i_first = chunk == first ? (lo - p_begin) / S::NT : 0;  // tiles before the window: skipped
  const int64_t run_row = (static_cast<int64_t>(seq) * a.n_head_kv + hk) * a.n_ctx;
  const uint8_t* run_k = a.k.base + run_row * a.k.row_bytes;
  const uint8_t* run_v = a.v.base + run_row * a.v.row_bytes;
  __half* k16 = reinterpret_cast<__half*>(smem + a.off_k16);
  __half* v16 = reinterpret_cast<__half*>(smem + a.off_v16);

  float o[S::OTILES][4];
#pragma unroll
  for (int j = 0; j < S::OTILES; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // rows g, g + 8 (l: this lane's columns)

  auto issue = [&](int i) {
    const int p0 = p_begin + i * S::NT, nv = min(S::NT, p_end - p0);
    const int st = a.stages == 2 ? (i & 1) : 0;
    copy_tile<D, S::NT, S::THREADS>(a.k, run_k, p0, nv, smem + stage_offset(a, st, 0));
    copy_tile<D, S::NT, S::THREADS>(a.v, run_v, p0, nv, smem + stage_offset(a, st, 1));
    cp_async_commit();
  };
  issue(i_first);  // the first copy is in flight while Q loads

  // Q: rows g and g + 8 of the 16-row block, scaled into f16 range.
  const float* q_t = a.q + static_cast<int64_t>(t) * a.ldq + static_cast<int64_t>(h0) * D;
  const float* q0 = g < rows ? q_t + g * D : nullptr;
  const float* q1 = g + 8 < rows ? q_t + (g + 8) * D : nullptr;
  float u0, u1;
  const float f0 = q_row_factor(q_local_amax<D>(q0), a.q_scale, u0);
  const float f1 = q_row_factor(q_local_amax<D>(q1), a.q_scale, u1);
  __half* sq = reinterpret_cast<__half*>(smem + a.off_q);  // [16][ROWH] when Q_SMEM
  uint32_t qa[S::Q_SMEM ? 1 : S::KSTEPS][4];
  if constexpr (S::Q_SMEM) {
    if (warp == 0) {
#pragma unroll
      for (int ks = 0; ks < S::KSTEPS; ++ks) {
        uint32_t f[4];
        q_fragment(q0, q1, f0, f1, 16 * ks, f);
        const int col = 16 * ks + 2 * c4;
        *reinterpret_cast<uint32_t*>(sq + g * S::ROWH + col) = f[0];
        *reinterpret_cast<uint32_t*>(sq + (g + 8) * S::ROWH + col) = f[1];
        *reinterpret_cast<uint32_t*>(sq + g * S::ROWH + col + 8) = f[2];
        *reinterpret_cast<uint32_t*>(sq + (g + 8) * S::ROWH + col + 8) = f[3];
      }
    }  // visible to the other warps after the first barrier of the tile loop
  } else {
#pragma unroll
    for (int ks = 0; ks < S::KSTEPS; ++ks) q_fragment(q0, q1, f0, f1, 16 * ks, qa[ks]);
  }

  for (int i = i_first; i < n_tiles; ++i) {
    const int st = a.stages == 2 ? (i & 1) : 0;
    if (a.stages == 2 && i + 1 < n_tiles) {
      issue(i + 1);  // into the stage the previous iteration finished with (barrier at its end)
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile i is in shared memory for every thread
    const uint8_t* stage_k = smem + stage_offset(a, st, 0);
    const uint8_t* stage_v = smem + stage_offset(a, st, 1);
    if (!a.k.direct || !a.v.direct) {
      if (!a.k.direct) dequant_tile<D, S::NT, S::THREADS>(a.k, stage_k, k16);
      if (!a.v.direct) dequant_tile<D, S::NT, S::THREADS>(a.v, stage_v, v16);
      __syncthreads();
    }
    // One stage: the raw rows are free once converted, so the next copy overlaps the mma.
    if (a.stages == 1 && i + 1 < n_tiles && !a.k.direct && !a.v.direct) issue(i + 1);
    const __half* kt = a.k.direct ? reinterpret_cast<const __half*>(stage_k) : k16;
    const __half* vt = a.v.direct ? reinterpret_cast<const __half*>(stage_v) : v16;
    const int nv = min(S::NT, p_end - (p_begin + i * S::NT));
    const int lo_col = lo - (p_begin + i * S::NT);  // columns below it are outside the window

    if (warp * 16 < nv) {
      // S (16 heads x 16 positions) = Q K^T, in log2 units.
      float s[2][4] = {};
#pragma unroll
      for (int ks = 0; ks < S::KSTEPS; ++ks) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(smem_addr(kt + (warp * 16 + (lm >> 1) * 8 + lr) * S::ROWH + ks * 16 + (lm & 1) * 8), b0, b1, b2,
                    b3);
        if constexpr (S::Q_SMEM) {
          uint32_t af[4];
          ldmatrix_x4(smem_addr(sq + ((lm & 1) * 8 + lr) * S::ROWH + ks * 16 + (lm >> 1) * 8), af[0], af[1], af[2],
                      af[3]);
          mma16816(s[0], af, b0, b1);
          mma16816(s[1], af, b2, b3);
        } else {
          mma16816(s[0], qa[ks], b0, b1);
          mma16816(s[1], qa[ks], b2, b3);
        }
      }
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = warp * 16 + n * 8 + 2 * c4 + (e & 1);
          const float v = s[n][e] * (e < 2 ? u0 : u1);
          s[n][e] = col < nv && col >= lo_col ? v : -INFINITY;
        }
      // Online softmax: the row maxima over the four lanes of a quad.
      float mx0 = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
      float mx1 = fmaxf(fmaxf(s[0][2], s[0][3]), fmaxf(s[1][2], s[1][3]));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
      const float base0 = mn0 == -INFINITY ? 0.0f : mn0, base1 = mn1 == -INFINITY ? 0.0f : mn1;
      const float alpha0 = exp2f(m0 - base0), alpha1 = exp2f(m1 - base1);
      m0 = mn0;
      m1 = mn1;
      float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        s[n][0] = exp2f(s[n][0] - base0);
        s[n][1] = exp2f(s[n][1] - base0);
        s[n][2] = exp2f(s[n][2] - base1);
        s[n][3] = exp2f(s[n][3] - base1);
        ps0 += s[n][0] + s[n][1];
        ps1 += s[n][2] + s[n][3];
      }
      l0 = l0 * alpha0 + ps0;
      l1 = l1 * alpha1 + ps1;
#pragma unroll
      for (int j = 0; j < S::OTILES; ++j) {
        o[j][0] *= alpha0;
        o[j][1] *= alpha0;
        o[j][2] *= alpha1;
        o[j][3] *= alpha1;
      }
      // O += P V: the S accumulators are the A fragment of P (16 heads x 16 positions).
      const uint32_t pa[4] = {pack_half2(s[0][0], s[0][1]), pack_half2(s[0][2], s[0][3]), pack_half2(s[1][0], s[1][1]),
                              pack_half2(s[1][2], s[1][3])};
#pragma unroll
      for (int j = 0; j < D / 16; ++j) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(smem_addr(vt + (warp * 16 + (lm & 1) * 8 + lr) * S::ROWH + 16 * j + (lm >> 1) * 8), b0, b1,
                          b2, b3);
        mma16816(o[2 * j], pa, b0, b1);
        mma16816(o[2 * j + 1], pa, b2, b3);
      }
    }
    __syncthreads();  // every warp is done with this stage and the f16 tiles
    if (a.stages == 1 && i + 1 < n_tiles && (a.k.direct || a.v.direct)) issue(i + 1);
  }

  // Merge the warps (fixed order) through shared memory; the tiles are no longer needed and no
  // copy is in flight (the last iteration waited for all).
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  float* s_max = reinterpret_cast<float*>(smem);  // [WARPS][16]
  float* s_sum = s_max + S::WARPS * 16;           // [WARPS][16]
  float* s_row_max = s_sum + S::WARPS * 16;       // [16] combine: per row over the chunks
  float* s_row_sum = s_row_max + 16;              // [16]
  int* s_last = reinterpret_cast<int*>(s_row_sum + 16);
  float* s_o = reinterpret_cast<float*>(smem + kMiscBytes);  // [WARPS][16][D]
#pragma unroll
  for (int j = 0; j < S::OTILES; ++j) {
    float* r0 = s_o + (warp * 16 + g) * D + 8 * j + 2 * c4;
    float* r1 = r0 + 8 * D;
    r0[0] = o[j][0];
    r0[1] = o[j][1];
    r1[0] = o[j][2];
    r1[1] = o[j][3];
  }
  if (c4 == 0) {
    s_max[warp * 16 + g] = m0;
    s_max[warp * 16 + g + 8] = m1;
    s_sum[warp * 16 + g] = l0;
    s_sum[warp * 16 + g + 8] = l1;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < rows * D; i += S::THREADS) {
    const int r = i / D, d = i % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < S::WARPS; ++w) mx = fmaxf(mx, s_max[w * 16 + r]);
    float acc = 0.0f, sum = 0.0f;
#pragma unroll
    for (int w = 0; w < S::WARPS; ++w) {  // a warp that saw no position: max -inf, weight 0
      const float wt = exp2f(s_max[w * 16 + r] - mx);
      acc += wt * s_o[(w * 16 + r) * D + d];
      sum += wt * s_sum[w * 16 + r];
    }
    if (n_active == 1) {
      out_t[r * D + d] = acc / (sum + sink_weight(a, h0 + r, mx));
    } else {
      const int64_t idx = (static_cast<int64_t>(tt) * a.n_head + h0 + r) * a.ws_chunks + chunk;
      a.ws_o[idx * D + d] = acc;
      if (d == 0) a.ws_ml[idx] = make_float2(mx, sum);
    }
  }
  if (n_active == 1) return;

  // The last block of this (token, head block) combines the chunks.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* counter = a.ws_counters + static_cast<int64_t>(tt) * a.n_head + hk * a.n_rb + rb;
    const unsigned arrived = atomicAdd(counter, 1u);
    const int last = arrived == static_cast<unsigned>(n_active - 1);
    if (last) *counter = 0u;  // every block of this (token, head block) has arrived: ready for the next call
    *s_last = last;
  }
  __syncthreads();
  if (!*s_last) return;
  __threadfence();
  for (int r = warp; r < rows; r += S::WARPS) {
    const int64_t base = (static_cast<int64_t>(tt) * a.n_head + h0 + r) * a.ws_chunks;
    float mx = -INFINITY;
    for (int c = first + lane; c <= last; c += 32) mx = fmaxf(mx, __ldcg(&a.ws_ml[base + c].x));
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int c = first + lane; c <= last; c += 32) {
      const float2 ml = __ldcg(&a.ws_ml[base + c]);
      sum += exp2f(ml.x - mx) * ml.y;
    }
    sum = warp_sum(sum);
    if (lane == 0) {
      s_row_max[r] = mx;
      s_row_sum[r] = sum + sink_weight(a, h0 + r, mx);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < rows * D; i += S::THREADS) {
    const int r = i / D, d = i % D;
    const int64_t base = (static_cast<int64_t>(tt) * a.n_head + h0 + r) * a.ws_chunks;
    const float mx = s_row_max[r];
    float acc = 0.0f;
#pragma unroll 4
    for (int c = first; c <= last; ++c)
      acc += exp2f(__ldcg(&a.ws_ml[base + c].x) - mx) * __ldcg(&a.ws_o[(base + c) * D + d]);
    out_t[r * D + d] = acc / s_row_sum[r];
  }
}

}  // namespace

template <int D>
void launch_decode(const Launch& a, int n_tokens, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.n_head_kv * a.n_rb), static_cast<unsigned>(n_tokens),
                  static_cast<unsigned>(ceil_div(a.n_ctx, kChunk)));
  decode_kernel<D><<<grid, decode_threads(D), a.smem_bytes, stream>>>(a);
  VELOCITY_CUDA_LAUNCHED();
}

template void launch_decode<64>(const Launch&, int, cudaStream_t);
template void launch_decode<80>(const Launch&, int, cudaStream_t);
template void launch_decode<96>(const Launch&, int, cudaStream_t);
template void launch_decode<128>(const Launch&, int, cudaStream_t);
template void launch_decode<256>(const Launch&, int, cudaStream_t);

void allow_decode_smem(int max_bytes) {
  VELOCITY_CUDA(cudaFuncSetAttribute(decode_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
  VELOCITY_CUDA(cudaFuncSetAttribute(decode_kernel<80>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
  VELOCITY_CUDA(cudaFuncSetAttribute(decode_kernel<96>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
  VELOCITY_CUDA(cudaFuncSetAttribute(decode_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
  VELOCITY_CUDA(cudaFuncSetAttribute(decode_kernel<256>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
}

}  // namespace velocity::engine::cuda::attn
