// KV cache writes of the CUDA backend: each token's K and V rows quantised to the cache types at
// (seq, position), and the copy of a sequence's positions to another slot.
//
// Why bit for bit: the CPU backend, the tests and a cache written on one device and read on
// another must all agree on what a quantised row is, so every quantiser here is the reference
// one (core/quant_legacy.cpp) step for step: the same float operations in the same order, with
// the explicitly rounded intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn) so that nvcc cannot fuse
// a multiply and an add into an FMA the reference does not do, std::min / std::max semantics for
// the extremes (which matters for signed zeros), and __float2half_rn, which rounds to nearest
// even like fp32_to_fp16 (subnormals and overflow to inf included).
//
// One thread per quantisation block (32 elements) or per 8 elements of an F16/F32 row: a few
// hundred thousand threads for a 512-token prompt chunk, a few hundred for a decode step.
#include <cfloat>
#include <cmath>
#include <string>

#include "engine/cuda/attention_common.cuh"

namespace velocity::engine::cuda {

namespace {

using attn::kF16;
using attn::kF32;
using attn::kQ4_0;
using attn::kQ4_1;
using attn::kQ5_1;
using attn::kQ8_0;

constexpr int kStoreThreads = 128;

struct StoreArgs {
  uint8_t* dst[2] = {};  // K, V cache
  int kind[2] = {};
  int row_bytes[2] = {};
  int dim[2] = {};
  int unit[2] = {};   // elements per thread: 32 (quantised) or up to 8 (F16, F32)
  int units[2] = {};  // threads per head row: dim / unit
  const float* src[2] = {};
  int64_t ld[2] = {};
  int n_head_kv = 0, n_slots = 0, n_ctx = 0, n_tokens = 0;
  const int32_t* positions = nullptr;
  const int32_t* seq_ids = nullptr;
};

__device__ __forceinline__ void st_u16(uint8_t* p, uint32_t v) {
  *reinterpret_cast<uint16_t*>(p) = static_cast<uint16_t>(v);
}
__device__ __forceinline__ uint32_t half_bits(float x) { return __half_as_ushort(__float2half_rn(x)); }
// std::min(a, b) / std::max(a, b): a unless b is strictly smaller / larger.
__device__ __forceinline__ float std_min(float a, float b) { return b < a ? b : a; }
__device__ __forceinline__ float std_max(float a, float b) { return a < b ? b : a; }

// Q8_0: d = amax / 127, q = round-half-away(x / d).
__device__ void quantize_q8_0(const float* x, uint8_t* dst) {
  float v[32];
#pragma unroll
  for (int j = 0; j < 32; ++j) v[j] = x[j];
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < 32; ++j) amax = std_max(amax, fabsf(v[j]));
  const float d = __fdiv_rn(amax, 127.0f);
  const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
  st_u16(dst, half_bits(d));
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const int q0 = static_cast<int>(roundf(__fmul_rn(v[2 * j], id)));
    const int q1 = static_cast<int>(roundf(__fmul_rn(v[2 * j + 1], id)));
    st_u16(dst + 2 + 2 * j, (q0 & 0xFF) | (q1 & 0xFF) << 8);
  }
}

__device__ __forceinline__ int trunc_level(float v, int hi) {
  const int q = static_cast<int>(v);  // toward zero, as the reference's (int) cast
  return q < 0 ? 0 : (q > hi ? hi : q);
}

// Q4_0: d = (signed value of largest magnitude, first on ties) / -8, q = min(15, trunc(x/d + 8.5)).
__device__ void quantize_q4_0(const float* x, uint8_t* dst) {
  float v[32];
#pragma unroll
  for (int j = 0; j < 32; ++j) v[j] = x[j];
  float vmax = 0.0f, mag = 0.0f;
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    if (mag < fabsf(v[j])) {
      mag = fabsf(v[j]);
      vmax = v[j];
    }
  }
  const float d = __fdiv_rn(vmax, -8.0f);
  const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
  st_u16(dst, half_bits(d));
#pragma unroll
  for (int j = 0; j < 16; j += 2) {
    uint32_t bytes = 0;
#pragma unroll
    for (int b = 0; b < 2; ++b) {
      const int lo = trunc_level(__fadd_rn(__fmul_rn(v[j + b], id), 8.5f), 15);
      const int hi = trunc_level(__fadd_rn(__fmul_rn(v[j + b + 16], id), 8.5f), 15);
      bytes |= static_cast<uint32_t>(lo | hi << 4) << (8 * b);
    }
    st_u16(dst + 2 + j, bytes);
  }
}

