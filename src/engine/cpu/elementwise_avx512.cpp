// AVX-512 build of the elementwise kernels (elementwise_x86.h). The pragmas: GCC bug 105593, as in
// matmul_avx512.cpp.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define VELOCITY_X86_NS elem_avx512
#include "engine/cpu/elementwise_x86.h"

namespace velocity::engine::cpu {
ElementwiseKernels avx512_elementwise_kernels() { return elem_avx512::elementwise_kernels_here(); }
}  // namespace velocity::engine::cpu
#pragma GCC diagnostic pop
