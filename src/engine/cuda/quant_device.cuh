// The CUDA weight layout of every quantised type, and the per-lane decoders the matrix-product
// kernels (matmul_decode.cuh, matmul_prompt.cuh) and get_rows share. Host and device: the
// functions are __host__ __device__, so tests/gpu/matmul_test.cpp checks the layout and the
// decoders against the reference dequantisers on any machine, GPU or not.
//
// Why a layout of our own. The matrix products hand a warp a tile of 16 weight rows and feed
// the weights straight into the A fragments of mma.sync.m16n8k16: lane (g = lane / 4, c = lane
// % 4) holds rows g and g + 8 and, in each 16-element k step, 4 of the 16 k. Which 4 is ours to
// choose (a dot product does not care about the order of k, as long as the activations (B
// fragment) follow the same order): lane c takes elements 4c .. 4c+3 of the step, so its B
// fragment is one 8-byte load of 4 consecutive f16 activations, and its weight bits for a step
// are 4 consecutive elements of a row. The layout puts the bits a lane needs next to each other,
// so a lane reads them with one aligned 16- (or 8-, 4-) byte load per row, and the 4 lanes of a
// quad read one contiguous run of a row per instruction (whole 32-byte sectors).
//
// The layout is per row: a row's bytes depend on that row only, so to_weight_layout may convert
// any run of rows (the backend converts in chunks, over every expert of a 3-D tensor at once),
// and any row count works (no 16-row padding). Row r of a matrix is at data + r * stride; a row
// is a sequence of regions, each starting at a 16-byte aligned offset (RowLayout):
//   lo   the low bits of every element (4-bit nibbles, 8-bit bytes or 2-bit fields)
//   hi   the high bits (Q5_0, Q5_1, Q5_K: 1 bit; Q3_K: 1 bit; Q6_K: 2 bits)
//   sc   scales as GGUF stores them, one array per field (d, m, packed sub-block scales ...)
// K is cut into chunks of 64 (the row padded to whole chunks with zero blocks), chunks into
// units of 4 (a K-quant super-block; the last unit of a row may have fewer chunks for the
// 32-element formats). Inside a unit the bits are ordered [piece][lane c][bytes of lane c], so
// a lane's bytes for a piece are contiguous and the 4 lanes' pieces follow each other:
//   R4 (4-bit lows):  piece = 2 chunks, 8 bytes per chunk and lane; unit u at 128u, piece h at
//                     64h, lane c at c * (16, or 8 for a last piece of one chunk), chunk at +8
//   R8 (Q8_0 bytes):  piece = 1 chunk, 16 bytes per lane; unit u at 256u, chunk j at 64j, lane at 16c
//   R2 (2-bit, Q2_K and Q3_K lows, Q6_K highs): piece = the unit, 4 bytes per chunk and lane;
//                     unit u at 64u, lane c at 16c, chunk j at 4j
//   R1 (1-bit highs): 2 bytes per chunk and lane, stored in 32-bit words of 2 chunks; unit u at
//                     32u, lane c at c * 4 * ceil(p / 2) (p = chunks in the unit), word j / 2
// Bits of element k = 64 J + 16 s + 4 c + kk (chunk J, step s, lane c, kk in 0..3) in its word:
//   R4 (word s / 2):  bit 4 * (2 (s % 2) + kk / 2) + 16 (kk % 2)   (pairs (kk 0,1), (kk 2,3) are
//                     16 bits apart: one shift + mask + or gives an f16x2 of 1024 + q)
//   R4 for MXFP4:     bit 16 (s % 2) + 4 kk                          (4 codes per table lookup)
//   R8 (word s):      byte kk, stored as q + 128
//   R2 (word J % 4):  bit 2 (2 s + kk / 2) + 16 (kk % 2)
//   R1 (word J%4 / 2): bit 16 (kk % 2) + 8 (J % 2) + 2 s + kk / 2
// F32, F16 and BF16 keep the GGUF layout (stride = row bytes): F16/BF16 rows are already 16-byte
// runs of consecutive elements, read with a k order of their own (see natural_k below).
//
// Every value a decoder produces is exact: integer levels as f16 (|q| <= 127 for Q8_0; the
// E2M1 codes of MXFP4 doubled, as in the reference), and per sub-block float scale s and offset
// o computed with the reference's float operations, so y = s * q + o (s * q for the symmetric
// formats) is bitwise the reference dequantisation (get_rows relies on it). The decode kernel
// multiplies integer levels on the tensor cores and applies s and o per sub-block in f32; the
// prompt kernel rounds s * q + o to f16 once.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define VELOCITY_HD __host__ __device__ __forceinline__
#define VELOCITY_UNROLL _Pragma("unroll")
#else
#define VELOCITY_HD inline
#define VELOCITY_UNROLL
#endif

#include "core/dtype.h"
#include "core/fp16.h"

