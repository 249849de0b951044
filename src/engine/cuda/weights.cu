// The CUDA weight layout (quant_device.cuh explains it): which types the matrix products read,
// the bytes per row, and the host-side conversion of GGUF rows, run once at load.
//
// The conversion is per row (a row's bytes depend on that row only), so the backend may convert
// any run of rows at a time. It is written element by element from the layout's definition
// (where each element's bits go, where each block's scale goes); the decoders in
// quant_device.cuh are its inverse, and tests/gpu/matmul_test.cpp checks the pair on the host
// against the reference dequantisation, bit for bit.
#include <cstring>
#include <vector>

#include "core/quant_blocks.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/kernels.h"
#include "engine/cuda/quant_device.cuh"

namespace velocity::engine::cuda {

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

namespace mm {

bool has_row_layout(DType type) {
  return matmul_supports(type) && type != DType::F32 && type != DType::F16 && type != DType::BF16;
}

namespace {

int64_t align16(int64_t v) { return (v + 15) & ~int64_t{15}; }

// Bits of the low-bit region per chunk and lane, and of the high-bit region (0: none).
enum class Lo { R4, R8, R2 };
enum class Hi { None, R1, R2 };

struct TypeRegions {
  Lo lo;
  Hi hi;
  bool k_quant;  // scales per super-block (unit) instead of per 32-element block
};

TypeRegions regions(DType type) {
  switch (type) {
    case DType::Q8_0: return {Lo::R8, Hi::None, false};
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::MXFP4: return {Lo::R4, Hi::None, false};
    case DType::Q5_0:
    case DType::Q5_1: return {Lo::R4, Hi::R1, false};
    case DType::Q2_K: return {Lo::R2, Hi::None, true};
    case DType::Q3_K: return {Lo::R2, Hi::R1, true};
    case DType::Q4_K: return {Lo::R4, Hi::None, true};
    case DType::Q5_K: return {Lo::R4, Hi::R1, true};
    case DType::Q6_K: return {Lo::R4, Hi::R2, true};
    default: break;
  }
  throw_error("CUDA weight layout: not a quantised type with a row layout");
}

// Bytes of the scale arrays (sc, sc2) of a row of nc chunks.
void scale_bytes(DType type, int64_t nc, int64_t& sc, int64_t& sc2) {
  const int64_t nu = (nc + 3) / 4;
  sc2 = 0;
  switch (type) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q5_0: sc = 4 * nc; break;  // d of 2 blocks per chunk
    case DType::Q4_1:
    case DType::Q5_1: sc = 8 * nc; break;   // d, m of 2 blocks
    case DType::MXFP4: sc = 2 * nc; break;  // e of 2 blocks
    case DType::Q4_K:
    case DType::Q5_K: sc = 16 * nu; break;                // d, dmin, scales[12]
    case DType::Q2_K: sc = 16 * nu, sc2 = 4 * nu; break;  // scales[16]; d, dmin
    case DType::Q3_K: sc = 12 * nu, sc2 = 2 * nu; break;  // scales[12]; d
    case DType::Q6_K: sc = 16 * nu, sc2 = 2 * nu; break;  // scales[16]; d
    default: sc = 0; break;
  }
}

}  // namespace

RowLayout row_layout(DType type, int64_t n_in) {
  RowLayout rl;
  rl.nc = static_cast<int32_t>((n_in + kChunkK - 1) / kChunkK);
  if (!has_row_layout(type)) {
    rl.stride = dtype_row_bytes(type, n_in);
    return rl;
  }
  const TypeRegions t = regions(type);
  const int64_t nc = rl.nc, nu = (nc + 3) / 4, p_last = nc - 4 * (nu - 1);
  const int64_t lo_bytes = t.lo == Lo::R8 ? 64 * nc : (t.lo == Lo::R4 ? 32 * nc : 16 * nc);
  int64_t hi_bytes = 0;
  if (t.hi == Hi::R1) hi_bytes = 32 * (nu - 1) + 16 * ((p_last + 1) / 2);
  if (t.hi == Hi::R2) hi_bytes = 16 * nc;
  int64_t sc_bytes, sc2_bytes;
  scale_bytes(type, nc, sc_bytes, sc2_bytes);
  int64_t end = 0;
  rl.lo = 0;
  end = lo_bytes;
  rl.hi = static_cast<int32_t>(align16(end));
  end = rl.hi + hi_bytes;
  rl.sc = static_cast<int32_t>(align16(end));
  end = rl.sc + sc_bytes;
  rl.sc2 = static_cast<int32_t>(align16(end));
  end = rl.sc2 + sc2_bytes;
  rl.stride = align16(end) + 16;
  return rl;
}

namespace {

// The integer codes of a GGUF row, block by block: lo[k] the low bits as the layout stores them
// (Q8_0: q + 128), hi[k] the high bits (Q5: bit 4; Q3_K: the hmask bit; Q6_K: bits 4..5).
// Elements past n_in keep the values the caller filled in (the padding).
void row_codes(DType type, const uint8_t* row, int64_t n_in, uint8_t* lo, uint8_t* hi) {
  using namespace velocity::quant;
  auto nibbles = [](const uint8_t* qs, uint8_t* out) {
    for (int j = 0; j < 16; ++j) out[j] = qs[j] & 0x0F, out[j + 16] = qs[j] >> 4;
  };
  auto bits5 = [](const uint8_t* qh4, uint8_t* out) {
    uint32_t qh;
    std::memcpy(&qh, qh4, 4);
    for (int j = 0; j < 32; ++j) out[j] = (qh >> j) & 1;
  };
  const int64_t nb = n_in / kQK, nsb = n_in / kQK_K;
  switch (type) {
    case DType::Q8_0:
      for (int64_t b = 0; b < nb; ++b) {
        const auto blk = load_block<BlockQ8_0>(row, b);
        for (int j = 0; j < kQK; ++j) lo[kQK * b + j] = static_cast<uint8_t>(blk.qs[j] + 128);
      }
      break;
    case DType::Q4_0:
      for (int64_t b = 0; b < nb; ++b) nibbles(load_block<BlockQ4_0>(row, b).qs, lo + kQK * b);
      break;
    case DType::Q4_1:
      for (int64_t b = 0; b < nb; ++b) nibbles(load_block<BlockQ4_1>(row, b).qs, lo + kQK * b);
      break;
    case DType::MXFP4:
      for (int64_t b = 0; b < nb; ++b) nibbles(load_block<BlockMxfp4>(row, b).qs, lo + kQK * b);
      break;
    case DType::Q5_0:
      for (int64_t b = 0; b < nb; ++b) {
        const auto blk = load_block<BlockQ5_0>(row, b);
        nibbles(blk.qs, lo + kQK * b);
        bits5(blk.qh, hi + kQK * b);
      }
      break;
    case DType::Q5_1:
      for (int64_t b = 0; b < nb; ++b) {
        const auto blk = load_block<BlockQ5_1>(row, b);
        nibbles(blk.qs, lo + kQK * b);
        bits5(blk.qh, hi + kQK * b);
      }
      break;
    case DType::Q2_K:
    case DType::Q3_K:
      for (int64_t b = 0; b < nsb; ++b) {
        const uint8_t* qs;
        BlockQ2_K b2;
        BlockQ3_K b3;
        if (type == DType::Q2_K) {
          b2 = load_block<BlockQ2_K>(row, b);
          qs = b2.qs;
        } else {
          b3 = load_block<BlockQ3_K>(row, b);
          qs = b3.qs;
        }
        uint8_t* l = lo + kQK_K * b;
        for (int i = 0; i < kQK_K; ++i) {
          const int h = i / 128, r = i % 128;
          l[i] = (qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
          if (type == DType::Q3_K) hi[kQK_K * b + i] = (b3.hmask[i % 32] >> (i / 32)) & 1;
        }
      }
      break;
    case DType::Q4_K:
    case DType::Q5_K:
      for (int64_t b = 0; b < nsb; ++b) {
        const uint8_t* qs;
        BlockQ4_K b4;
        BlockQ5_K b5;
        if (type == DType::Q4_K) {
          b4 = load_block<BlockQ4_K>(row, b);
          qs = b4.qs;
        } else {
          b5 = load_block<BlockQ5_K>(row, b);
          qs = b5.qs;
        }
        for (int i = 0; i < kQK_K; ++i) {
          const uint8_t q = qs[32 * (i / 64) + i % 32];
          lo[kQK_K * b + i] = i % 64 < 32 ? q & 0x0F : q >> 4;
          if (type == DType::Q5_K) hi[kQK_K * b + i] = (b5.qh[i % 32] >> (i / 32)) & 1;
        }
      }
      break;
    case DType::Q6_K:
      for (int64_t b = 0; b < nsb; ++b) {
        const auto blk = load_block<BlockQ6_K>(row, b);
        for (int i = 0; i < kQK_K; ++i) {
          const int h = i / 128, g = (i % 128) / 32, l = i % 32;
          const uint8_t low = blk.ql[64 * h + 32 * (g & 1) + l];
          lo[kQK_K * b + i] = g < 2 ? low & 0x0F : low >> 4;
          hi[kQK_K * b + i] = (blk.qh[32 * h + l] >> (2 * g)) & 3;
        }
      }
      break;
    default: break;
  }
}

void put_word(uint8_t* out, int64_t byte, uint32_t w) { std::memcpy(out + byte, &w, 4); }

// One row: GGUF bytes -> the layout (out has rl.stride bytes, zeroed by the caller). lo, hi:
// scratch of rl.nc * 64 codes.
void convert_row(DType type, int64_t n_in, const RowLayout& rl, const uint8_t* row, uint8_t* out, uint8_t* lo,
                 uint8_t* hi) {
  const TypeRegions t = regions(type);
  const int nc = rl.nc;
  const int64_t n_pad = int64_t{kChunkK} * nc;
  std::memset(lo + n_in, type == DType::Q8_0 ? 128 : 0, static_cast<size_t>(n_pad - n_in));  // q = 0 (d = 0 too)
  std::memset(hi, 0, static_cast<size_t>(n_pad));
  row_codes(type, row, n_in, lo, hi);
  const bool mx = type == DType::MXFP4;
  for (int J = 0; J < nc; ++J) {
    const int u = J / 4, jpos = J % 4, p = unit_chunks(nc, u);
    for (int c = 0; c < 4; ++c) {
      // the lane's 16 elements of this chunk: step s, kk -> code index
      const uint8_t* L = lo + int64_t{kChunkK} * J + 4 * c;  // element (s, kk) at L[16 s + kk]
      const uint8_t* H = hi + int64_t{kChunkK} * J + 4 * c;
      switch (t.lo) {
        case Lo::R4: {
          const int h = jpos / 2, piece = 2 * h + 1 < p ? 16 : 8;
          const int64_t base = rl.lo + 128 * u + 64 * h + c * piece + 8 * (jpos % 2);
          for (int w = 0; w < 2; ++w) {
            uint32_t word = 0;
            for (int s2 = 0; s2 < 2; ++s2)
              for (int kk = 0; kk < 4; ++kk) {
                const uint32_t v = L[16 * (2 * w + s2) + kk];
                word |= v << (mx ? 16 * s2 + 4 * kk : 4 * (2 * s2 + kk / 2) + 16 * (kk % 2));
              }
            put_word(out, base + 4 * w, word);
          }
          break;
        }
        case Lo::R8:
          for (int s = 0; s < 4; ++s)
            for (int kk = 0; kk < 4; ++kk) out[rl.lo + 256 * u + 64 * jpos + 16 * c + 4 * s + kk] = L[16 * s + kk];
          break;
        case Lo::R2: {
          uint32_t word = 0;
          for (int s = 0; s < 4; ++s)
            for (int kk = 0; kk < 4; ++kk)
              word |= static_cast<uint32_t>(L[16 * s + kk]) << (2 * (2 * s + kk / 2) + 16 * (kk % 2));
          put_word(out, rl.lo + 64 * u + 16 * c + 4 * jpos, word);
          break;
        }
      }
      switch (t.hi) {
        case Hi::None: break;
        case Hi::R1: {
          // 2 chunks share a word: OR this chunk's 16 bits in
          const int64_t byte = rl.hi + 32 * u + c * 4 * ((p + 1) / 2) + 4 * (jpos / 2);
          uint32_t word;
          std::memcpy(&word, out + byte, 4);
          for (int s = 0; s < 4; ++s)
            for (int kk = 0; kk < 4; ++kk)
              word |= static_cast<uint32_t>(H[16 * s + kk]) << (16 * (kk % 2) + 8 * (jpos % 2) + 2 * s + kk / 2);
          put_word(out, byte, word);
          break;
        }
        case Hi::R2: {
          uint32_t word = 0;
          for (int s = 0; s < 4; ++s)
            for (int kk = 0; kk < 4; ++kk)
              word |= static_cast<uint32_t>(H[16 * s + kk]) << (2 * (2 * s + kk / 2) + 16 * (kk % 2));
          put_word(out, rl.hi + 64 * u + 16 * c + 4 * jpos, word);
          break;
        }
      }
    }
  }
  // Scales, byte for byte as GGUF stores them, one array per field (padding blocks stay zero).
  const int64_t bb = dtype_block_bytes(type);
  if (!t.k_quant) {
    const int64_t n_blocks = n_in / 32;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const uint8_t* blk = row + b * bb;
      switch (type) {
        case DType::Q8_0:
        case DType::Q4_0:
        case DType::Q5_0: std::memcpy(out + rl.sc + 2 * b, blk, 2); break;  // d
        case DType::Q4_1:
        case DType::Q5_1: std::memcpy(out + rl.sc + 4 * b, blk, 4); break;  // d, m
        case DType::MXFP4: out[rl.sc + b] = blk[0]; break;                  // e
        default: break;
      }
    }
  } else {
    const int64_t n_sb = n_in / 256;
    for (int64_t u = 0; u < n_sb; ++u) {
      const uint8_t* blk = row + u * bb;
      switch (type) {
        case DType::Q4_K:
        case DType::Q5_K: std::memcpy(out + rl.sc + 16 * u, blk, 16); break;  // d, dmin, scales[12]
        case DType::Q2_K:
          std::memcpy(out + rl.sc + 16 * u, blk, 16);      // scales[16]
          std::memcpy(out + rl.sc2 + 4 * u, blk + 80, 4);  // d, dmin
          break;
        case DType::Q3_K:
          std::memcpy(out + rl.sc + 12 * u, blk + 96, 12);  // scales[12]
          std::memcpy(out + rl.sc2 + 2 * u, blk + 108, 2);  // d
          break;
        case DType::Q6_K:
          std::memcpy(out + rl.sc + 16 * u, blk + 192, 16);  // scales[16]
          std::memcpy(out + rl.sc2 + 2 * u, blk + 208, 2);   // d
          break;
        default: break;
      }
    }
  }
}

}  // namespace
}  // namespace mm

