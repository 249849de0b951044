// Shared-memory addressing of the prompt kernel's f16 tiles (matmul_prompt.cuh), host and
// device, so that tests/gpu/matmul_test.cpp can check on any machine that what the cp.async
// copies and the dequantiser write is what ldmatrix hands each lane.
//
// A tile is [rows][64] f16, 128 bytes a row, its 16-byte chunks swizzled by row (chunk ^ row % 8):
// the 8 rows one ldmatrix phase reads fall in 8 different bank groups, and so do the 8-byte
// stores of the dequantiser. Every row an ldmatrix lane points at has row % 8 == lane % 8, so a
// lane's chunk for k step kk is 2 kk ^ x with x constant per lane, and fragment i (16 rows
// further) is a compile-time 16 * 128 bytes further.
#pragma once

#include <cstdint>

#include "engine/cuda/quant_device.cuh"

namespace velocity::engine::cuda::mm {

inline constexpr int kTileRowBytes = 128;  // 64 f16

// Byte offset of element (row, col) of a tile.
VELOCITY_HD int tile_swz(int row, int col) {
  return row * kTileRowBytes + ((((col >> 3) ^ row) & 7) << 4) + ((col & 7) << 1);
}

// ldmatrix.x4 row address (byte offset) of `lane` for the A fragments (weights, [row][k]) of warp
// row wm, k step kk; m-tile i adds i * 16 * 128. Lanes 0-15 point at rows 0-15, k 0; lanes 16-31
// at rows 0-15, k 8: registers a0..a3 of mma.m16n8k16.
VELOCITY_HD uint32_t ldsm_a_offset(int wm, int lane, int kk) {
  const int row = 64 * wm + (lane & 15), x = ((lane >> 4) ^ lane) & 7;
  return static_cast<uint32_t>(row * kTileRowBytes + (((2 * kk) ^ x) << 4));
}

// ldmatrix.x4 row address of `lane` for the B fragments (activations, [token][k]) of warp column
// wn, k step kk; token pair jj adds jj * 16 * 128. Lanes 0-7: tokens 0-7, k 0; 8-15: tokens 0-7,
// k 8; 16-23: tokens 8-15, k 0; 24-31: tokens 8-15, k 8: {b0, b1} of n-tile 2jj, then of 2jj+1.
VELOCITY_HD uint32_t ldsm_b_offset(int wn, int lane, int kk) {
  const int row = 32 * wn + (lane & 7) + 8 * (lane >> 4), x = (((lane >> 3) & 1) ^ lane) & 7;
  return static_cast<uint32_t>(row * kTileRowBytes + (((2 * kk) ^ x) << 4));
}

}  // namespace velocity::engine::cuda::mm
