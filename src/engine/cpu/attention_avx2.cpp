// AVX2 + FMA + F16C build of the attention kernel (attention_x86.h).
#define VELOCITY_X86_NS attn_avx2
#include "engine/cpu/attention_x86.h"

namespace velocity::engine::cpu {
AttentionKernels avx2_attention_kernels() { return attn_avx2::attention_kernels(); }
}  // namespace velocity::engine::cpu