namespace velocity::engine::cuda::mm {

inline constexpr int kTileRows = 16;   // weight rows of a warp tile (the M of m16n8k16)
inline constexpr int kChunkK = 64;     // elements of a chunk: 4 k-steps of 16
inline constexpr int kUnitChunks = 4;  // chunks of a unit (a K-quant super-block)

// Where a row's regions start (bytes from the row start) and how many chunks it has.
struct RowLayout {
  int32_t nc = 0;  // chunks of 64 elements (n_in rounded up to 64)
  int32_t lo = 0, hi = 0, sc = 0, sc2 = 0;
  int64_t stride = 0;  // bytes per row: the end of the last region rounded up to 16, plus 16, so
                       // that it never equals the GGUF row size (which would mean the GGUF layout)
};

// The layout of a row of n_in elements of `type` (weights.cu). F32, F16 and BF16: the GGUF row.
RowLayout row_layout(DType type, int64_t n_in);
// Whether `type` is stored in the layout above (false: F32, F16, BF16 keep the GGUF layout).
bool has_row_layout(DType type);

// ---- Portable pieces: the device instruction, or its exact host equivalent --------------------

// __byte_perm: byte n of the result is byte (s >> 4n) & 7 of the 8 bytes {y, x} (CUDA uses
// only the low 3 bits of each selector nibble and the low 16 bits of the selector).
VELOCITY_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t v = static_cast<uint64_t>(y) << 32 | x;
  uint32_t r = 0;
  for (int n = 0; n < 4; ++n) r |= static_cast<uint32_t>((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
  return r;
#endif
}

// f16x2 a - b, round to nearest (exact for the small integers the decoders subtract).
VELOCITY_HD uint32_t h2_sub(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  const float lo = fp16_to_fp32(static_cast<uint16_t>(a)) - fp16_to_fp32(static_cast<uint16_t>(b));
  const float hi = fp16_to_fp32(static_cast<uint16_t>(a >> 16)) - fp16_to_fp32(static_cast<uint16_t>(b >> 16));
  return static_cast<uint32_t>(fp32_to_fp16(lo)) | static_cast<uint32_t>(fp32_to_fp16(hi)) << 16;
#endif
}

// f16x2 a * b + c, one rounding (exact for the small integers the folded decoders produce: the
// product is exact inside the fused operation whatever its size).
VELOCITY_HD uint32_t h2_fma(uint32_t a, uint32_t b, uint32_t c) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
#else
  auto one = [](uint32_t x, uint32_t y, uint32_t z) {
    const double v = static_cast<double>(fp16_to_fp32(static_cast<uint16_t>(x))) * fp16_to_fp32(static_cast<uint16_t>(y)) +
                     fp16_to_fp32(static_cast<uint16_t>(z));
    return static_cast<uint32_t>(fp32_to_fp16(static_cast<float>(v)));  // exact where the kernels use it
  };
  return one(a, b, c) | one(a >> 16, b >> 16, c >> 16) << 16;
#endif
}

// The f16 in the low 16 bits of `bits`, as float (exact).
VELOCITY_HD float h2f(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xFFFFu)));
#else
  return fp16_to_fp32(static_cast<uint16_t>(bits));
#endif
}

// Two floats to f16x2 (round to nearest even): lo in the low half.
VELOCITY_HD uint32_t f2h2(float lo, float hi) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#else
  return static_cast<uint32_t>(fp32_to_fp16(lo)) | static_cast<uint32_t>(fp32_to_fp16(hi)) << 16;
#endif
}

// Float multiply / add without contraction into an FMA (the reference rounds each step).
VELOCITY_HD float fmul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
VELOCITY_HD float fadd_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

VELOCITY_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// v >> n for n >= 0, v << -n otherwise (n is a compile-time constant after unrolling).
VELOCITY_HD uint32_t shr(uint32_t v, int n) { return n >= 0 ? v >> n : v << -n; }

// 2^(e-128) for an E8M0 byte e (the reference's e8m0_to_fp32_half).
VELOCITY_HD float e8m0_half(uint32_t e) {
  e &= 0xFF;
  return bits_to_float(e < 2 ? 0x00200000u << e : (e - 1) << 23);
}

// ---- Loads: aligned 16/8/4/2-byte reads through a pointer policy -------------------------------

// Plain loads through a generic pointer: host memory, or device global or shared memory.
struct LoadPlain {
  VELOCITY_HD static void b16(const uint8_t* p, uint32_t* w) {
#if defined(__CUDA_ARCH__)
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
#else
    std::memcpy(w, p, 16);
#endif
  }
  VELOCITY_HD static void b8(const uint8_t* p, uint32_t* w) {
#if defined(__CUDA_ARCH__)
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    w[0] = v.x, w[1] = v.y;
#else
    std::memcpy(w, p, 8);
#endif
  }
  VELOCITY_HD static uint32_t b4(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const uint32_t*>(p);
#else
    uint32_t w;
    std::memcpy(&w, p, 4);
    return w;
#endif
  }
  VELOCITY_HD static uint32_t b2(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const uint16_t*>(p);
#else
    uint16_t h;
    std::memcpy(&h, p, 2);
    return h;
#endif
  }
};

// Read-only global memory through the non-coherent path, not kept in L1: the weights of a kernel,
// each byte read once per call. Left to allocate in L1, the weight stream evicted the activations
// that every warp of the SM re-reads (L1 hit rate 31%, each activation load an L2 round trip:
// ncu on the decode kernel, docs/NOTES.md).
struct LoadGlobal {
  VELOCITY_HD static void b16(const uint8_t* p, uint32_t* w) {
#if defined(__CUDA_ARCH__)
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
                 : "l"(p));
#else
    LoadPlain::b16(p, w);
#endif
  }
  VELOCITY_HD static void b8(const uint8_t* p, uint32_t* w) {
#if defined(__CUDA_ARCH__)
    asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(w[0]), "=r"(w[1]) : "l"(p));
#else
    LoadPlain::b8(p, w);
