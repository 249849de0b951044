// Internal to matmul*.cu: what the matrix-product kernels share — the workspace, the launch
// descriptions the host fills once per call, and the device pieces (mma.sync m16n8k16,
// ldmatrix, cp.async, programmatic dependent launch).
//
// The paths (matmul.cu picks them; each is instantiated once per weight type):
//   convert  x (F32) -> x16 (F16) per token, scaled by a power of two 2^e so that max |x| is in
//            [2^13, 2^14) (f16 range with room for outliers of any size; undone exactly on the
//            output), plus per-16 and per-32 sums of the converted values for the formats with
//            an offset (y = s q + o needs sum x per sub-block); for decode rows of a Q4_K product
//            also int8 values (x8: per token and 256 elements a float scale, the CPU backend's
//            Q8_K rounding) and their sums per 32.                              (matmul_aux.cu)
//   decode   tokens [0, n_decode): weight rows streamed once for all of them; a warp owns 16
//            rows, the tensor cores multiply integer levels (f16 levels by x16, or Q4_K's
//            4-bit levels by x8 in int8), scales applied per sub-block.        (matmul_decode.cuh)
//   prompt   the other tokens: 128 x 128 tiles, weights dequantised to f16 in shared memory,
//            activations by cp.async, ldmatrix + mma.                           (matmul_prompt.cuh)
//   generic  F32 weights (and F16/BF16 rows whose length is not a multiple of 64): f32 on CUDA
//            cores, one warp per (row, 8 tokens).                               (matmul.cu)
// Determinism: every path computes a token's outputs in an order fixed by the weight's shape
// alone (K split points, reduction trees, tile k order); mma output columns depend only on
// their own B column. So a token's result is the same whichever tokens share its call.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/kernels.h"
#include "engine/cuda/matmul_tuning.cuh"
#include "engine/cuda/quant_device.cuh"

