// The driver: validates, quantises the activations once (threads split tokens, or blocks of a
// token when there are fewer tokens than threads), then hands out chunks of rows from an atomic
// counter to the pool's threads. A chunk is a run of consecutive rows (>= 64 KiB of weights where
// the matrix allows), so each thread streams through memory and the hardware prefetcher sees long
// sequential runs; chunks are small enough that a thread slowed by the OS does not hold up the
// rest. Results do not depend on which thread computes which row (matmul_kernels.h). Packed
// weights (matmul_packed.h) are handed out in whole 16-row tiles; their GGUF-layout tail rows go
// to the plain kernel as one more chunk.
#include "engine/cpu/matmul.h"

#include <algorithm>
#include <atomic>

#include <cstring>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/quant.h"
#include "engine/cpu/matmul_kernels.h"
#include "engine/cpu/matmul_packed.h"

namespace velocity::engine::cpu {
namespace {

struct Kernels {
  RowsKernel rows = nullptr;
  RowsKernel packed_rows = nullptr;
  QuantizeActFn quantize = nullptr;
};

Kernels pick_kernels(DType type, ActKind kind) {
  Kernels k;
  const CpuIsa isa = best_cpu_isa();
#if defined(__x86_64__)
  if (isa >= CpuIsa::Avx512) {
    if (!k.packed_rows) k.packed_rows = avx512_packed_rows_kernel(type);
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
  if (!k.packed_rows) k.packed_rows = scalar_packed_rows_kernel(type);
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

bool is_packed(const Weight& w) { return w.layout == WeightLayout::CpuPacked; }

}  // namespace

int64_t packed_size(const Weight& w) {
  if (!has_packed_layout(w.type) || w.n_out < kPackRows || w.n_in % dtype_block_size(w.type) != 0 || is_packed(w)) return 0;
  if (best_cpu_isa() < CpuIsa::Avx512) return 0;  // the scalar and AVX2 kernels read GGUF rows as fast
  return w.n_mat * w.n_out * packed_row_bytes(w.type, w.n_in);
}

namespace {

// One tile of 16 Q4_K rows (matmul_packed.h), nsb super-blocks.
void pack_q4_k_tile(const uint8_t* src, int64_t row_bytes, int64_t nsb, uint8_t* tile) {
  for (int64_t b = 0; b < nsb; ++b) {
    uint8_t* out = tile + kPackedQ4KBytes * b;
    uint8_t* meta = out + 2048;
    for (int i = 0; i < kPackRows; ++i) {
      const uint8_t* block = src + i * row_bytes + 144 * b;
      for (int c = 0; c < 4; ++c)
        for (int k = 0; k < 8; ++k) std::memcpy(out + 512 * c + 64 * k + 4 * i, block + 16 + 32 * c + 4 * k, 4);
      std::memcpy(meta + 2 * i, block, 2);
      std::memcpy(meta + 32 + 2 * i, block + 2, 2);
      const uint8_t* packed = block + 4;
      uint32_t high = 0;
      for (int j = 0; j < 8; ++j) {
        const int sc = j < 4 ? packed[j] & 63 : (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4);
        const int m = j < 4 ? packed[j + 4] & 63 : (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
        meta[64 + 16 * j + i] = (uint8_t)((sc & 15) | (m & 15) << 4);
        high |= (uint32_t)(sc >> 4) << (2 * j) | (uint32_t)(m >> 4) << (16 + 2 * j);
      }
      std::memcpy(meta + 192 + 4 * i, &high, 4);
    }
  }
}

// One tile of 16 Q6_K rows (matmul_packed.h), nsb super-blocks.
void pack_q6_k_tile(const uint8_t* src, int64_t row_bytes, int64_t nsb, uint8_t* tile) {
  for (int64_t b = 0; b < nsb; ++b) {
    uint8_t* out = tile + kPackedQ6KBytes * b;
    for (int i = 0; i < kPackRows; ++i) {
      const uint8_t* block = src + i * row_bytes + 210 * b;
      for (int c = 0; c < 4; ++c)
        for (int k = 0; k < 8; ++k) std::memcpy(out + 512 * c + 64 * k + 4 * i, block + 32 * c + 4 * k, 4);
      for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 8; ++k) std::memcpy(out + 2048 + 512 * h + 64 * k + 4 * i, block + 128 + 32 * h + 4 * k, 4);
      for (int s = 0; s < 16; ++s) out[3072 + 16 * s + i] = block[192 + s];
      std::memcpy(out + 3328 + 2 * i, block + 208, 2);
    }
  }
}

}  // namespace

Weight pack_weight(const Weight& w, uint8_t* dst) {
  VELOCITY_CHECK(has_packed_layout(w.type) && w.layout == WeightLayout::Gguf && w.stride == w.row_bytes &&
                     w.row_bytes == dtype_row_bytes(w.type, w.n_in) && w.n_in % dtype_block_size(w.type) == 0,
                 "pack_weight: '{}' ({}, {} bytes a row) has no packed layout", w.name, dtype_name(w.type), w.row_bytes);
  Weight p = w;
  p.layout = WeightLayout::CpuPacked;
  p.stride = packed_row_bytes(w.type, w.n_in);
  p.data = dst;
  const int64_t nb = w.n_in / 32, n_full = w.n_out / kPackRows * kPackRows;
  const int64_t block_bytes = w.row_bytes / nb, quant_bytes = packed_quant_bytes(w.type), scale_bytes = packed_scale_bytes(w.type);
  const int64_t head = block_bytes - quant_bytes / kPackRows;  // the scale's bytes at the start of a GGUF block
  const int64_t tile_bytes = kPackRows * p.stride;
  for (int64_t m = 0; m < w.n_mat; ++m) {
    const uint8_t* src = w.data + m * w.n_out * w.row_bytes;
    uint8_t* out = dst + m * w.n_out * p.stride;
    for (int64_t r0 = 0; r0 < n_full; r0 += kPackRows) {
      uint8_t* tile = out + r0 * p.stride;
      if (w.type == DType::Q4_K || w.type == DType::Q6_K) {
        const int64_t nsb = w.n_in / 256;
        const int64_t used = (w.type == DType::Q4_K ? kPackedQ4KBytes : kPackedQ6KBytes) * nsb;
        (w.type == DType::Q4_K ? pack_q4_k_tile : pack_q6_k_tile)(src + r0 * w.row_bytes, w.row_bytes, nsb, tile);
        std::memset(tile + used, 0, (size_t)(tile_bytes - used));
        continue;
      }
      uint8_t* scales = tile + nb * quant_bytes;
      for (int i = 0; i < kPackRows; ++i) {
        const uint8_t* row = src + (r0 + i) * w.row_bytes;
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* block = row + block_bytes * b;
          std::memcpy(scales + scale_bytes * b + head * i, block, (size_t)head);
          for (int g = 0; g < quant_bytes / 64; ++g)  // groups of 4 bytes
            for (int j = 0; j < 4; ++j) {
              const uint8_t byte = block[head + 4 * g + j];
              tile[quant_bytes * b + 64 * g + 4 * i + j] = w.type == DType::Q8_0 ? (uint8_t)(byte ^ 0x80) : byte;  // Q8_0: w + 128
            }
        }
      }
      std::memset(scales + scale_bytes * nb, 0, (size_t)(tile_bytes - (quant_bytes + scale_bytes) * nb));
    }
    for (int64_t r = n_full; r < w.n_out; ++r) {
      std::memcpy(out + r * p.stride, src + r * w.row_bytes, (size_t)w.row_bytes);
      std::memset(out + r * p.stride + w.row_bytes, 0, (size_t)(p.stride - w.row_bytes));
    }
  }
  return p;
}

void dequantize_weight_row(const Weight& w, int64_t r, float* out) {
  VELOCITY_CHECK(r >= 0 && r < w.n_out * w.n_mat, "row {} of '{}' ({} rows)", r, w.name, w.n_out * w.n_mat);
  const int64_t m = r / w.n_out, i = r % w.n_out;
  const uint8_t* matrix = w.data + m * w.n_out * w.stride;
  if (!is_packed(w) || i >= w.n_out / kPackRows * kPackRows) {
    dequantize_row(w.type, matrix + i * w.stride, out, w.n_in);
    return;
  }
  const uint8_t* tile = matrix + (i / kPackRows) * kPackRows * w.stride;
  const int64_t nb = w.n_in / 32;
  const int lane = (int)(i % kPackRows);
  if (w.type == DType::Q6_K) {
    for (int64_t b = 0; b < nb / 8; ++b)
      for (int e = 0; e < 256; ++e) out[256 * b + e] = packed_q6_k_scale(tile, b, lane, e / 16) * (float)packed_q6_k_weight(tile, b, lane, e);
    return;
  }
  if (w.type == DType::Q4_K) {
    for (int64_t b = 0; b < nb / 8; ++b) {
      const float d = packed_q4_k_fp16(tile, b, lane, 0), dmin = packed_q4_k_fp16(tile, b, lane, 1);
      for (int s = 0; s < 8; ++s) {
        int sc, mn;
        packed_q4_k_scale_min(tile, b, lane, s, sc, mn);
        const float scale = d * (float)sc, min = dmin * (float)mn;
        for (int e = 0; e < 32; ++e) out[256 * b + 32 * s + e] = scale * (float)packed_q4_k_quant(tile, b, lane, s, e) - min;
      }
    }
    return;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const float d = packed_scale(w.type, tile, nb, b, lane);
    for (int e = 0; e < 32; ++e) out[32 * b + e] = d * (float)packed_weight(w.type, tile, b, lane, e);
  }
}

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
  const bool packed = is_packed(w);
  if (w.layout == WeightLayout::Cuda) fail("matmul: weight '{}' is in the CUDA layout; the CPU backend cannot read it", w.name);
  if (!packed && w.stride != dtype_row_bytes(w.type, w.n_in)) fail("matmul: weight '{}' has {} bytes per row, expected {}", w.name, w.stride, dtype_row_bytes(w.type, w.n_in));
  VELOCITY_CHECK(w.data != nullptr && x != nullptr && y != nullptr, "matmul on '{}' with a null pointer", w.name);
  VELOCITY_CHECK(ldx >= w.n_in && ldy >= w.n_out, "matmul on '{}': ldx {} < n_in {} or ldy {} < n_out {}", w.name, ldx, w.n_in, ldy, w.n_out);
  if (n_tokens == 0 || w.n_out == 0) return;