int64_t weight_stride(DType type, int64_t n_in) {
  if (!matmul_supports(type)) throw_error("weight_stride: the CUDA backend has no matrix product for this weight type");
  if (n_in <= 0 || n_in % dtype_block_size(type) != 0)
    throw_error("weight_stride: the row length is not a positive multiple of the type's block size");
  return mm::row_layout(type, n_in).stride;
}

void to_weight_layout(DType type, int64_t n_in, int64_t n_rows, const uint8_t* gguf, uint8_t* out) {
  const int64_t stride = weight_stride(type, n_in);
  const int64_t row_bytes = dtype_row_bytes(type, n_in);
  if (!mm::has_row_layout(type)) {
    std::memcpy(out, gguf, static_cast<size_t>(n_rows * row_bytes));
    return;
  }
  const mm::RowLayout rl = mm::row_layout(type, n_in);
  std::vector<uint8_t> lo(static_cast<size_t>(rl.nc) * mm::kChunkK), hi(lo.size());
  for (int64_t r = 0; r < n_rows; ++r) {
    uint8_t* o = out + r * stride;
    std::memset(o, 0, static_cast<size_t>(stride));
    mm::convert_row(type, n_in, rl, gguf + r * row_bytes, o, lo.data(), hi.data());
  }
}

}  // namespace velocity::engine::cuda
