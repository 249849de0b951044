// CPU matmul throughput: GB/s of weight bytes read per second, per weight type, at 1 and 8
// tokens, for one 1024 x 1024 matrix (in L2: the kernels' own speed), one 4096 x 4096 matrix (its
// bytes fit in a large L3 for the smaller types) and for a set of 4096 x 4096 matrices totalling
// >= 256 MiB used round-robin (always from DRAM), against the machine's read bandwidth measured
// by core/membw.h (counter frac_bw = GB/s / that). GB/cpu_s divides by the process's CPU time
// instead of wall time: with VELOCITY_THREADS=1 it is one core's rate whatever else the machine
// runs. Types with a load-time packed layout on this CPU (matmul_packed.h) run in both layouts
// ("/packed"); bytes are the GGUF layout's (what a token reads from the model).
//
//   build/<dir>/bench/matmul_bench                          # all types, best ISA, all cores
//   VELOCITY_THREADS=2 VELOCITY_CPU_ISA=avx2 build/<dir>/bench/matmul_bench --benchmark_filter='Q8_0'
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/membw.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "engine/cpu/matmul.h"

using namespace velocity;

namespace {

// VELOCITY_THREADS=n picks the thread count (default: one per core).
ThreadPool& pool() {
  static ThreadPool p(std::getenv("VELOCITY_THREADS") ? std::atoi(std::getenv("VELOCITY_THREADS")) : 0);
  return p;
}

double bandwidth() {
  static const double bw = measure_read_bandwidth(pool(), 1ull << 30, 5).bytes_per_second;
  return bw;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

constexpr int64_t kSetBytes = 256ll << 20;

// n_mat matrices of n x n: 64 distinct rows quantised from random data, repeated (the kernels'
// speed does not depend on the values, only on their being ordinary numbers).
std::vector<uint8_t> make_weights(DType type, int64_t n, int64_t n_mat) {
  const int64_t row_bytes = dtype_row_bytes(type, n);
  std::vector<uint8_t> seed_rows((size_t)(64 * row_bytes));
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> row(n);
  for (int r = 0; r < 64; ++r) {
    for (float& v : row) v = normal(rng);
    quantize_row(type, row.data(), seed_rows.data() + r * row_bytes, n);
  }
  std::vector<uint8_t> all((size_t)(n_mat * n * row_bytes));
  for (int64_t r = 0; r < n_mat * n; ++r) std::memcpy(all.data() + r * row_bytes, seed_rows.data() + (r % 64) * row_bytes, (size_t)row_bytes);
  return all;
}

engine::Weight bench_weight(DType type, int64_t n, int64_t n_mat) {
  engine::Weight w;
  w.name = "bench";
  w.type = type;
  w.n_in = n;
  w.n_out = n;
  w.n_mat = n_mat;
  w.row_bytes = dtype_row_bytes(type, n);
  return w;
}

// pack: the load-time layout CpuBackend::upload gives the weights (matmul.h pack_weight).
void matmul_bench(benchmark::State& state, DType type, int64_t n, int64_t n_tokens, bool from_dram, bool pack) {
  const int64_t matrix_bytes = dtype_row_bytes(type, n) * n;
  const int64_t n_mat = from_dram ? (kSetBytes + matrix_bytes - 1) / matrix_bytes : 1;
  std::vector<uint8_t> weights = make_weights(type, n, n_mat);
  engine::Weight all = bench_weight(type, n, n_mat);
  all.data = weights.data();
  if (pack) {
    std::vector<uint8_t> packed((size_t)engine::cpu::packed_size(all));
    all = engine::cpu::pack_weight(all, packed.data());
    weights.swap(packed);
  }
  std::vector<float> x((size_t)(n_tokens * n)), y((size_t)(n_tokens * n));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  engine::cpu::Matmul mm(pool(), n_tokens, n);
  int64_t m = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    mm.run(all.matrix(m), x.data(), n, n_tokens, y.data(), n);
    m = (m + 1) % n_mat;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  // Bytes per second of CPU time summed over the process's threads: robust to other load on the
  // machine; with VELOCITY_THREADS=1 it is one core's rate (what the kernels' instruction count
  // allows), independent of what the other cores do.
  const double cpu_seconds = process_cpu_seconds() - cpu0;
  state.counters["GB/cpu_s"] = (double)(state.iterations() * matrix_bytes) * 1e-9 / std::max(cpu_seconds, 1e-9);
  state.SetBytesProcessed(state.iterations() * matrix_bytes);
  state.counters["GB/s"] = benchmark::Counter((double)matrix_bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["frac_bw"] = benchmark::Counter((double)matrix_bytes / bandwidth(), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tok/s_equiv"] = benchmark::Counter((double)n_tokens, benchmark::Counter::kIsIterationInvariantRate);
}

void membw_bench(benchmark::State& state) {
  for (auto _ : state) {
    const BandwidthResult r = measure_read_bandwidth(pool(), 1ull << 30, 5);
    state.counters["GB/s"] = r.bytes_per_second * 1e-9;
  }
}

const bool registered = [] {
  benchmark::RegisterBenchmark("membw/read_1GiB", membw_bench)->Iterations(1)->Unit(benchmark::kMillisecond);
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                     DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4}) {
    const bool packs = engine::cpu::packed_size(bench_weight(type, 4096, 1)) > 0;
    for (bool pack : {false, true})
      for (int where = 0; where < 3; ++where)
        for (int64_t n_tokens : {1, 8}) {
          if (pack && !packs) continue;
          const bool dram = where == 2;
          const int64_t n = where == 0 ? 1024 : 4096;
          const std::string name = std::string("matmul/") + std::string(dtype_name(type)) + (pack ? "/packed" : "") +
                                   (dram ? "/set256MiB" : n == 1024 ? "/1024x1024" : "/4096x4096") + "/tokens:" + std::to_string(n_tokens);
          benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { matmul_bench(s, type, n, n_tokens, dram, pack); })
              ->Unit(benchmark::kMicrosecond)
              ->UseRealTime()
              ->MinTime(0.3);
        }
  }
  benchmark::AddCustomContext("cpu", describe_cpu());
  benchmark::AddCustomContext("isa", std::string(cpu_isa_name(best_cpu_isa())));
  benchmark::AddCustomContext("threads", std::to_string(pool().size()));
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