#endif
  }
  VELOCITY_HD static uint32_t b4(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    uint32_t w;
    asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(w) : "l"(p));
    return w;
#else
    return LoadPlain::b4(p);
#endif
  }
  VELOCITY_HD static uint32_t b2(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    unsigned short h;
    asm("ld.global.nc.L1::no_allocate.u16 %0, [%1];" : "=h"(h) : "l"(p));
    return h;
#else
    return LoadPlain::b2(p);
#endif
  }
};

// ---- Shared region readers -------------------------------------------------------------------
// Each fills words for chunks [j0, j0 + kC) of one row (kC = 1, 2 or 4; j0 a multiple of kC, so
// the chunks lie in one unit) for lane c, leaving chunks past the row's end untouched (the
// caller zeroes). `off` is the region's offset in the row.

// Chunks of unit u present in a row of nc chunks.
VELOCITY_HD int unit_chunks(int nc, int u) { return nc - 4 * u < 4 ? nc - 4 * u : 4; }

// R4: 2 words per chunk, out[2 * (J - j0) + w].
template <class L, int kC>
VELOCITY_HD void read_r4(L& ld, const uint8_t* row, int off, int nc, int j0, int c, uint32_t* out) {
  const int u = j0 >> 2, p = unit_chunks(nc, u);
  const uint8_t* unit = row + off + 128 * u;
  if constexpr (kC == 1) {
    const int jj = j0 & 3, h = jj >> 1;
    const int piece = 2 * h + 1 < p ? 16 : 8;
    ld.b8(unit + 64 * h + c * piece + 8 * (jj & 1), out);
  } else {
    VELOCITY_UNROLL
    for (int hh = 0; hh < kC / 2; ++hh) {
      const int h = ((j0 & 3) >> 1) + hh;
      if (2 * h + 1 < p)
        ld.b16(unit + 64 * h + 16 * c, out + 4 * hh);
      else if (2 * h < p)
        ld.b8(unit + 64 * h + 8 * c, out + 4 * hh);
    }
  }
}

// R8: 4 words per chunk, out[4 * (J - j0) + s].
template <class L, int kC>
VELOCITY_HD void read_r8(L& ld, const uint8_t* row, int off, int nc, int j0, int c, uint32_t* out) {
  const uint8_t* unit = row + off + 256 * (j0 >> 2);
  VELOCITY_UNROLL
  for (int jj = 0; jj < kC; ++jj)
    if (j0 + jj < nc) ld.b16(unit + 64 * ((j0 & 3) + jj) + 16 * c, out + 4 * jj);
}

// R2 (K-quants only: whole units): 1 word per chunk, out[J - j0].
template <class L, int kC>
VELOCITY_HD void read_r2(L& ld, const uint8_t* row, int off, int j0, int c, uint32_t* out) {
  const uint8_t* lane = row + off + 64 * (j0 >> 2) + 16 * c;
  if constexpr (kC == 4)
    ld.b16(lane, out);
  else if constexpr (kC == 2)
    ld.b8(lane + 4 * (j0 & 3), out);
  else
    out[0] = ld.b4(lane + 4 * (j0 & 3));
}

// R1: 1 word per 2 chunks, out[(J - j0) / 2] (kC = 1: the word holding chunk j0).
template <class L, int kC>
VELOCITY_HD void read_r1(L& ld, const uint8_t* row, int off, int nc, int j0, int c, uint32_t* out) {
  const int u = j0 >> 2, p = unit_chunks(nc, u);
  const uint8_t* lane = row + off + 32 * u + c * 4 * ((p + 1) >> 1);
  if constexpr (kC == 4) {
    if (p == 4)
      ld.b8(lane, out);
    else
      VELOCITY_UNROLL
    for (int w = 0; w < 2; ++w)
      if (2 * w < p) out[w] = ld.b4(lane + 4 * w);
  } else {
    out[0] = ld.b4(lane + 4 * ((j0 & 3) >> 1));
  }
}

// Words [w0, w0 + n) of a per-row scale array (n = 1, 2, 4 or 8 words, w0 a multiple of n, the
// array 16-byte aligned); words past `valid` are zeroed. One load (two for n = 8) even at the
// array's end: the 4n-byte aligned run lies within the row (every region starts 16-byte aligned
// and a row ends 16 bytes past the end of its last region rounded up to 16).
template <class L, int n>
VELOCITY_HD void read_words(L& ld, const uint8_t* base, int w0, int valid, uint32_t* out) {
  if constexpr (n == 8) {
    ld.b16(base + 4 * w0, out);
    ld.b16(base + 4 * w0 + 16, out + 4);
  } else if constexpr (n == 4) {
    ld.b16(base + 4 * w0, out);
  } else if constexpr (n == 2) {
    ld.b8(base + 4 * w0, out);
  } else {
    out[0] = ld.b4(base + 4 * w0);
  }
  if (w0 + n > valid) {
    VELOCITY_UNROLL
    for (int i = 0; i < n; ++i)
      if (w0 + i >= valid) out[i] = 0;
  }
}

// f16x2 of (1024 + f, 1024 + g) from two 16-bit-apart fields already in place (lop3).
VELOCITY_HD uint32_t magic(uint32_t fields) { return fields | 0x64006400u; }