namespace velocity::engine::cuda::mm {

inline constexpr int kThreads = 256;                         // every matmul kernel: 8 warps
inline constexpr int kDecodeTokens = 64;                     // decode tokens per launch (8 n-tiles of 8)
inline constexpr int kPromptRows = 128;                      // prompt block tile: weight rows (8 warps x 16)
inline constexpr int kPromptTokens = 128;                    //                    tokens
inline constexpr int kPromptStages = 3;                      // cp.async stages of the activation tile
inline constexpr int64_t kPartialFloats = int64_t{2} << 20;  // split-K partial sums of one weight (8 MiB)
inline constexpr int kCounters = 16384;                      // split-K arrival counters of one weight (per row block)
inline constexpr int kMaxExperts = 1024;                     // matmul_ids routing tables

static_assert(kThreads == 8 * 32 && kPromptRows == 8 * kTileRows, "a prompt block's 8 warps dequantise 8 row tiles");
static_assert(kPromptStages >= 2 && kPromptStages <= 4, "cp.async wait counts are spelled out for 2..4 stages");

// Device scratch, sized at creation (kernels.h make_matmul_workspace).
class Workspace final : public MatmulWorkspace {
 public:
  Workspace(int64_t max_rows, int64_t max_n_in);
  ~Workspace() override;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  int device = 0, n_sm = 0, cc_major = 0;
  int64_t max_rows = 0, max_n_in = 0;
  int64_t ldk = 0;                // halves per x16 row: max_n_in rounded up to 256
  int64_t ld_xs = 0;              // rows of the xs arrays (max_rows rounded up to 8)
  __half* x16 = nullptr;          // [max_rows][ldk] converted activations (row = x row)
  float* inv_scale = nullptr;     // [max_rows] 2^-e of each converted row
  float* xs16 = nullptr;          // [ld_xs][ldk / 16] sums of 16 converted activations (row = x row)
  float* xs32 = nullptr;          // [ld_xs][ldk / 32] sums of 32
  int8_t* x8 = nullptr;           // [ld_xs][ldk] int8 activations of decode rows (kI8 formats)
  float* xd = nullptr;            // [ld_xs][ldk / 256] their scales
  int16_t* bs32 = nullptr;        // [ld_xs][ldk / 32] sums of 32 int8 values
  float* partial = nullptr;       // [kMaxDecodeParts][kPartialFloats] split-K partial sums
  int* counters = nullptr;        // [kMaxDecodeParts][kCounters] split-K arrivals, zero between launches
  int32_t* expert_off = nullptr;  // [kMaxExperts + 1] first routed pair of each expert
  int32_t* tile_off = nullptr;    // [kMaxExperts + 1] first prompt tile of each expert
  int32_t* pair_list = nullptr;   // [max_rows] routed (token, slot) pairs grouped by expert
  DecodeTuning tuning;            // launch-size overrides (kernel lab)
  bool waves = false;             // one-wave decode shapes for the kI8 formats (matmul.cu)
};

// ---- Launch descriptions ------------------------------------------------------------------------

struct WeightView {
  const uint8_t* data = nullptr;  // matrix 0
  int64_t stride = 0;             // bytes per row
  int64_t mat_bytes = 0;          // n_out * stride (the next expert)
  int n_out = 0, n_mat = 1, n_in = 0;
  RowLayout rl;
};

struct ActView {
  const __half* x16 = nullptr;
  int64_t ldk = 0;
  const float* inv_scale = nullptr;
  const float* xs16 = nullptr;
  const float* xs32 = nullptr;    // rows of ldk / 16 and ldk / 32 floats
  const int8_t* x8 = nullptr;     // rows of ldk bytes (decode rows of the kI8 formats) ...
  const float* xd = nullptr;      // ... ldk / 256 scales ...
  const int16_t* bs32 = nullptr;  // ... and ldk / 32 sums
};

// Decode products that multiply int8 activations (Fmt<T>::kI8): Q4_K, whose 4-bit levels are
// int8 operands as they stand (matmul_decode.cuh says why it pays).
inline constexpr bool decode_q8(DType type) { return type == DType::Q4_K; }
// The formats' side of it (quant_device.cuh: Fmt<T>::kI8); matmul.cu checks the two agree.
template <class F>
inline constexpr bool kI8 = requires { requires F::kI8; };

// Decode: grid (blocks, 1, jobs). A job is the whole call (plain) or one (token, slot) pair of
// matmul_ids (ids != nullptr: one token, the expert read from ids[job]). A plain launch may
// multiply several weights of one type and input length at once (Q, K and V; gate and up): part
// i owns blocks [part[i - 1].block_end, part[i].block_end), row_blocks x splits of them (block
// b of the part: row block b % row_blocks, K split b / row_blocks), with its own outputs, partial
// sums and counters. Each part's launch shape is the one it would have alone, so its results do
// not depend on the weights beside it.
inline constexpr int kMaxDecodeParts = 3;
struct DecodePart {
  const uint8_t* data = nullptr;  // the weight (stride, row layout and n_in: those of DecodeParams::w)
  float* y = nullptr;
  int64_t ldy = 0;
  int n_out = 0;
  int row_blocks = 1, splits = 1, block_end = 0;
  int accumulate = 0;        // y += the product
  float* partial = nullptr;  // splits > 1: [split][token][row_blocks * wr * 16]
  int* counters = nullptr;   // [row_blocks]
};
struct DecodeParams {
  WeightView w;  // part 0's weight (matmul_ids: the experts)
  ActView a;
  DecodePart part[kMaxDecodeParts];
  int n_parts = 1;
  int n_iters = 0;  // iterations of Fmt::kIterChunks chunks per row
  int wr = 8;       // warps (16-row tiles) per block along the rows ...
  int wk_log2 = 0;  // ... and log2 of the warps splitting K (wr << wk_log2 == 8)
  int n_tok = 0;    // plain: decode tokens of this launch (<= kDecodeTokens), x rows [0, n_tok)
  const int32_t* ids = nullptr;
  int k = 1;
  int x_per_slot = 0;
};

// Prompt: grid (token tiles, row blocks of 128). Plain: tokens [t0, t1); ids: tile b of the
// routed pairs (tile_off / expert_off / pair_list filled by the routing kernel).
struct PromptParams {
  WeightView w;
  ActView a;
  float* y = nullptr;
  int64_t ldy = 0;
  int accumulate = 0;  // y += the product (plain only)
  int t0 = 0, t1 = 0;
  int ids_mode = 0;
  const int32_t* pair_list = nullptr;
  const int32_t* expert_off = nullptr;
  const int32_t* tile_off = nullptr;
  int n_expert = 0, k = 1, x_per_slot = 0;
};

// Per type (explicit instantiations in matmul_decode_*.cu / matmul_prompt_*.cu).
template <DType kT>
void launch_decode(const DecodeParams& p, dim3 grid, int max_tokens_per_job, bool pdl, cudaStream_t stream);
template <DType kT>
void launch_prompt(const PromptParams& p, dim3 grid, cudaStream_t stream);

// Chunks a decode iteration reads, per type (Fmt<T>::kIterChunks).
int iter_chunks(DType type);

// ---- The small kernels (matmul_aux.cu) ---------------------------------------------------------

// x (n_rows, ldx) F32 -> x16 (n_rows, ldk) F16 * 2^e, inv_scale = 2^-e, and for rows < n_xs the
// sums of 16 and 32 converted values (xs16 / xs32 [row][ldk / 16 or 32]); k in [n_in, k_pad) zero.
// Rows < n_x8 also get int8 values: per 256 elements d = amax / 127 (of x * 2^e) into
// xd, q = nearbyint(x * 2^e * 127 / amax) into x8 (inside each 32 in the order the Q4_K decode
// reads them: element 16 h + 4 c + j at byte 8 c + 2 j + h), and the sum of each 32 q into bs32.
struct ConvertParams {
  const float* x = nullptr;
  int64_t ldx = 0;
  int n_rows = 0, n_in = 0, k_pad = 0, n_xs = 0, n_x8 = 0;
  __half* x16 = nullptr;
  int64_t ldk = 0;
  float* inv_scale = nullptr;
  float* xs16 = nullptr;
  float* xs32 = nullptr;
  int8_t* x8 = nullptr;
  float* xd = nullptr;
  int16_t* bs32 = nullptr;
  const float* norm_w = nullptr;  // the prologue (MatmulPrologue): rms_norm with these weights ...
  float norm_eps = 0.0f;
  const float* gate = nullptr;  // ... or silu(gate) * x
  int64_t ldgate = 0;
};
void launch_convert(const ConvertParams& p, cudaStream_t stream);

// Groups the (token, slot) pairs [p0, p1) by expert: expert_off, tile_off (in prompt tiles of
// 128 pairs) and pair_list of the workspace. One block; n_expert <= kMaxExperts.
void launch_route(const int32_t* ids, int p0, int p1, int n_expert, Workspace& ws, cudaStream_t stream);

// F32 on CUDA cores, any type in the GGUF layout: one warp per (row, 8 tokens). Plain: tokens
// [0, n_tok) (x row = y row = token); ids != nullptr: one job per (token, slot) pair.
struct GenericParams {
  const uint8_t* w = nullptr;
  int64_t stride = 0, mat_bytes = 0;
  DType type = DType::F32;
  int n_in = 0, n_out = 0, n_mat = 1;
  const float* x = nullptr;
  int64_t ldx = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  int accumulate = 0;  // y += the product (plain only)
  int n_tok = 0;
  const int32_t* ids = nullptr;
  int k = 1, x_per_slot = 0, n_pairs = 0;
};
void launch_generic(const GenericParams& p, cudaStream_t stream);

// out[t] = row ids[t] of a weight (either layout) as F32.
struct GetRowsParams {
  const uint8_t* w = nullptr;
  int64_t stride = 0, n_rows = 0;  // rows of all matrices (n_out * n_mat)
  DType type = DType::F32;
  int n_in = 0;
  bool row_layout = false;  // the CUDA row layout (else GGUF rows)
  RowLayout rl;
  const int32_t* ids = nullptr;
  int n = 0;
  float* out = nullptr;
  int64_t ldo = 0;
};
void launch_get_rows(const GetRowsParams& p, cudaStream_t stream);

// ---- Device pieces -------------------------------------------------------------------------------
#if defined(__CUDACC__)

// D = A B + D, A 16x16 f16 (row), B 16x8 f16 (col), D 16x8 f32.
__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// D = A B, A 16x32 s8 (row), B 32x8 s8 (col), D 16x8 s32, a zero accumulator.
__device__ __forceinline__ void mma_16832_s8_zero(int d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0));
}

// D = A B (a zero accumulator, no registers to clear first).
__device__ __forceinline__ void mma_16816_zero(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; src_bytes = 0 fills zeros.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

// Programmatic dependent launch (sm_90+): the converter lets the decode kernel start early; the
// decode kernel prefetches weights, then waits for the converter's writes. No-ops elsewhere.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

#endif  // __CUDACC__

}  // namespace velocity::engine::cuda::mm
