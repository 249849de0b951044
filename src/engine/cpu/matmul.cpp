// The driver: validates, quantises the activations once (threads split tokens, or blocks of a
// token when there are fewer tokens than threads), then hands out chunks of rows from an atomic
// counter to the pool's threads. A chunk is a run of consecutive rows (>= 64 KiB of weights where
// the matrix allows), so each thread streams through memory and the hardware prefetcher sees long
// sequential runs; chunks are small enough that a thread slowed by the OS does not hold up the
// rest. Results do not depend on which thread computes which row (matmul_kernels.h).
#include "engine/cpu/matmul.h"

#include <algorithm>
#include <atomic>

#include "core/cpu_features.h"
#include "core/error.h"
#include "engine/cpu/matmul_kernels.h"

namespace velocity::engine::cpu {
namespace {

struct Kernels {
  RowsKernel rows = nullptr;
  QuantizeActFn quantize = nullptr;
};

Kernels pick_kernels(DType type, ActKind kind) {
  Kernels k;
  const CpuIsa isa = best_cpu_isa();
#if defined(__x86_64__)
  if (isa >= CpuIsa::Avx512) {
    if (!k.rows) k.rows = avx512_rows_kernel(type);
    if (!k.quantize && kind != ActKind::F32) k.quantize = avx512_quantizer(kind);
  }
  if (isa >= CpuIsa::Avx2) {
    if (!k.rows) k.rows = avx2_rows_kernel(type);
    if (!k.quantize && kind != ActKind::F32) k.quantize = avx2_quantizer(kind);
  }
#else
  (void)isa;
#endif
  if (!k.rows) k.rows = scalar_rows_kernel(type);
  if (!k.quantize && kind != ActKind::F32) k.quantize = scalar_quantizer(kind);
  return k;
}

// Rows per chunk handed out by the counter.
int64_t chunk_rows(int64_t n_out, int64_t row_bytes, int n_threads) {
  constexpr int64_t kMinChunkBytes = 64 << 10;
  const int64_t by_bytes = (kMinChunkBytes + row_bytes - 1) / std::max<int64_t>(1, row_bytes);
  const int64_t by_balance = (n_out + 4 * n_threads - 1) / (4 * n_threads);  // >= 4 chunks a thread
  return std::max<int64_t>(1, std::min(by_bytes, by_balance));
}

}  // namespace

bool matmul_supports(DType type) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::MXFP4: return true;
    default: return false;
  }
}

Matmul::Matmul(ThreadPool& pool, int64_t max_tokens, int64_t max_n_in)
    : pool_(pool), max_tokens_(max_tokens), max_n_in_(max_n_in) {
  VELOCITY_CHECK(max_tokens > 0 && max_n_in > 0, "Matmul scratch for {} tokens of {} inputs", max_tokens, max_n_in);
  const int64_t per_token = std::max(act_token_bytes(ActKind::Q8_32, max_n_in), act_token_bytes(ActKind::Q8_K, max_n_in));
  // +64: the scratch start is aligned up to 64 bytes inside the vector.
  scratch_.resize((size_t)(per_token * max_tokens + 64));
}

void Matmul::run(const Weight& w, const float* x, int64_t ldx, int64_t n_tokens, float* y, int64_t ldy) {
  if (!matmul_supports(w.type)) fail("matmul: weight '{}' has type {}, which the CPU backend cannot multiply", w.name, dtype_name(w.type));
  if (w.n_mat != 1) fail("matmul: weight '{}' has {} matrices; pass one (Weight::matrix)", w.name, w.n_mat);
  if (w.n_in > max_n_in_) fail("matmul: weight '{}' has {} inputs, more than the {} this Matmul was sized for", w.name, w.n_in, max_n_in_);
  if (n_tokens < 0 || n_tokens > max_tokens_) fail("matmul: {} tokens, more than the {} this Matmul was sized for", n_tokens, max_tokens_);
  const int64_t block = dtype_block_size(w.type);
  if (w.n_in <= 0 || w.n_in % block != 0) fail("matmul: weight '{}' has {} inputs, not a multiple of {}'s block of {}", w.name, w.n_in, dtype_name(w.type), block);
  if (w.row_bytes != dtype_row_bytes(w.type, w.n_in)) fail("matmul: weight '{}' has {} bytes per row, expected {}", w.name, w.row_bytes, dtype_row_bytes(w.type, w.n_in));
  VELOCITY_CHECK(w.data != nullptr && x != nullptr && y != nullptr, "matmul on '{}' with a null pointer", w.name);
  VELOCITY_CHECK(ldx >= w.n_in && ldy >= w.n_out, "matmul on '{}': ldx {} < n_in {} or ldy {} < n_out {}", w.name, ldx, w.n_in, ldy, w.n_out);
  if (n_tokens == 0 || w.n_out == 0) return;

  const ActKind kind = act_kind(w.type);
  const Kernels kernels = pick_kernels(w.type, kind);
  const int nth = pool_.size();

  MatmulArgs args;
  args.w = w.data;
  args.row_bytes = w.row_bytes;
  args.n_in = w.n_in;
  args.x = x;
  args.ldx = ldx;
  args.n_tokens = n_tokens;
  args.y = y;
  args.ldy = ldy;

  if (kind != ActKind::F32) {
    uint8_t* act = scratch_.data() + (64 - reinterpret_cast<uintptr_t>(scratch_.data()) % 64) % 64;
    const int64_t stride = act_token_bytes(kind, w.n_in);
    const int64_t act_block = act_block_size(kind);
    const int64_t n_blocks = w.n_in / act_block;
    // Units of work: (token, part); parts split a token's blocks when tokens are few.
    const int64_t parts = std::min<int64_t>(n_blocks, (nth + n_tokens - 1) / n_tokens);
    const QuantizeActFn quantize = kernels.quantize;
    pool_.parallel_for(n_tokens * parts, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t t = u / parts, p = u % parts;
        const int64_t b0 = n_blocks * p / parts, b1 = n_blocks * (p + 1) / parts;
        quantize(x + t * ldx, act + t * stride, w.n_in, b0 * act_block, b1 * act_block);
      }
    });
    args.act = act;
    args.act_stride = stride;
  }

  const int64_t chunk = chunk_rows(w.n_out, w.row_bytes, nth);
  const int64_t n_chunks = (w.n_out + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  const RowsKernel rows = kernels.rows;
  const int64_t n_out = w.n_out;
  pool_.run([&](int, int) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < n_chunks; c = next.fetch_add(1, std::memory_order_relaxed))
      rows(args, c * chunk, std::min(n_out, (c + 1) * chunk));
  });
}

}  // namespace velocity::engine::cpu