// ---- Formats -----------------------------------------------------------------------------------
// Each format F provides, for kC chunks (kC = F::kIterChunks in the decode loop, 1 elsewhere):
//   Data<kC>                 a lane's bits and scales for rows g and g + 8
//   load<L, kC>(rg, rg8, rl, j0, c, d)   rows may be null (a row past n_out: left zero)
//   frag(d, jj, jpos, s, a)  the A fragment of step s of chunk j0 + jj (jpos = (j0 + jj) % 4)
//   scale(d, jj, jpos, s, sc, off)  s and o of rows g, g + 8 for that step's sub-block
//   k_lane(c), k_step(s)     where lane c's 4 elements of step s start within the chunk
// and constants: kScaleSteps (steps per sub-block), kOffset (o != 0), kIterChunks.

// The 32-element block formats and the K-quants place elements the same way in a chunk.
struct TiledK {
  VELOCITY_HD static int k_lane(int c) { return 4 * c; }
  VELOCITY_HD static int k_step(int s) { return 16 * s; }
  static constexpr bool kNatural = false;
};

// Per-row legacy scale words of chunks [j0, j0 + kC): `per` words per chunk.
template <class L, int kC, int per>
VELOCITY_HD void read_chunk_scales(L& ld, const uint8_t* row, int off, int nc, int j0, uint32_t* out) {
  read_words<L, kC * per>(ld, row + off, j0 * per, nc * per, out);
}

// 4-bit nibbles (R4, Q4 order) of step s to two f16x2 of 1024 + q: regs for (kk 0,1), (kk 2,3).
VELOCITY_HD void nib4(const uint32_t* w2, int s, uint32_t& a01, uint32_t& a23) {
  const uint32_t w = w2[s >> 1];
  a01 = magic((w >> (8 * (s & 1))) & 0x000F000Fu);
  a23 = magic((w >> (8 * (s & 1) + 4)) & 0x000F000Fu);
}

template <DType kT>
struct Fmt;

// Q8_0: y = d * q.
template <>
struct Fmt<DType::Q8_0> : TiledK {
  static constexpr int kIterChunks = 2, kScaleSteps = 2;
  static constexpr bool kOffset = false;
  template <int kC>
  struct Data {
    uint32_t q[2][4 * kC];  // rows g, g + 8: R8 words
    uint32_t d[2][kC];      // d of blocks 2J, 2J+1 (f16 pairs)
  };
  template <class L, int kC>
  VELOCITY_HD static void load(L& ld, const uint8_t* rg, const uint8_t* rg8, const RowLayout& rl, int j0, int c, Data<kC>& x) {
    const uint8_t* rows[2] = {rg, rg8};
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (rows[r] == nullptr) continue;
      read_r8<L, kC>(ld, rows[r], rl.lo, rl.nc, j0, c, x.q[r]);
      read_chunk_scales<L, kC, 1>(ld, rows[r], rl.sc, rl.nc, j0, x.d[r]);
    }
  }
  template <int kC>
  VELOCITY_HD static void frag(const Data<kC>& x, int jj, int, int s, uint32_t a[4]) {
    constexpr uint32_t k64 = 0x64646464u, kBias = 0x64806480u;  // 1024 + 128
    a[0] = h2_sub(byte_perm(x.q[0][4 * jj + s], k64, 0x5140u), kBias);
    a[1] = h2_sub(byte_perm(x.q[1][4 * jj + s], k64, 0x5140u), kBias);
    a[2] = h2_sub(byte_perm(x.q[0][4 * jj + s], k64, 0x7362u), kBias);
    a[3] = h2_sub(byte_perm(x.q[1][4 * jj + s], k64, 0x7362u), kBias);
  }
  template <int kC>
  VELOCITY_HD static void scale(const Data<kC>& x, int jj, int, int s, float sc[2], float off[2]) {
    sc[0] = h2f(x.d[0][jj] >> (16 * (s >> 1)));
    sc[1] = h2f(x.d[1][jj] >> (16 * (s >> 1)));
    off[0] = off[1] = 0.0f;
  }
};

// Q4_0 / Q4_1 / Q5_0 / Q5_1: nibbles in R4, Q5 high bits in R1, d (and m) per block.
template <bool kHigh, bool kMin>
struct Legacy4 : TiledK {
  // Q4_0 reads 4 chunks an iteration; the others have more bits per chunk and 2 chunks keep the
  // decode kernel's two iterations in flight within 128 registers.
  static constexpr int kIterChunks = kHigh || kMin ? 2 : 4, kScaleSteps = 2;
  static constexpr bool kOffset = kMin;
  static constexpr int kScaleWords = kMin ? 2 : 1;  // per chunk: d (d, m) of its 2 blocks
  template <int kC>
  struct Data {
    uint32_t q[2][2 * kC];
    uint32_t h[2][kHigh ? (kC + 1) / 2 : 1];
    uint32_t d[2][kScaleWords * kC];
  };
  template <class L, int kC>
  VELOCITY_HD static void load(L& ld, const uint8_t* rg, const uint8_t* rg8, const RowLayout& rl, int j0, int c, Data<kC>& x) {
    const uint8_t* rows[2] = {rg, rg8};
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (rows[r] == nullptr) continue;
      read_r4<L, kC>(ld, rows[r], rl.lo, rl.nc, j0, c, x.q[r]);
      if constexpr (kHigh) read_r1<L, kC>(ld, rows[r], rl.hi, rl.nc, j0, c, x.h[r]);
      read_chunk_scales<L, kC, kScaleWords>(ld, rows[r], rl.sc, rl.nc, j0, x.d[r]);
    }
  }
  template <int kC>
  VELOCITY_HD static void frag(const Data<kC>& x, int jj, int jpos, int s, uint32_t a[4]) {
    // Q4_0: q - 8; Q5_0: q - 16; Q4_1, Q5_1: q
    constexpr uint32_t kBias = kMin ? 0x64006400u : (kHigh ? 0x64106410u : 0x64086408u);
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      uint32_t a01, a23;
      nib4(x.q[r] + 2 * jj, s, a01, a23);
      if constexpr (kHigh) {
        const uint32_t h = x.h[r][kC == 1 ? 0 : jj >> 1];
        const int q = jpos & 1;
        a01 |= shr(h, 8 * q + 2 * s - 4) & 0x00100010u;
        a23 |= shr(h, 8 * q + 2 * s + 1 - 4) & 0x00100010u;
      }
      a[r] = h2_sub(a01, kBias);
      a[r + 2] = h2_sub(a23, kBias);
    }
  }
  template <int kC>
  VELOCITY_HD static void scale(const Data<kC>& x, int jj, int, int s, float sc[2], float off[2]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if constexpr (kMin) {
        const uint32_t dm = x.d[r][2 * jj + (s >> 1)];
        sc[r] = h2f(dm);
        off[r] = h2f(dm >> 16);
      } else {
        sc[r] = h2f(x.d[r][jj] >> (16 * (s >> 1)));
        off[r] = 0.0f;
      }
    }
  }
};
template <>
struct Fmt<DType::Q4_0> : Legacy4<false, false> {};
template <>
struct Fmt<DType::Q4_1> : Legacy4<false, true> {};
template <>
struct Fmt<DType::Q5_0> : Legacy4<true, false> {};
template <>
struct Fmt<DType::Q5_1> : Legacy4<true, true> {};

