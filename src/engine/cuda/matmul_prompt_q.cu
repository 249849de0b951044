// The prompt matrix-product kernels of the 32-element block formats, MXFP4, F16 and BF16
// (matmul_prompt.cuh), one instantiation per type; the K-quants are in matmul_prompt_k.cu.
#include "engine/cuda/matmul_prompt.cuh"

VELOCITY_MATMUL_PROMPT_INSTANTIATE(velocity::DType::Q8_0)
VELOCITY_MATMUL_PROMPT_INSTANTIATE(velocity::DType::Q4_0)
VELOCITY_MATMUL_PROMPT_INSTANTIATE(velocity::DType::Q4_1)
VELOCITY_MATMUL_PROMPT_INSTANTIATE(velocity::DType::Q5_0)
VELOCITY_MATMUL_PROMPT_INSTANTIATE(velocity::DType::Q5_1)
VELOCITY_MATMUL_PROMPT_INSTANTIATE(velocity::DType::MXFP4)
VELOCITY_MATMUL_PROMPT_INSTANTIATE(velocity::DType::F16)
VELOCITY_MATMUL_PROMPT_INSTANTIATE(velocity::DType::BF16)
