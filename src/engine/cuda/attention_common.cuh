// Internal to attention*.cu and kv_cache.cu: what the decode (split-KV) and prompt (tiled,
// tensor-core) attention kernels share — the launch description the host fills once per call,
// the workspace, and the device pieces: cp.async tile copies of cache rows, dequantisation of a
// tile to f16 in shared memory, ldmatrix / mma.sync m16n8k16 wrappers and the Q fragment load.
//
// Why the kernels are templated on the head dim only: the cache types are runtime values
// (uniform branches, a switch once per tile), so one instantiation per head dim serves every
// (K, V) type pair, mixes included, and CI compiles 5 + 5 kernels per architecture instead of
// one per head dim and type pair. What depends on the type is the copy into shared memory (F16
// rows go straight into the padded f16 tile the tensor cores read; other types are copied raw
// and converted once per tile) and the per-block dequantisation; the mma loop is the same.
//
// Numerics, the same in both paths: Q is scaled by scale * log2(e) (and, for a head whose values
// would leave f16 range, by a power of two that the scores undo exactly) and rounded to f16; K
// and V are f16 (the cache's own values for F16, q * d (+ m) rounded once to f16 otherwise);
// scores, maxima, sums and outputs are f32; P is rounded to f16 for the P.V product.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/kernels.h"