// MXFP4: y = E2M1(q) * 2 * 2^(e - 128); codes in R4 (MXFP4 order), one exponent byte per block.
template <>
struct Fmt<DType::MXFP4> : TiledK {
  static constexpr int kIterChunks = 4, kScaleSteps = 2;
  static constexpr bool kOffset = false;
  template <int kC>
  struct Data {
    uint32_t q[2][2 * kC];
    uint32_t e[2][(kC + 1) / 2];  // 2 exponent bytes per chunk
  };
  template <class L, int kC>
  VELOCITY_HD static void load(L& ld, const uint8_t* rg, const uint8_t* rg8, const RowLayout& rl, int j0, int c, Data<kC>& x) {
    const uint8_t* rows[2] = {rg, rg8};
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (rows[r] == nullptr) continue;
      read_r4<L, kC>(ld, rows[r], rl.lo, rl.nc, j0, c, x.q[r]);
      if constexpr (kC == 1) {
        x.e[r][0] = ld.b2(rows[r] + rl.sc + 2 * j0);
      } else {
        // 2 bytes a chunk: kC chunks are kC / 2 words
        read_words<L, kC / 2>(ld, rows[r] + rl.sc, j0 / 2, (rl.nc + 1) / 2, x.e[r]);
      }
    }
  }
  // f16 high bytes of the doubled E2M1 values {0, 1, 2, 3, 4, 6, 8, 12} and their negatives.
  static constexpr uint32_t kT0 = 0x42403C00u, kT1 = 0x4A484644u, kT2 = 0xC2C0BC00u, kT3 = 0xCAC8C6C4u;
  template <int kC>
  VELOCITY_HD static void frag(const Data<kC>& x, int jj, int, int s, uint32_t a[4]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      const uint32_t w = x.q[r][2 * jj + (s >> 1)] >> (16 * (s & 1));  // codes kk = 0..3 in bits 0..15
      // byte n: code n's f16 high byte, from the positive (T0:T1) or negative (T2:T3) table
      const uint32_t pick = ((w >> 1) & 0x4444u) | 0x3210u;
      const uint32_t hb = byte_perm(byte_perm(kT0, kT1, w), byte_perm(kT2, kT3, w), pick);
      a[r] = byte_perm(hb, 0, 0x1404u);      // (kk 0, kk 1)
      a[r + 2] = byte_perm(hb, 0, 0x3424u);  // (kk 2, kk 3)
    }
  }
  template <int kC>
  VELOCITY_HD static void scale(const Data<kC>& x, int jj, int, int s, float sc[2], float off[2]) {
    const int byte = 2 * jj + (s >> 1);  // block of the step within the loaded bytes
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) sc[r] = e8m0_half(x.e[r][byte >> 2] >> (8 * (byte & 3)));
    off[0] = off[1] = 0.0f;
  }
};

// ---- K-quants (whole super-blocks: kIterChunks = 4 = a unit) ------------------------------------

