// Prompt attention (tokens [n_decode, n_tokens) of a call): causal flash-attention over the KV
// cache with tensor cores.
//
// A block takes 64 consecutive prompt tokens of the call and one query head (16 rows per warp);
// it walks the K/V tiles of the tokens' sequence from position 0, tiles of NT positions at fixed
// absolute boundaries (multiples of NT), copied with cp.async (two stages) and converted to f16
// when the cache type is not F16. S = Q K^T and O += P V are mma.sync m16n8k16 (f16 in, f32
// accumulate), with the online softmax in f32 between them.
//
// Why this order is deterministic: a query row's result is a function of its own q, its position
// and the tiles it walks. It walks tiles 0 .. (the largest position among the rows of its
// sequence in the block) / NT, so sharing a block with other tokens can only add tiles past its
// own position; there every score is masked to -inf, the running max is unchanged, the rescale
// factor is exp2(0) = 1 and P is 0, so such a tile leaves the row's state bit for bit unchanged.
// A prompt therefore gives the same bits whether it came in one chunk or several, and whatever
// tokens share the call.
//
// Tokens of several sequences in one block (a tile that straddles two prompts, or tokens in any
// order) are served one sequence at a time: the block takes the sequence of its first pending
// row, runs the rows of that sequence, and repeats until every row is done.
#include <cfloat>
#include <climits>
#include <cmath>

#include "engine/cuda/attention_common.cuh"

