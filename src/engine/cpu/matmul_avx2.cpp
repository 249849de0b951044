// AVX2 + FMA + F16C build of the x86 kernels (matmul_x86.h).
#define VELOCITY_X86_NS avx2
#include "engine/cpu/matmul_x86.h"

namespace velocity::engine::cpu {
RowsKernel avx2_rows_kernel(DType type) { return avx2::rows_kernel(type); }
QuantizeActFn avx2_quantizer(ActKind kind) { return avx2::quantizer(kind); }
}  // namespace velocity::engine::cpu