// Q4_1 (LEVELS 15) and Q5_1 (31): d = (max - min) / LEVELS, m = min, q = trunc((x - m) / d + 0.5).
template <int LEVELS>
__device__ void quantize_qx_1(const float* x, uint8_t* dst) {
  float v[32];
#pragma unroll
  for (int j = 0; j < 32; ++j) v[j] = x[j];
  float mn = FLT_MAX, mx = -FLT_MAX;
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    mn = std_min(mn, v[j]);
    mx = std_max(mx, v[j]);
  }
  const float d = __fdiv_rn(__fsub_rn(mx, mn), static_cast<float>(LEVELS));
  const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
  st_u16(dst, half_bits(d));
  st_u16(dst + 2, half_bits(mn));
  constexpr int kQs = LEVELS == 15 ? 4 : 8;
  uint32_t qh = 0;
#pragma unroll
  for (int j = 0; j < 16; j += 2) {
    uint32_t bytes = 0;
#pragma unroll
    for (int b = 0; b < 2; ++b) {
      const int lo = trunc_level(__fadd_rn(__fmul_rn(__fsub_rn(v[j + b], mn), id), 0.5f), LEVELS);
      const int hi = trunc_level(__fadd_rn(__fmul_rn(__fsub_rn(v[j + b + 16], mn), id), 0.5f), LEVELS);
      bytes |= static_cast<uint32_t>((lo & 0xF) | (hi & 0xF) << 4) << (8 * b);
      qh |= static_cast<uint32_t>(lo >> 4) << (j + b);
      qh |= static_cast<uint32_t>(hi >> 4) << (j + b + 16);
    }
    st_u16(dst + kQs + j, bytes);
  }
  if constexpr (LEVELS == 31) {
    st_u16(dst + 4, qh & 0xFFFF);
    st_u16(dst + 6, qh >> 16);
  }
}

// Tokens' K and V rows -> the cache. One thread per (token, K or V, kv head, unit of elements);
// grid ceil(n_tokens * n_head_kv * (units_k + units_v) / 128), block 128.
__global__ void __launch_bounds__(kStoreThreads) kv_store_kernel(const StoreArgs a) {
  const int64_t per_token = static_cast<int64_t>(a.n_head_kv) * (a.units[0] + a.units[1]);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kStoreThreads + threadIdx.x;
  if (i >= per_token * a.n_tokens) return;
  const int t = static_cast<int>(i / per_token);
  int rem = static_cast<int>(i % per_token);
  const int seq = a.seq_ids[t], pos = a.positions[t];
  if (seq < 0 || seq >= a.n_slots || pos < 0 || pos >= a.n_ctx) return;  // padding: nothing written
  const int which = rem < a.n_head_kv * a.units[0] ? 0 : 1;
  if (which == 1) rem -= a.n_head_kv * a.units[0];
  const int h = rem / a.units[which], u = rem % a.units[which];
  const int unit = a.unit[which];
  const float* x =
      a.src[which] + static_cast<int64_t>(t) * a.ld[which] + static_cast<int64_t>(h) * a.dim[which] + u * unit;
  uint8_t* row = a.dst[which] + ((static_cast<int64_t>(seq) * a.n_head_kv + h) * a.n_ctx + pos) * a.row_bytes[which];
  switch (a.kind[which]) {
    case kF32: {
      float* y = reinterpret_cast<float*>(row) + u * unit;
      for (int e = 0; e < unit; ++e) y[e] = x[e];
      break;
    }
    case kF16: {
      uint8_t* y = row + 2 * u * unit;
      for (int e = 0; e < unit; ++e) st_u16(y + 2 * e, half_bits(x[e]));
      break;
    }
    case kQ8_0: quantize_q8_0(x, row + u * 34); break;
    case kQ4_0: quantize_q4_0(x, row + u * 18); break;
    case kQ4_1: quantize_qx_1<15>(x, row + u * 20); break;
    default: quantize_qx_1<31>(x, row + u * 24); break;  // Q5_1
  }
}

int store_kind(DType t) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::Q8_0: return kQ8_0;
    case DType::Q4_0: return kQ4_0;
    case DType::Q4_1: return kQ4_1;
    case DType::Q5_1: return kQ5_1;
    default: break;
  }
  throw_error(
      (std::string("KV cache type ") + std::string(dtype_name(t)) + " is not supported by the CUDA backend").c_str());
}

