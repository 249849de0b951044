// Shared by the CUDA backend's .cu files: error checks that tell a device fault from an ordinary
// error, and small device functions (warp reductions, half conversions).
//
// The .cu files stay free of heavy host headers (fmt, <format>-like consteval code, ranges):
// nvcc's front end rejects some of them. Errors are therefore raised through the functions
// below, implemented in errors.cpp (compiled by the host compiler), which throw DeviceFault for
// sticky errors and velocity::Error otherwise. Host-side logic that wants fmt or the standard
// library's newer parts belongs in .cpp files (cuda_backend.cpp).
#pragma once

#include <cuda_runtime.h>
#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

#include <cstdint>

namespace velocity::engine::cuda {

// Throws engine::DeviceFault when `error` is sticky (illegal address, launch failure, ECC, lost
// device: the context is unusable), velocity::Error otherwise. `what` names the failed call.
[[noreturn]] void throw_cuda_error(cudaError_t error, const char* what, const char* file, int line);
// Throws velocity::InternalError("internal check failed at file:line: condition: message") —
// the equivalent of VELOCITY_CHECK for .cu files.
[[noreturn]] void throw_check_failed(const char* condition, const char* message, const char* file, int line);
// Throws velocity::Error(message) — for errors a user can cause (an unsupported type or size).
[[noreturn]] void throw_error(const char* message);

}  // namespace velocity::engine::cuda

// Every CUDA runtime call is checked; the message names the call, file and line.
#define VELOCITY_CUDA(call)                                                                        \
  do {                                                                                             \
    const cudaError_t velocity_cuda_error_ = (call);                                               \
    if (velocity_cuda_error_ != cudaSuccess)                                                       \
      ::velocity::engine::cuda::throw_cuda_error(velocity_cuda_error_, #call, __FILE__, __LINE__); \
  } while (0)
// After a kernel launch: a bad configuration shows up here (execution errors surface at the next
// synchronising call).
#define VELOCITY_CUDA_LAUNCHED() VELOCITY_CUDA(cudaGetLastError())
// An invariant in host code of a .cu file (stays on in release builds).
#define VELOCITY_CUDA_CHECK(cond, message)                                                  \
  do {                                                                                      \
    if (!(cond)) ::velocity::engine::cuda::throw_check_failed(#cond, message, __FILE__, __LINE__); \
  } while (0)

namespace velocity::engine::cuda {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace velocity::engine::cuda

#if defined(__CUDACC__)  // device helpers: .cu files only
namespace velocity::engine::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// rsqrt(mean(x^2) + eps) of a row of n values, in one fixed order: thread t of a block of 1024
// sums x[t + 1024 i]^2 in i order (rms_step; the matmul converter does the same on values it
// holds in registers), then a butterfly per warp and a butterfly of the 32 warp sums
// (rms_finish). rms_norm and the converter's fused norm both go through these, so the two give
// the same bits. Every thread of the block (exactly kRmsThreads) calls rms_finish and gets the
// result. shared: 32 floats.
inline constexpr int kRmsThreads = 1024;

__device__ __forceinline__ float rms_step(float ss, float x) { return __fmaf_rn(x, x, ss); }

__device__ __forceinline__ float rms_finish(float ss, int64_t n, float eps, float* shared) {
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = ss;
  __syncthreads();
  const float v = warp_sum(shared[threadIdx.x & 31]);
  __syncthreads();  // shared may be reused right after
  return rsqrtf(v / static_cast<float>(n) + eps);
}

__device__ __forceinline__ float row_rms_scale(const float* x, int64_t n, float eps, float* shared) {
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kRmsThreads) ss = rms_step(ss, x[i]);
  return rms_finish(ss, n, eps, shared);
}

// The swiglu value silu(g) * u, as the swiglu kernel computes it.
__device__ __forceinline__ float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// A product's output element: y = v * inv, or y += v * inv (the residual add fused: the product
// rounded, then the sum, as the separate add kernel does).
__device__ __forceinline__ void store_y(float* y, float v, float inv, bool accumulate) {
  const float prod = __fmul_rn(v, inv);
  *y = accumulate ? __fadd_rn(*y, prod) : prod;
}

// GGUF half fields are raw little-endian bits.
__device__ __forceinline__ float half_bits_to_float(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

}  // namespace velocity::engine::cuda
#endif  // __CUDACC__
