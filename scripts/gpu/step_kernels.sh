#!/usr/bin/env bash
# Runs on the GPU machine: the duration of every kernel of a few decode steps of `velocity bench`
# (Nsight Compute, duration only), summed per kernel over the last STEPS steps, into $OUT. Tells
# where a token's time goes (products, attention, the small kernels between them).
#   MODEL   the GGUF (default /tmp/models/llama3-8b-Q4_K_M.gguf, made by device_run.sh bench)
#   COUNT   kernels to profile from the start (default 6000: load, a 16-token prompt, decode)
#   STEPS   decode steps the summary covers (default 2)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ -f gpu-bin.tar.xz ] && [ ! -x gpu-bin/velocity ]; then mkdir -p gpu-bin && tar -C gpu-bin -xJf gpu-bin.tar.xz; fi
bin=$PWD/gpu-bin
model=${MODEL:-/tmp/models/llama3-8b-Q4_K_M.gguf}
name=$(basename "$model" .gguf)
VELOCITY_CUDA_GRAPHS=0 ncu --metrics gpu__time_duration.sum --csv --launch-count "${COUNT:-6000}" \
  "$bin/velocity" bench -m "$model" --device cuda:0 -p 16 -n 8 -r 1 --batch 1 > "$OUT/steps-$name.csv" 2> "$OUT/steps-$name.err"
echo "ncu rc=$?"
python3 - "$OUT/steps-$name.csv" "${STEPS:-2}" <<'EOF'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]
ki, vi = head.index("Kernel Name"), head.index("Metric Value")
ids = head.index("ID")
seen, kernels = set(), []
for r in rows[1:]:
    if r[ids] in seen: continue
    seen.add(r[ids])
    kernels.append((r[ki], float(r[vi].replace(",", ""))))
# A decode step ends with the logits product of the output head: the largest decode product.
# Steps are the runs between its calls; take the last STEPS complete ones.
names = [k for k, _ in kernels]
argmax_like = [i for i, (k, _) in enumerate(kernels) if "sample" in k or "argmax" in k or "logits" in k]
steps = int(sys.argv[2])
marks = argmax_like[-(steps + 1):] if len(argmax_like) > steps else []
if not marks:
    print("no step marker kernel found; kernel names:", sorted(set(names))[:40]); sys.exit(0)
part = kernels[marks[0] + 1: marks[-1] + 1]
tot = collections.defaultdict(lambda: [0, 0.0])
for k, ns in part:
    short = k.split("(")[0][:90]
    tot[short][0] += 1; tot[short][1] += ns
all_ns = sum(v[1] for v in tot.values())
print(f"{len(part)} kernels over {steps} steps: {all_ns / steps / 1e3:.1f} us of kernel time per step")
for k, (n, ns) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print(f"{ns / steps / 1e3:9.1f} us  {n // steps:5d} calls  {100 * ns / all_ns:5.1f}%  {k}")
EOF