namespace velocity::engine::cuda::attn {

// ---- Shapes shared by host and device -----------------------------------------------------------

// Decode tokens split their positions [0, pos] into chunks of this many positions, at fixed
// absolute boundaries; a block handles one (token, KV head, chunk).
inline constexpr int kChunk = 256;
// Prompt kernel: query rows (tokens of one head) per block, 16 per warp.
inline constexpr int kPromptRows = 64;
inline constexpr int kPromptThreads = 128;
// Bytes at the start of dynamic shared memory for small per-block arrays (row info, scales).
inline constexpr int kMiscBytes = 1024;

// Positions of K/V a block copies and converts at a time: 64, or 32 for head dim 256 (whose
// tiles would not fit twice in the 99 KiB of shared memory an sm_86..sm_120 block may have).
constexpr int tile_positions(int d) { return d >= 256 ? 32 : 64; }
// Row stride of an f16 tile in halves: 16 bytes of padding, so the 8 rows an ldmatrix reads
// fall in different bank groups ((d + 8) / 8 is odd for every d that is a multiple of 16).
constexpr int tile_row_halves(int d) { return d + 8; }
// Decode: one warp per 16 positions of a tile.
constexpr int decode_threads(int d) { return 2 * tile_positions(d); }

// Cache element types as the kernels know them.
enum Kind : int { kF32 = 0, kF16 = 1, kQ8_0 = 2, kQ4_0 = 3, kQ4_1 = 4, kQ5_1 = 5 };

// One side (K or V) of a layer's cache.
struct Side {
  const uint8_t* base =
      nullptr;  // row (slot, kv head, pos) at base + ((slot * n_head_kv + head) * n_ctx + pos) * row_bytes
  int kind = kF16;
  int row_bytes = 0;
  bool direct = false;  // F16: copied straight into the padded f16 tile
  int stage_bytes = 0;  // bytes of one pipeline stage of this side (a padded f16 tile or raw rows)
};

// Everything a launch needs, filled on the host once per call (passed by value).
struct Launch {
  Side k, v;
  int n_slots = 0, n_ctx = 0, n_head_kv = 0, n_head = 0;
  int group = 1;  // query heads per KV head
  int n_rb = 1;   // decode: blocks of <= 16 query heads per KV head, ceil(group / 16)
  const float* q = nullptr;
  int64_t ldq = 0;
  float* out = nullptr;
  int64_t ldo = 0;
  float q_scale = 1;  // scale * log2(e): scores come out in log2 units
  int window = 0;     // > 0: a token at pos sees positions [pos - window + 1, pos] only
  const float* sinks = nullptr;  // [n_head] sink logits (natural log units), or null
  const int32_t* positions = nullptr;
  const int32_t* seq_ids = nullptr;
  int token0 = 0;    // first token of this launch
  int n_tokens = 0;  // tokens of this launch (decode) / of the call (prompt)
  // Decode workspace: partial outputs [token][head][chunk][dv], (max, sum) [token][head][chunk],
  // arrival counters [token][n_head] (zero between calls).
  float* ws_o = nullptr;
  float2* ws_ml = nullptr;
  unsigned* ws_counters = nullptr;
  int ws_chunks = 0;  // chunk stride of the workspace arrays
  // Shared memory layout (bytes from the start of dynamic shared memory).
  int stages = 2;
  int off_q = 0;                 // Q tile (head dim 256 only)
  int off_stage[2][2] = {};      // [stage][0 = K, 1 = V]
  int off_k16 = 0, off_v16 = 0;  // converted f16 tiles of non-direct sides
  int smem_bytes = 0;
};

// The workspace behind AttentionWorkspace.
class Workspace final : public AttentionWorkspace {
 public:
  Workspace(int64_t max_tokens, int64_t n_head, int64_t n_ctx, int64_t head_dim_v);
  ~Workspace() override;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  int64_t tokens_cap = 0;  // decode tokens one launch can hold partials for
  int64_t n_head = 0, n_chunks = 0, head_dim_v = 0;
  int max_smem = 0;  // opt-in dynamic shared memory per block of the device
  float* d_o = nullptr;
  float2* d_ml = nullptr;
  unsigned* d_counters = nullptr;
};

// The device bytes a Workspace allocates.
uint64_t workspace_bytes(int64_t max_tokens, int64_t n_head, int64_t n_ctx, int64_t head_dim_v);

// Launchers, one explicit instantiation per head dim (attention_decode.cu, attention_prompt.cu).
// The caller has checked that the layout fits (smem_bytes <= the device's limit).
template <int D>
void launch_decode(const Launch& a, int n_tokens, cudaStream_t stream);
template <int D>
void launch_prompt(const Launch& a, int n_decode, int n_tokens, cudaStream_t stream);
// Raises the kernels' dynamic shared memory limit to max_bytes (once per device and kernel).
void allow_decode_smem(int max_bytes);
void allow_prompt_smem(int max_bytes);

// ---- Device pieces --------------------------------------------------------------------------------
#if defined(__CUDACC__)

// Offset of stage st (0, 1) of side 0 (K) or 1 (V), with selects: indexing the launch
// parameters with a runtime value would copy them to local memory.
__device__ __forceinline__ int stage_offset(const Launch& a, int st, int side) {
  const int k = st ? a.off_stage[1][0] : a.off_stage[0][0];
  const int v = st ? a.off_stage[1][1] : a.off_stage[0][1];
  return side ? v : k;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; bytes past src_bytes (0..16) are zero-filled.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lane 8i + r gives the address of row r of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                                  uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// c (16x8, f32) += a (16x16, f16, row-major fragment) * b (16x8, f16, column-major fragment).
// Fragments (g = lane / 4, c = lane % 4): a0 (g, 2c..2c+1), a1 (g+8, 2c..), a2 (g, 2c+8..),
// a3 (g+8, 2c+8..); b0 (k 2c..2c+1, n g), b1 (k 2c+8.., n g); c0,c1 (g, 2c..2c+1), c2,c3 (g+8, ..).
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ float ld_half(const uint8_t* p) {
  return __half2float(__ushort_as_half(*reinterpret_cast<const uint16_t*>(p)));
}
__device__ __forceinline__ uint32_t ld_u16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }

// Elements [e0, e0 + 8) of one cache row (e0 a multiple of 8) as floats: exactly the reference
// dequantiser's values (core/quant_legacy.cpp). Rows are 2-byte aligned; F32 rows 16-byte.
template <int KIND>
__device__ __forceinline__ void dequant8(const uint8_t* row, int e0, float (&x)[8]) {
  if constexpr (KIND == kF32) {
    const float4 a = *reinterpret_cast<const float4*>(row + 4 * e0);
    const float4 b = *reinterpret_cast<const float4*>(row + 4 * e0 + 16);
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
  } else if constexpr (KIND == kF16) {
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] = ld_half(row + 2 * (e0 + i));
  } else if constexpr (KIND == kQ8_0) {  // 34 bytes: d, qs[32]
    const uint8_t* blk = row + (e0 >> 5) * 34;
    const float d = ld_half(blk);
    const uint8_t* qs = blk + 2 + (e0 & 31);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = ld_u16(qs + 2 * i);
      x[2 * i] = static_cast<float>(static_cast<int8_t>(w & 0xFF)) * d;
      x[2 * i + 1] = static_cast<float>(static_cast<int8_t>(w >> 8)) * d;
    }
  } else {  // Q4_0 (18 bytes: d, qs[16]), Q4_1 (20: d, m, qs), Q5_1 (24: d, m, qh[4], qs)
    constexpr int kBytes = KIND == kQ4_0 ? 18 : KIND == kQ4_1 ? 20 : 24;
    constexpr int kQs = KIND == kQ4_0 ? 2 : KIND == kQ4_1 ? 4 : 8;
    const uint8_t* blk = row + (e0 >> 5) * kBytes;
    const int j0 = e0 & 31;  // element j < 16: low nibble of qs[j]; j >= 16: high nibble of qs[j - 16]
    const float d = ld_half(blk);
    const float m = KIND == kQ4_0 ? 0.0f : ld_half(blk + 2);
    const uint32_t qh = KIND == kQ5_1 ? (ld_u16(blk + 4) | ld_u16(blk + 6) << 16) : 0u;
    const uint8_t* qs = blk + kQs + (j0 & 15);
    const int shift = j0 >= 16 ? 4 : 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = ld_u16(qs + 2 * i);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int j = j0 + 2 * i + h;
        int q = static_cast<int>((w >> (8 * h + shift)) & 0xF);
        if constexpr (KIND == kQ5_1) q |= static_cast<int>((qh >> j) & 1u) << 4;
        // q * d is exact in f32, so q * d + m rounds once, as the reference's multiply-then-add does.
        x[2 * i + h] = KIND == kQ4_0 ? static_cast<float>(q - 8) * d : static_cast<float>(q) * d + m;
      }
    }
  }
}