// Q4_K / Q5_K: 16 bytes per super-block and row {d, dmin, scales[12]} (GGUF order).
template <bool kHigh>
struct KQuant45 : TiledK {
  static constexpr int kIterChunks = 4, kScaleSteps = 2;
  static constexpr bool kOffset = true;
  static constexpr bool kI8 = !kHigh;  // Q4_K decodes on int8 activations (matmul_decode.cuh)
  template <int kC>
  struct Data {
    uint32_t q[2][2 * kC];
    uint32_t h[2][kHigh ? (kC + 1) / 2 : 1];
    uint32_t sc[2][4];
  };
  template <class L, int kC>
  VELOCITY_HD static void load(L& ld, const uint8_t* rg, const uint8_t* rg8, const RowLayout& rl, int j0, int c, Data<kC>& x) {
    const uint8_t* rows[2] = {rg, rg8};
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (rows[r] == nullptr) continue;
      read_r4<L, kC>(ld, rows[r], rl.lo, rl.nc, j0, c, x.q[r]);
      if constexpr (kHigh) read_r1<L, kC>(ld, rows[r], rl.hi, rl.nc, j0, c, x.h[r]);
      ld.b16(rows[r] + rl.sc + 16 * (j0 >> 2), x.sc[r]);
    }
  }
  template <int kC>
  VELOCITY_HD static void frag(const Data<kC>& x, int jj, int jpos, int s, uint32_t a[4]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      uint32_t a01, a23;
      nib4(x.q[r] + 2 * jj, s, a01, a23);
      if constexpr (kHigh) {
        const uint32_t h = x.h[r][kC == 1 ? 0 : jj >> 1];
        const int q = jpos & 1;
        a01 |= shr(h, 8 * q + 2 * s - 4) & 0x00100010u;
        a23 |= shr(h, 8 * q + 2 * s + 1 - 4) & 0x00100010u;
      }
      a[r] = h2_sub(a01, 0x64006400u);
      a[r + 2] = h2_sub(a23, 0x64006400u);
    }
  }
  // The decode kernel's folded form (kFold): the A fragment holds sc_j * q (6-bit scale times
  // 4- or 5-bit level: at most 1953, an exact f16 integer), made with one fused f16x2 operation
  // per register as the plain form's subtraction: sc (1024 + q) - 1024 sc. The sub-block sums of
  // a super-block then accumulate in one mma chain, scaled by d once per super-block; the
  // offsets -dmin m_j still apply per sub-block. Per iteration (fold) the 8 scales and 8 mins of
  // each row are unpacked into bytes with a few word operations; per sub-block (fold_sub) each
  // is one byte permute away from an f16 or f32 value.
  static constexpr bool kFold = true;
  struct Fold {
    uint32_t sc[2][2];  // rows g, g + 8: scales of sub-blocks 0-3, 4-7, a byte each
    uint32_t mn[2][2];  // the mins, likewise
    float d[2], neg_dmin[2];
  };
  struct Sub {
    uint32_t sc2[2], neg2[2];  // f16x2 (sc, sc) and (-1024 sc, -1024 sc) of each row
    float off[2];              // -dmin m
  };
  template <int kC>
  VELOCITY_HD static Fold fold(const Data<kC>& x) {
    Fold f;
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      const uint32_t* w = x.sc[r];
      f.sc[r][0] = w[1] & 0x3F3F3F3Fu;
      f.sc[r][1] = (w[3] & 0x0F0F0F0Fu) | ((w[1] >> 2) & 0x30303030u);
      f.mn[r][0] = w[2] & 0x3F3F3F3Fu;
      f.mn[r][1] = ((w[3] >> 4) & 0x0F0F0F0Fu) | ((w[2] >> 2) & 0x30303030u);
      f.d[r] = h2f(w[0]);
      f.neg_dmin[r] = -h2f(w[0] >> 16);
    }
    return f;
  }
  VELOCITY_HD static Sub fold_sub(const Fold& f, int j) {
    Sub u;
    const uint32_t b = static_cast<uint32_t>(j & 3);
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      // bytes (sc, 0x64, sc, 0x64): f16x2 of 1024 + sc
      u.sc2[r] = h2_sub(byte_perm(f.sc[r][j >> 2], 0x64u, b | 4u << 4 | b << 8 | 4u << 12), 0x64006400u);
      u.neg2[r] = h2_fma(u.sc2[r], 0xE400E400u, 0u);  // x -1024: exact
      // bytes (m, 0, 0, 0x4B): the float 2^23 + m
      const float m = bits_to_float(byte_perm(f.mn[r][j >> 2], 0x4B000000u, b | 4u << 4 | 4u << 8 | 7u << 12)) - 8388608.0f;
      u.off[r] = fmul_rn(f.neg_dmin[r], m);
    }
    return u;
  }
  template <int kC>
  VELOCITY_HD static void frag_folded(const Data<kC>& x, int jj, int jpos, int s, const Sub& u, uint32_t a[4]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      uint32_t a01, a23;
      nib4(x.q[r] + 2 * jj, s, a01, a23);
      if constexpr (kHigh) {
        const uint32_t h = x.h[r][kC == 1 ? 0 : jj >> 1];
        const int q = jpos & 1;
        a01 |= shr(h, 8 * q + 2 * s - 4) & 0x00100010u;
        a23 |= shr(h, 8 * q + 2 * s + 1 - 4) & 0x00100010u;
      }
      a[r] = h2_fma(a01, u.sc2[r], u.neg2[r]);
      a[r + 2] = h2_fma(a23, u.sc2[r], u.neg2[r]);
    }
  }

  // Sub-block j (0..7): the reference's scale_min_k4 on scales[] = words 1..3.
  template <int kC>
  VELOCITY_HD static void scale(const Data<kC>& x, int, int jpos, int s, float sc[2], float off[2]) {
    const int j = 2 * jpos + (s >> 1);
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      const uint32_t* w = x.sc[r];
      const int b = 8 * (j & 3);
      uint32_t scale, min;
      if (j < 4) {
        scale = (w[1] >> b) & 63;
        min = (w[2] >> b) & 63;
      } else {
        scale = ((w[3] >> b) & 0xF) | ((w[1] >> (b + 6)) & 3) << 4;
        min = ((w[3] >> (b + 4)) & 0xF) | ((w[2] >> (b + 6)) & 3) << 4;
      }
      sc[r] = fmul_rn(h2f(w[0]), static_cast<float>(scale));
      off[r] = fmul_rn(-h2f(w[0] >> 16), static_cast<float>(min));
    }
  }
};
template <>
struct Fmt<DType::Q4_K> : KQuant45<false> {};
template <>
struct Fmt<DType::Q5_K> : KQuant45<true> {};

