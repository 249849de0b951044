// AVX-512 (VL/BW/DQ) + VNNI build of the x86 kernels (matmul_x86.h): vpdpbusd / vpdpwssd for the
// integer dot products, 512-bit variants (two blocks a step, 8 tokens a tile) for Q8_0, Q4_0
// and MXFP4, and the kernels for the packed layout (matmul_packed.h).
//
// GCC 12's avx512fintrin.h initialises its "undefined" pass-through operands with themselves
// (`__m512 __Y = __Y;`), which -Wuninitialized reports at every unmasked 512-bit intrinsic
// (GCC bug 105593); the warning is about the header, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define VELOCITY_X86_NS avx512
#include "engine/cpu/matmul_x86.h"
#include "engine/cpu/matmul_packed_x86.h"

namespace velocity::engine::cpu {
RowsKernel avx512_rows_kernel(DType type) { return avx512::rows_kernel(type); }
RowsKernel avx512_packed_rows_kernel(DType type) { return avx512::packed_rows_kernel(type); }
QuantizeActFn avx512_quantizer(ActKind kind) { return avx512::quantizer(kind); }
}  // namespace velocity::engine::cpu
#pragma GCC diagnostic pop