// Converts the raw rows of a stage (rows of row_bytes, contiguous) to the f16 tile [NT][D + 8].
template <int D, int NT, int THREADS, int KIND>
__device__ __forceinline__ void dequant_tile_kind(const uint8_t* raw, int row_bytes, __half* dst) {
  constexpr int kUnits = D / 8;  // 8 elements, 16 bytes of f16, per unit
  for (int u = threadIdx.x; u < NT * kUnits; u += THREADS) {
    const int r = u / kUnits, e0 = (u % kUnits) * 8;
    float x[8];
    dequant8<KIND>(raw + r * row_bytes, e0, x);
    const uint4 packed =
        make_uint4(pack_half2(x[0], x[1]), pack_half2(x[2], x[3]), pack_half2(x[4], x[5]), pack_half2(x[6], x[7]));
    *reinterpret_cast<uint4*>(dst + r * tile_row_halves(D) + e0) = packed;
  }
}

template <int D, int NT, int THREADS>
__device__ __forceinline__ void dequant_tile(const Side& s, const uint8_t* raw, __half* dst) {
  switch (s.kind) {  // uniform over the block
    case kF32: dequant_tile_kind<D, NT, THREADS, kF32>(raw, s.row_bytes, dst); break;
    case kQ8_0: dequant_tile_kind<D, NT, THREADS, kQ8_0>(raw, s.row_bytes, dst); break;
    case kQ4_0: dequant_tile_kind<D, NT, THREADS, kQ4_0>(raw, s.row_bytes, dst); break;
    case kQ4_1: dequant_tile_kind<D, NT, THREADS, kQ4_1>(raw, s.row_bytes, dst); break;
    case kQ5_1: dequant_tile_kind<D, NT, THREADS, kQ5_1>(raw, s.row_bytes, dst); break;
    default: dequant_tile_kind<D, NT, THREADS, kF16>(raw, s.row_bytes, dst); break;
  }
}