namespace velocity::engine::cuda::attn {

namespace {

template <int D>
struct PromptShape {
  static constexpr int NT = tile_positions(D);
  static constexpr int THREADS = kPromptThreads;  // 4 warps x 16 rows
  static constexpr int ROWH = tile_row_halves(D);
  static constexpr bool Q_SMEM = D > 128;
  static constexpr int KSTEPS = D / 16;
  static constexpr int STILES = NT / 8;  // 8-position score tiles
  static constexpr int OTILES = D / 8;
};

// q [T, H * D] rows n_decode + 64 * tile + r -> out [T, H * D] (head blockIdx.y).
// grid (ceil((n_tokens - n_decode) / 64), n_head), block 128.
template <int D>
__global__ void __launch_bounds__(kPromptThreads) prompt_kernel(const Launch a, int n_decode, int n_tokens) {
  using S = PromptShape<D>;
  extern __shared__ __align__(16) uint8_t smem[];
  // The longest rows (latest tiles of a prompt) start first.
  const int tile = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, hk = h / a.group;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
  const int lm = lane >> 3, lr = lane & 7;
  const int t_first = n_decode + tile * kPromptRows;

  int* s_seq = reinterpret_cast<int*>(smem);               // [64] per row
  int* s_pos = s_seq + kPromptRows;                        // [64]
  int* s_pending = s_pos + kPromptRows;                    // [64] 1 until the row's output is written
  int* s_ctl = s_pending + kPromptRows;                    // [3] this round's sequence, its largest and smallest position
  __half* sq = reinterpret_cast<__half*>(smem + a.off_q);  // [64][ROWH] when Q_SMEM
  __half* k16 = reinterpret_cast<__half*>(smem + a.off_k16);
  __half* v16 = reinterpret_cast<__half*>(smem + a.off_v16);

  if (threadIdx.x < kPromptRows) {
    const int t = t_first + threadIdx.x;
    int seq = -1, pos = -1, pending = 0;
    if (t < n_tokens) {
      seq = a.seq_ids[t];
      pos = a.positions[t];
      if (seq >= 0 && seq < a.n_slots && pos >= 0 && pos < a.n_ctx) {
        pending = 1;
      } else {  // padding: zeros, no cache read
        float* o = a.out + static_cast<int64_t>(t) * a.ldo + static_cast<int64_t>(h) * D;
        for (int d = 0; d < D; ++d) o[d] = 0.0f;
      }
    }
    s_seq[threadIdx.x] = seq;
    s_pos[threadIdx.x] = pos;
    s_pending[threadIdx.x] = pending;
  }

  for (;;) {
    __syncthreads();  // row flags of the previous round written
    if (warp == 0) {
      const bool p0 = s_pending[lane] != 0, p1 = s_pending[lane + 32] != 0;
      const unsigned b0 = __ballot_sync(0xffffffffu, p0), b1 = __ballot_sync(0xffffffffu, p1);
      const int leader = b0 ? __ffs(b0) - 1 : (b1 ? 31 + __ffs(b1) : -1);
      const int seg = leader >= 0 ? s_seq[leader] : -1;
      int mp = -1, lp = INT_MAX;
      if (p0 && s_seq[lane] == seg) mp = s_pos[lane], lp = s_pos[lane];
      if (p1 && s_seq[lane + 32] == seg) mp = max(mp, s_pos[lane + 32]), lp = min(lp, s_pos[lane + 32]);
      mp = __reduce_max_sync(0xffffffffu, mp);
      lp = __reduce_min_sync(0xffffffffu, lp);
      if (lane == 0) {
        s_ctl[0] = seg;
        s_ctl[1] = mp;
        s_ctl[2] = lp;
      }
    }
    __syncthreads();
    const int seg = s_ctl[0];
    if (seg < 0) break;
    const int kv_max = s_ctl[1];
    // With a sliding window the tiles before every row's window are skipped (walking them would
    // leave each row's state unchanged: all its scores there are -inf).
    const int i_first = first_position(a, s_ctl[2]) / S::NT;

    // This lane's rows, r0 and r0 + 8 of the warp's 16; pos -1 for rows not in this round.
    const int r0 = warp * 16 + g, r1 = r0 + 8;
    const bool in0 = s_pending[r0] != 0 && s_seq[r0] == seg, in1 = s_pending[r1] != 0 && s_seq[r1] == seg;
    const int pos0 = in0 ? s_pos[r0] : -1, pos1 = in1 ? s_pos[r1] : -1;
    const int lo0 = in0 ? first_position(a, pos0) : 0, lo1 = in1 ? first_position(a, pos1) : 0;
    const int warp_max = __reduce_max_sync(0xffffffffu, max(pos0, pos1));
    const int warp_min = __reduce_min_sync(0xffffffffu, min(in0 ? pos0 : INT_MAX, in1 ? pos1 : INT_MAX));

    const int n_tiles = kv_max / S::NT + 1;
    const int64_t run_row = (static_cast<int64_t>(seg) * a.n_head_kv + hk) * a.n_ctx;
    const uint8_t* run_k = a.k.base + run_row * a.k.row_bytes;
    const uint8_t* run_v = a.v.base + run_row * a.v.row_bytes;
    auto issue = [&](int i) {
      const int p0 = i * S::NT, nv = min(S::NT, kv_max + 1 - p0);
      const int st = a.stages == 2 ? (i & 1) : 0;
      copy_tile<D, S::NT, S::THREADS>(a.k, run_k, p0, nv, smem + stage_offset(a, st, 0));
      copy_tile<D, S::NT, S::THREADS>(a.v, run_v, p0, nv, smem + stage_offset(a, st, 1));
      cp_async_commit();
    };
    issue(i_first);  // the first copy is in flight while Q loads

    const float* q0 = in0 ? a.q + static_cast<int64_t>(t_first + r0) * a.ldq + static_cast<int64_t>(h) * D : nullptr;
    const float* q1 = in1 ? a.q + static_cast<int64_t>(t_first + r1) * a.ldq + static_cast<int64_t>(h) * D : nullptr;
    float u0, u1;
    const float f0 = q_row_factor(q_local_amax<D>(q0), a.q_scale, u0);
    const float f1 = q_row_factor(q_local_amax<D>(q1), a.q_scale, u1);
    uint32_t qa[S::Q_SMEM ? 1 : S::KSTEPS][4];
    __half* sq_w = sq + warp * 16 * S::ROWH;  // this warp's 16 rows
    if constexpr (S::Q_SMEM) {
#pragma unroll
      for (int ks = 0; ks < S::KSTEPS; ++ks) {
        uint32_t f[4];
        q_fragment(q0, q1, f0, f1, 16 * ks, f);
        const int col = 16 * ks + 2 * c4;
        *reinterpret_cast<uint32_t*>(sq_w + g * S::ROWH + col) = f[0];
        *reinterpret_cast<uint32_t*>(sq_w + (g + 8) * S::ROWH + col) = f[1];
        *reinterpret_cast<uint32_t*>(sq_w + g * S::ROWH + col + 8) = f[2];
        *reinterpret_cast<uint32_t*>(sq_w + (g + 8) * S::ROWH + col + 8) = f[3];
      }
      __syncwarp();
    } else {
#pragma unroll
      for (int ks = 0; ks < S::KSTEPS; ++ks) q_fragment(q0, q1, f0, f1, 16 * ks, qa[ks]);
    }

    float o[S::OTILES][4];
#pragma unroll
    for (int j = 0; j < S::OTILES; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    for (int i = i_first; i < n_tiles; ++i) {
      const int st = a.stages == 2 ? (i & 1) : 0;
      if (a.stages == 2 && i + 1 < n_tiles) {
        issue(i + 1);
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();
      const uint8_t* stage_k = smem + stage_offset(a, st, 0);
      const uint8_t* stage_v = smem + stage_offset(a, st, 1);
      if (!a.k.direct || !a.v.direct) {
        if (!a.k.direct) dequant_tile<D, S::NT, S::THREADS>(a.k, stage_k, k16);
        if (!a.v.direct) dequant_tile<D, S::NT, S::THREADS>(a.v, stage_v, v16);
        __syncthreads();
      }
      if (a.stages == 1 && i + 1 < n_tiles && !a.k.direct && !a.v.direct) issue(i + 1);
      const __half* kt = a.k.direct ? reinterpret_cast<const __half*>(stage_k) : k16;
      const __half* vt = a.v.direct ? reinterpret_cast<const __half*>(stage_v) : v16;
      const int p0 = i * S::NT;

      if (p0 <= warp_max) {  // some row of this warp reaches this tile
        float s[S::STILES][4];
#pragma unroll
        for (int n = 0; n < S::STILES; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < S::KSTEPS; ++ks) {
          uint32_t af[4];
          if constexpr (S::Q_SMEM) {
            ldmatrix_x4(smem_addr(sq_w + ((lm & 1) * 8 + lr) * S::ROWH + ks * 16 + (lm >> 1) * 8), af[0], af[1], af[2],
                        af[3]);
          } else {
            af[0] = qa[ks][0], af[1] = qa[ks][1], af[2] = qa[ks][2], af[3] = qa[ks][3];
          }
#pragma unroll
          for (int np = 0; np < S::NT / 16; ++np) {
            uint32_t b0, b1, b2, b3;
            ldmatrix_x4(smem_addr(kt + (np * 16 + (lm >> 1) * 8 + lr) * S::ROWH + ks * 16 + (lm & 1) * 8), b0, b1, b2,
                        b3);
            mma16816(s[2 * np], af, b0, b1);
            mma16816(s[2 * np + 1], af, b2, b3);
          }
        }
        // Unscale (exact powers of two) and mask positions past each row's own (and past the
        // tile's loaded rows, which are past every row's position) and before its window.
        const bool need_mask = p0 + S::NT - 1 > warp_min || a.window > 0;
#pragma unroll
        for (int n = 0; n < S::STILES; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float v = s[n][e] * (e < 2 ? u0 : u1);
            const int col = p0 + n * 8 + 2 * c4 + (e & 1);
            s[n][e] = need_mask && (col > (e < 2 ? pos0 : pos1) || col < (e < 2 ? lo0 : lo1)) ? -INFINITY : v;
          }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int n = 0; n < S::STILES; ++n) {
          mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
          mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
        }
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
        for (int n = 0; n < S::STILES; ++n) {
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
#pragma unroll
        for (int kk = 0; kk < S::NT / 16; ++kk) {
          const uint32_t pa[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]), pack_half2(s[2 * kk][2], s[2 * kk][3]),
                                  pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
          for (int j = 0; j < D / 16; ++j) {
            uint32_t b0, b1, b2, b3;
            ldmatrix_x4_trans(smem_addr(vt + (kk * 16 + (lm & 1) * 8 + lr) * S::ROWH + 16 * j + (lm >> 1) * 8), b0, b1,
                              b2, b3);
            mma16816(o[2 * j], pa, b0, b1);
            mma16816(o[2 * j + 1], pa, b2, b3);
          }
        }
      }
      __syncthreads();
      if (a.stages == 1 && i + 1 < n_tiles && (a.k.direct || a.v.direct)) issue(i + 1);
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    if (in0) {
      float* out0 = a.out + static_cast<int64_t>(t_first + r0) * a.ldo + static_cast<int64_t>(h) * D + 2 * c4;
      const float inv = 1.0f / (l0 + sink_weight(a, h, m0));
#pragma unroll
      for (int j = 0; j < S::OTILES; ++j) {
        out0[8 * j] = o[j][0] * inv;
        out0[8 * j + 1] = o[j][1] * inv;
      }
    }
    if (in1) {
      float* out1 = a.out + static_cast<int64_t>(t_first + r1) * a.ldo + static_cast<int64_t>(h) * D + 2 * c4;
      const float inv = 1.0f / (l1 + sink_weight(a, h, m1));
#pragma unroll
      for (int j = 0; j < S::OTILES; ++j) {
        out1[8 * j] = o[j][2] * inv;
        out1[8 * j + 1] = o[j][3] * inv;
      }
    }
    if (c4 == 0) {  // rows done; read again only after the barrier at the top of the loop
      if (in0) s_pending[r0] = 0;
      if (in1) s_pending[r1] = 0;
    }
  }
}

}  // namespace

template <int D>
void launch_prompt(const Launch& a, int n_decode, int n_tokens, cudaStream_t stream) {
  const int n_prompt = n_tokens - n_decode;
  const dim3 grid(static_cast<unsigned>(ceil_div(n_prompt, kPromptRows)), static_cast<unsigned>(a.n_head));
  prompt_kernel<D><<<grid, kPromptThreads, a.smem_bytes, stream>>>(a, n_decode, n_tokens);
  VELOCITY_CUDA_LAUNCHED();
}

template void launch_prompt<64>(const Launch&, int, int, cudaStream_t);
template void launch_prompt<80>(const Launch&, int, int, cudaStream_t);
template void launch_prompt<96>(const Launch&, int, int, cudaStream_t);
template void launch_prompt<128>(const Launch&, int, int, cudaStream_t);
template void launch_prompt<256>(const Launch&, int, int, cudaStream_t);

void allow_prompt_smem(int max_bytes) {
  VELOCITY_CUDA(cudaFuncSetAttribute(prompt_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
  VELOCITY_CUDA(cudaFuncSetAttribute(prompt_kernel<80>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
  VELOCITY_CUDA(cudaFuncSetAttribute(prompt_kernel<96>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
  VELOCITY_CUDA(cudaFuncSetAttribute(prompt_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
  VELOCITY_CUDA(cudaFuncSetAttribute(prompt_kernel<256>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes));
}

}  // namespace velocity::engine::cuda::attn