  const ActKind kind = act_kind(w.type);
  const Kernels kernels = pick_kernels(w.type, kind);
  const int nth = pool_.size();

  MatmulArgs args;
  args.w = w.data;
  args.row_bytes = w.stride;
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

  std::atomic<int64_t> next{0};
  if (!packed) {
    const int64_t chunk = chunk_rows(w.n_out, w.stride, nth);
    const int64_t n_chunks = (w.n_out + chunk - 1) / chunk;
    const RowsKernel rows = kernels.rows;
    const int64_t n_out = w.n_out;
    pool_.run([&](int, int) {
      for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < n_chunks; c = next.fetch_add(1, std::memory_order_relaxed))
        rows(args, c * chunk, std::min(n_out, (c + 1) * chunk));
    });
    return;
  }
  // Packed: chunks of whole tiles, then (chunk n_chunks) the tail rows in GGUF layout.
  const int64_t n_tiles = w.n_out / kPackRows, n_full = n_tiles * kPackRows;
  const int64_t chunk = chunk_rows(n_tiles, kPackRows * w.stride, nth) * kPackRows;
  const int64_t n_chunks = (n_full + chunk - 1) / chunk;
  MatmulArgs tail = args;
  tail.w = w.data + n_full * w.stride;
  tail.y = y + n_full;
  const RowsKernel rows = kernels.rows, packed_rows = kernels.packed_rows;
  const int64_t n_tail = w.n_out - n_full;
  pool_.run([&](int, int) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c <= n_chunks; c = next.fetch_add(1, std::memory_order_relaxed)) {
      if (c < n_chunks) {
        packed_rows(args, c * chunk, std::min(n_full, (c + 1) * chunk));
      } else if (n_tail > 0) {
        rows(tail, 0, n_tail);
      }
    }
  });
}

}  // namespace velocity::engine::cpu