// Issues the copies of rows [p0, p0 + n_valid) of one (slot, head) run into a stage; rows
// [n_valid, NT) are zero-filled (their scores are masked, and V must be finite there: 0 * NaN
// would poison the P.V product). Direct sides land in the padded f16 tile, others as raw rows.
// Needs run and row_bytes * NT to be multiples of 16 bytes (checked by the host).
template <int D, int NT, int THREADS>
__device__ __forceinline__ void copy_tile(const Side& s, const uint8_t* run, int p0, int n_valid, uint8_t* stage) {
  const uint32_t dst = smem_addr(stage);
  if (s.direct) {
    constexpr int kChunksPerRow = D / 8;  // 16-byte chunks of an f16 row
    const uint8_t* src0 = run + static_cast<int64_t>(p0) * (2 * D);
    for (int i = threadIdx.x; i < NT * kChunksPerRow; i += THREADS) {
      const int r = i / kChunksPerRow, cc = i % kChunksPerRow;
      const bool ok = r < n_valid;
      cp_async16(dst + r * (2 * tile_row_halves(D)) + 16 * cc, ok ? src0 + r * (2 * D) + 16 * cc : run, ok ? 16 : 0);
    }
  } else {
    const uint8_t* src0 = run + static_cast<int64_t>(p0) * s.row_bytes;
    const int n_chunks = NT * s.row_bytes / 16, valid_bytes = n_valid * s.row_bytes;
    for (int i = threadIdx.x; i < n_chunks; i += THREADS) {
      const int left = valid_bytes - 16 * i;
      const int bytes = left >= 16 ? 16 : (left > 0 ? left : 0);
      cp_async16(dst + 16 * i, bytes > 0 ? src0 + 16 * i : run, bytes);
    }
  }
}

// The A fragments of Q for one k step of 16 dims, rows g and g + 8 (g = lane / 4) of a 16-row
// block: row pointers (null: a padding row, zeros) scaled by the row factors.
__device__ __forceinline__ void q_fragment(const float* q0, const float* q1, float f0, float f1, int k0,
                                           uint32_t (&a)[4]) {
  const int c = (threadIdx.x & 31) & 3;
  const int k = k0 + 2 * c;
  a[0] = q0 ? pack_half2(q0[k] * f0, q0[k + 1] * f0) : 0u;
  a[1] = q1 ? pack_half2(q1[k] * f1, q1[k + 1] * f1) : 0u;
  a[2] = q0 ? pack_half2(q0[k + 8] * f0, q0[k + 9] * f0) : 0u;
  a[3] = q1 ? pack_half2(q1[k + 8] * f1, q1[k + 9] * f1) : 0u;
}

inline constexpr float kLog2e = 1.4426950408889634f;

// The first position a token at `pos` attends to (the sliding window's start, else 0).
__device__ __forceinline__ int first_position(const Launch& a, int pos) {
  return a.window > 0 ? max(0, pos - a.window + 1) : 0;
}

// What head h's sink adds to the softmax denominator of a row whose scores (log2 units) have the
// maximum mx and sum to l relative to it: out = o / (l + sink_weight). 0 without sinks.
__device__ __forceinline__ float sink_weight(const Launch& a, int h, float mx) {
  return a.sinks != nullptr ? exp2f(a.sinks[h] * kLog2e - mx) : 0.0f;
}

// The factor that takes a Q row to f16: q_scale, times 2^-e when max |q| * q_scale would pass
// 2^14 (then scores are multiplied back by unscale = 2^e, exactly). The four lanes of a quad hold
// the row between them; every lane of the quad gets the same answer.
__device__ __forceinline__ float q_row_factor(float local_amax, float q_scale, float& unscale) {
  float amax = fmaxf(local_amax, __shfl_xor_sync(0xffffffffu, local_amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
  const float scaled = amax * q_scale;
  unscale = 1.0f;
  if (scaled > 16384.0f && scaled <= 3.0e38f) {
    int e = 0;
    frexpf(scaled / 16384.0f, &e);  // scaled / 2^14 <= 2^e
    unscale = ldexpf(1.0f, e);
    return q_scale * ldexpf(1.0f, -e);
  }
  return q_scale;
}

// Max |x| over the elements of a row this lane's fragments hold (k steps of 16 dims).
template <int D>
__device__ __forceinline__ float q_local_amax(const float* row) {
  if (!row) return 0.0f;
  const int c = (threadIdx.x & 31) & 3;
  float m = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const int k = 16 * ks + 2 * c;
    m = fmaxf(m, fmaxf(fmaxf(fabsf(row[k]), fabsf(row[k + 1])), fmaxf(fabsf(row[k + 8]), fabsf(row[k + 9]))));
  }
  return m;
}

#endif  // __CUDACC__

}  // namespace velocity::engine::cuda::attn