// Elements per thread of a row of `dim` elements: a quantisation block, or up to 8 plain values.
int store_unit(DType t, int64_t dim) {
  if (t != DType::F32 && t != DType::F16) return 32;
  for (int u : {8, 4, 2})
    if (dim % u == 0) return u;
  return 1;
}

}  // namespace

bool kv_cache_supports(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1 ||
         t == DType::Q5_1;
}

void kv_store(const KvLayer& cache, const float* k, int64_t ldk, const float* v, int64_t ldv, const int32_t* positions,
              const int32_t* seq_ids, int64_t n_tokens, cudaStream_t stream) {
  VELOCITY_CUDA_CHECK(n_tokens >= 0 && n_tokens < (1ll << 31), "kv_store: token count");
  if (n_tokens == 0) return;
  VELOCITY_CUDA_CHECK(
      cache.k && cache.v && cache.n_head_kv > 0 && cache.n_slots > 0 && cache.n_ctx > 0 && cache.n_ctx < (1ll << 31),
      "kv_store: cache shape");
  VELOCITY_CUDA_CHECK(
      cache.head_dim_k % dtype_block_size(cache.type_k) == 0 && cache.head_dim_v % dtype_block_size(cache.type_v) == 0,
      "kv_store: head dims must be whole blocks of the cache types");
  VELOCITY_CUDA_CHECK(ldk >= cache.n_head_kv * cache.head_dim_k && ldv >= cache.n_head_kv * cache.head_dim_v,
                      "kv_store: leading dimensions");
  StoreArgs a;
  const DType types[2] = {cache.type_k, cache.type_v};
  const int64_t dims[2] = {cache.head_dim_k, cache.head_dim_v};
  uint8_t* dsts[2] = {cache.k, cache.v};
  const float* srcs[2] = {k, v};
  const int64_t lds[2] = {ldk, ldv};
  for (int s = 0; s < 2; ++s) {
    a.dst[s] = dsts[s];
    a.kind[s] = store_kind(types[s]);
    a.row_bytes[s] = static_cast<int>(dtype_row_bytes(types[s], dims[s]));
    a.dim[s] = static_cast<int>(dims[s]);
    a.unit[s] = store_unit(types[s], dims[s]);
    a.units[s] = static_cast<int>(dims[s] / a.unit[s]);
    a.src[s] = srcs[s];
    a.ld[s] = lds[s];
  }
  a.n_head_kv = static_cast<int>(cache.n_head_kv);
  a.n_slots = static_cast<int>(cache.n_slots);
  a.n_ctx = static_cast<int>(cache.n_ctx);
  a.n_tokens = static_cast<int>(n_tokens);
  a.positions = positions;
  a.seq_ids = seq_ids;
  const int64_t threads = n_tokens * cache.n_head_kv * (a.units[0] + a.units[1]);
  kv_store_kernel<<<static_cast<unsigned>(ceil_div(threads, kStoreThreads)), kStoreThreads, 0, stream>>>(a);
  VELOCITY_CUDA_LAUNCHED();
}

void kv_copy_sequence(const KvLayer& cache, int32_t src, int32_t dst, int64_t n, cudaStream_t stream) {
  VELOCITY_CUDA_CHECK(src >= 0 && src < cache.n_slots && dst >= 0 && dst < cache.n_slots && n >= 0 && n <= cache.n_ctx,
                      "kv_copy_sequence: slot or length out of range");
  if (src == dst || n == 0) return;
  // A slot's rows of one KV head are one run of n_ctx rows; the heads of a slot are n_head_kv
  // runs one after the other: a 2-D copy of n_head_kv rows of n * row_bytes.
  for (int s = 0; s < 2; ++s) {
    uint8_t* base = s == 0 ? cache.k : cache.v;
    const size_t row_bytes = static_cast<size_t>(s == 0 ? cache.k_row_bytes() : cache.v_row_bytes());
    const size_t pitch = static_cast<size_t>(cache.n_ctx) * row_bytes;
    const size_t slot_bytes = pitch * static_cast<size_t>(cache.n_head_kv);
    VELOCITY_CUDA(cudaMemcpy2DAsync(
        base + static_cast<size_t>(dst) * slot_bytes, pitch, base + static_cast<size_t>(src) * slot_bytes, pitch,
        static_cast<size_t>(n) * row_bytes, static_cast<size_t>(cache.n_head_kv), cudaMemcpyDeviceToDevice, stream));
  }
}

}  // namespace velocity::engine::cuda