// Q2_K: 2-bit levels in R2; per super-block and row scales[16] (sc | m << 4) and {d, dmin}.
template <>
struct Fmt<DType::Q2_K> : TiledK {
  static constexpr int kIterChunks = 4, kScaleSteps = 1;
  static constexpr bool kOffset = true;
  template <int kC>
  struct Data {
    uint32_t q[2][kC];
    uint32_t sc[2][kC];  // scales[16] of the chunks: one byte per 16 elements, a word per chunk
    uint32_t dd[2];
  };
  template <class L, int kC>
  VELOCITY_HD static void load(L& ld, const uint8_t* rg, const uint8_t* rg8, const RowLayout& rl, int j0, int c, Data<kC>& x) {
    const uint8_t* rows[2] = {rg, rg8};
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (rows[r] == nullptr) continue;
      read_r2<L, kC>(ld, rows[r], rl.lo, j0, c, x.q[r]);
      read_words<L, kC>(ld, rows[r] + rl.sc, j0, rl.nc, x.sc[r]);
      x.dd[r] = ld.b4(rows[r] + rl.sc2 + 4 * (j0 >> 2));
    }
  }
  template <int kC>
  VELOCITY_HD static void frag(const Data<kC>& x, int jj, int, int s, uint32_t a[4]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      const uint32_t w = x.q[r][jj];
      a[r] = h2_sub(magic((w >> (4 * s)) & 0x00030003u), 0x64006400u);
      a[r + 2] = h2_sub(magic((w >> (4 * s + 2)) & 0x00030003u), 0x64006400u);
    }
  }
  template <int kC>
  VELOCITY_HD static void scale(const Data<kC>& x, int jj, int, int s, float sc[2], float off[2]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      const uint32_t b = (x.sc[r][jj] >> (8 * s)) & 0xFF;  // sub-block 4 jpos + s
      sc[r] = fmul_rn(h2f(x.dd[r]), static_cast<float>(b & 0xF));
      off[r] = fmul_rn(-h2f(x.dd[r] >> 16), static_cast<float>(b >> 4));
    }
  }
};

// Q3_K: 2-bit lows in R2, high bit in R1 (clear = subtract 4); scales[12] (6-bit, biased by 32)
// and d per super-block and row.
template <>
struct Fmt<DType::Q3_K> : TiledK {
  static constexpr int kIterChunks = 4, kScaleSteps = 1;
  static constexpr bool kOffset = false;
  template <int kC>
  struct Data {
    uint32_t q[2][kC];
    uint32_t h[2][(kC + 1) / 2];
    uint32_t sc[2][3];
    uint32_t d[2];
  };
  template <class L, int kC>
  VELOCITY_HD static void load(L& ld, const uint8_t* rg, const uint8_t* rg8, const RowLayout& rl, int j0, int c, Data<kC>& x) {
    const uint8_t* rows[2] = {rg, rg8};
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (rows[r] == nullptr) continue;
      read_r2<L, kC>(ld, rows[r], rl.lo, j0, c, x.q[r]);
      read_r1<L, kC>(ld, rows[r], rl.hi, rl.nc, j0, c, x.h[r]);
      const uint8_t* s = rows[r] + rl.sc + 12 * (j0 >> 2);
      VELOCITY_UNROLL
      for (int i = 0; i < 3; ++i) x.sc[r][i] = ld.b4(s + 4 * i);
      x.d[r] = ld.b2(rows[r] + rl.sc2 + 2 * (j0 >> 2));
    }
  }
  template <int kC>
  VELOCITY_HD static void frag(const Data<kC>& x, int jj, int jpos, int s, uint32_t a[4]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      const uint32_t w = x.q[r][jj];
      const uint32_t h = x.h[r][kC == 1 ? 0 : jj >> 1];
      const int q = jpos & 1;
      const uint32_t a01 = ((w >> (4 * s)) & 0x00030003u) | (shr(h, 8 * q + 2 * s - 2) & 0x00040004u);
      const uint32_t a23 = ((w >> (4 * s + 2)) & 0x00030003u) | (shr(h, 8 * q + 2 * s - 1) & 0x00040004u);
      a[r] = h2_sub(magic(a01), 0x64046404u);  // lo + 4 hb - 4
      a[r + 2] = h2_sub(magic(a23), 0x64046404u);
    }
  }
  template <int kC>
  VELOCITY_HD static void scale(const Data<kC>& x, int, int jpos, int s, float sc[2], float off[2]) {
    const int j = 4 * jpos + s;  // sub-block of 16: the reference's q3_scale
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      const uint32_t* w = x.sc[r];
      const uint32_t lo_word = (j & 4) ? w[1] : w[0];  // byte (j % 8) of bytes 0..7
      const uint32_t low = (lo_word >> (8 * (j & 3) + 4 * (j >> 3))) & 0xF;
      const uint32_t high = (w[2] >> (8 * (j & 3) + 2 * (j >> 2))) & 3;
      const int v = static_cast<int>(low | high << 4) - 32;
      sc[r] = fmul_rn(h2f(x.d[r]), static_cast<float>(v));
      off[r] = 0.0f;
    }
  }
};

