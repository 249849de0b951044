// AVX2 + FMA build of the elementwise kernels (elementwise_x86.h).
#define VELOCITY_X86_NS elem_avx2
#include "engine/cpu/elementwise_x86.h"

namespace velocity::engine::cpu {
ElementwiseKernels avx2_elementwise_kernels() { return elem_avx2::elementwise_kernels_here(); }
}  // namespace velocity::engine::cpu
