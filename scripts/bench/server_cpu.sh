#!/usr/bin/env bash
# The issue-5 server benchmark on CPU: raw `velocity bench` decode at batch 1 and 8, then
# `velocity serve` with 8 slots and `velocity bench --url` at concurrency 1 and 8. The server's
# compute threads and the client are pinned to different cores, so the client does not take
# cycles from the engine (on a 2-core box they share; say so when you quote such numbers).
#
#   scripts/bench/server_cpu.sh VELOCITY MODEL [SERVER_CPUS] [CLIENT_CPU]
#   e.g. scripts/bench/server_cpu.sh build/release/app/velocity /tmp/l1b-q8.gguf 2,3 6
# Environment: CLIENT=another velocity binary for `bench --url` (default: VELOCITY), PORT,
# DEPTHS (raw bench depths, default 160), CASES (';'-separated `bench --url` argument sets).
set -euo pipefail
velocity=$1
model=$2
server_cpus=${3:-0,1}
client_cpu=${4:-}
threads=$(awk -F, '{print NF}' <<<"$server_cpus")
port=${PORT:-18231}
pin_server=(taskset -c "$server_cpus")
pin_client=()
[[ -n "$client_cpu" ]] && pin_client=(taskset -c "$client_cpu")

echo "## raw decode (velocity bench, cpus $server_cpus)"
"${pin_server[@]}" "$velocity" bench -m "$model" -p 0 -n 64 -b 1,8 -d "${DEPTHS:-160}" -t "$threads" -r 3

"${pin_server[@]}" "$velocity" serve -m "$model" --slots 8 -t "$threads" --port "$port" >/tmp/server_cpu_bench.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.5
done
client=${CLIENT:-$velocity}
IFS=';' read -r -a cases <<<"${CASES:--p 8 -n 128 --requests 8;-p 32 -n 64}"
for args in "${cases[@]}"; do
  echo "## through HTTP: $args (server cpus $server_cpus, client cpu ${client_cpu:-shared})"
  # shellcheck disable=SC2086
  "${pin_client[@]}" "$client" bench --url "http://127.0.0.1:$port" --concurrency 1,8 $args
done