// Q6_K: low nibbles in R4, high 2 bits in R2; int8 scales[16] and d per super-block and row.
template <>
struct Fmt<DType::Q6_K> : TiledK {
  static constexpr int kIterChunks = 2, kScaleSteps = 1;  // 2: within 128 registers (see Legacy4)
  static constexpr bool kOffset = false;
  template <int kC>
  struct Data {
    uint32_t q[2][2 * kC];
    uint32_t h[2][kC];
    uint32_t sc[2][kC];  // int8 scales[16] of the chunks: a word per chunk
    uint32_t d[2];
  };
  template <class L, int kC>
  VELOCITY_HD static void load(L& ld, const uint8_t* rg, const uint8_t* rg8, const RowLayout& rl, int j0, int c, Data<kC>& x) {
    const uint8_t* rows[2] = {rg, rg8};
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (rows[r] == nullptr) continue;
      read_r4<L, kC>(ld, rows[r], rl.lo, rl.nc, j0, c, x.q[r]);
      read_r2<L, kC>(ld, rows[r], rl.hi, j0, c, x.h[r]);
      read_words<L, kC>(ld, rows[r] + rl.sc, j0, rl.nc, x.sc[r]);
      x.d[r] = ld.b2(rows[r] + rl.sc2 + 2 * (j0 >> 2));
    }
  }
  template <int kC>
  VELOCITY_HD static void frag(const Data<kC>& x, int jj, int, int s, uint32_t a[4]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      uint32_t a01, a23;
      nib4(x.q[r] + 2 * jj, s, a01, a23);
      const uint32_t h = x.h[r][jj];
      a01 |= shr(h, 4 * s - 4) & 0x00300030u;
      a23 |= shr(h, 4 * s + 2 - 4) & 0x00300030u;
      a[r] = h2_sub(a01, 0x64206420u);  // q - 32
      a[r + 2] = h2_sub(a23, 0x64206420u);
    }
  }
  template <int kC>
  VELOCITY_HD static void scale(const Data<kC>& x, int jj, int, int s, float sc[2], float off[2]) {
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      const int v = static_cast<int8_t>((x.sc[r][jj] >> (8 * s)) & 0xFF);  // sub-block 4 jpos + s
      sc[r] = fmul_rn(h2f(x.d[r]), static_cast<float>(v));
      off[r] = 0.0f;
    }
  }
};

// ---- F16 / BF16: the GGUF layout, read in 16-byte runs ------------------------------------------
// Lane c reads elements 8c .. 8c+7 and 32 + 8c .. 32 + 8c + 7 of a chunk; step s takes 4 of them:
// k = 32 (s / 2) + 8c + 4 (s % 2) + kk.
template <bool kBf16>
struct Natural {
  static constexpr bool kNatural = true;
  static constexpr int kIterChunks = 2, kScaleSteps = 4;
  static constexpr bool kOffset = false;
  VELOCITY_HD static int k_lane(int c) { return 8 * c; }
  VELOCITY_HD static int k_step(int s) { return 32 * (s >> 1) + 4 * (s & 1); }
  template <int kC>
  struct Data {
    uint32_t q[2][8 * kC];  // rows g, g + 8: per chunk 2 runs of 4 words
  };
  template <class L, int kC>
  VELOCITY_HD static void load(L& ld, const uint8_t* rg, const uint8_t* rg8, const RowLayout& rl, int j0, int c, Data<kC>& x) {
    const uint8_t* rows[2] = {rg, rg8};
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (rows[r] == nullptr) continue;
      VELOCITY_UNROLL
      for (int jj = 0; jj < kC; ++jj) {
        if (j0 + jj >= rl.nc) continue;
        const uint8_t* p = rows[r] + 2 * (kChunkK * (j0 + jj) + 8 * c);
        ld.b16(p, x.q[r] + 8 * jj);
        ld.b16(p + 64, x.q[r] + 8 * jj + 4);
      }
    }
  }
  VELOCITY_HD static uint32_t to_f16x2(uint32_t w) {
    if constexpr (kBf16)
      return f2h2(bits_to_float(w << 16), bits_to_float(w & 0xFFFF0000u));
    else
      return w;
  }
  template <int kC>
  VELOCITY_HD static void frag(const Data<kC>& x, int jj, int, int s, uint32_t a[4]) {
    const int i = 8 * jj + 4 * (s >> 1) + 2 * (s & 1);
    VELOCITY_UNROLL
    for (int r = 0; r < 2; ++r) {
      a[r] = to_f16x2(x.q[r][i]);
      a[r + 2] = to_f16x2(x.q[r][i + 1]);
    }
  }
  template <int kC>
  VELOCITY_HD static void scale(const Data<kC>&, int, int, int, float sc[2], float off[2]) {
    sc[0] = sc[1] = 1.0f;
    off[0] = off[1] = 0.0f;
  }
};
template <>
struct Fmt<DType::F16> : Natural<false> {};
template <>
struct Fmt<DType::BF16> : Natural<true> {};

// y = s * q + o with the reference's rounding (o = 0 for the symmetric formats: s * q).
template <class F>
VELOCITY_HD float dequant_value(float s, float q, float o) {
  if constexpr (F::kOffset)
    return fadd_rn(fmul_rn(s, q), o);
  else
    return fmul_rn(s, q);
}

}  // namespace velocity::engine::cuda::mm
