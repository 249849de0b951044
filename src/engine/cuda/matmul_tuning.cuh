// Launch-size overrides of the matrix-product kernels, for the kernel lab's sweeps (bench/cuda).
// Host-only: the lab includes it from a .cpp. A model never sets them; results stay
// deterministic for any fixed setting (the choice depends on nothing but these values and the
// weight's shape).
#pragma once

namespace velocity::engine::cuda {

class MatmulWorkspace;

namespace mm {
struct DecodeTuning {
  int rows_warps = 0;  // warps (16-row tiles) of a decode block along the rows: 1, 2, 4 or 8 (the
                       // rest of the block's 8 warps split K); 0: automatic
  int splits = 0;      // blocks splitting K of a plain decode product; 0: automatic
};
}  // namespace mm

// Sets the decode overrides of `ws` (a workspace from make_matmul_workspace).
void set_matmul_decode_tuning(MatmulWorkspace& ws, mm::DecodeTuning tuning);

}  // namespace velocity::engine::cuda
