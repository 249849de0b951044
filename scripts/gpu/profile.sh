#!/usr/bin/env bash
# Runs on the GPU machine: Nsight Compute on one launch of a kernel of the kernel lab, and the
# SASS of that kernel, into $OUT (the numbers behind docs/BENCHMARKS.md's "what limits it").
#   KERNEL   ncu kernel-name regex (default decode_kernel)
#   SKIP     launches of it to skip first (default 10: past the lab's warm-up)
#   SECTION  the lab section to run (default matmul_decode)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ -f gpu-bin.tar.xz ] && [ ! -x gpu-bin/velocity_kernel_lab ]; then mkdir -p gpu-bin && tar -C gpu-bin -xJf gpu-bin.tar.xz; fi
bin=$PWD/gpu-bin
kernel=${KERNEL:-decode_kernel}
name=${NAME:-prof}
ncu --set full --import-source no -k "regex:$kernel" --launch-skip "${SKIP:-10}" --launch-count 1 \
  -o "$OUT/$name" -f "$bin/velocity_kernel_lab" "${SECTION:-matmul_decode}" > "$OUT/$name.run.log" 2>&1
echo "ncu rc=$?"
ncu -i "$OUT/$name.ncu-rep" --print-details all > "$OUT/$name.details.txt" 2>&1
ncu -i "$OUT/$name.ncu-rep" --page source --csv --print-source sass > "$OUT/$name.sass.csv" 2>&1
grep -E "Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Block Limit|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Stall|L1/TEX Hit|L2 Hit|Waves Per SM|Grid Size|Function Name|Demangled" \
  "$OUT/$name.details.txt" | head -60
