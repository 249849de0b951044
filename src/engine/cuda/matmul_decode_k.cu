// The decode matrix-product kernels of the K-quants (matmul_decode.cuh), one instantiation per
// type; the 32-element formats and F16/BF16 are in matmul_decode_q.cu (the two compile in parallel).
#include "engine/cuda/matmul_decode.cuh"

VELOCITY_MATMUL_DECODE_INSTANTIATE(velocity::DType::Q2_K)
VELOCITY_MATMUL_DECODE_INSTANTIATE(velocity::DType::Q3_K)
VELOCITY_MATMUL_DECODE_INSTANTIATE(velocity::DType::Q4_K)
VELOCITY_MATMUL_DECODE_INSTANTIATE(velocity::DType::Q5_K)
VELOCITY_MATMUL_DECODE_INSTANTIATE(velocity::DType::Q6_K)
