// AVX-512 build of the attention kernel (attention_x86.h). The pragmas: GCC bug 105593, as in
// matmul_avx512.cpp (avx512fintrin.h's self-initialised "undefined" operands).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define VELOCITY_X86_NS attn_avx512
#include "engine/cpu/attention_x86.h"

namespace velocity::engine::cpu {
AttentionKernels avx512_attention_kernels() { return attn_avx512::attention_kernels(); }
}  // namespace velocity::engine::cpu
#pragma GCC diagnostic pop
