#!/usr/bin/env bash
# Packs the CUDA build's binaries (stripped, xz) into gpu-bin.tar.xz, the file a device call
# carries (`carry: ["gpu-bin.tar.xz"]`; git-ignored; a call carries at most 64 MiB with the
# tree); scripts/gpu/device_run.sh unpacks it there. Build first:
#   cmake -S . -B build/cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DVELOCITY_CUDA=ON -DVELOCITY_CUDA_ARCHS=90
#   ninja -C build/cuda velocity velocity_gpu_tests velocity_kernel_lab velocity_model_tests
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/cuda}
rm -rf gpu-bin && mkdir -p gpu-bin
for b in app/velocity tests/velocity_gpu_tests bench/cuda/velocity_kernel_lab tests/velocity_model_tests; do
  [ -f "$build/$b" ] || { echo "missing $build/$b" >&2; exit 1; }
  strip -o "gpu-bin/$(basename "$b")" "$build/$b"
done
pwd > gpu-bin/srcdir  # the test binaries' VELOCITY_SOURCE_DIR
git rev-parse --short HEAD > gpu-bin/commit
git diff --quiet HEAD -- src || echo "+dirty" >> gpu-bin/commit
tar -C gpu-bin -cJf gpu-bin.tar.xz .
du -sh gpu-bin gpu-bin.tar.xz
