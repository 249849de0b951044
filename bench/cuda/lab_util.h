// The kernel lab's shared pieces (every bench/cuda/*_lab.cpp): a registry of lab sections that
// kernel_lab.cpp's main runs by name, cudaEvent timing (median of many runs after warm-up), the
// device-to-device copy ceiling measured in the same run, and a results table printed at the end.
//
// A lab file registers a section with
//   VELOCITY_LAB_SECTION(matmul_decode, "decode-path products, GB/s vs the copy ceiling") { ... }
// and reports each case with lab::report(...), which prints one line at once and keeps it for
// the summary.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace velocity::lab {

struct Section {
  std::string name;
  std::string what;
  void (*run)();
};

inline std::vector<Section>& sections() {
  static std::vector<Section> all;
  return all;
}

struct Registrar {
  Registrar(const char* name, const char* what, void (*run)()) { sections().push_back({name, what, run}); }
};

#define VELOCITY_LAB_SECTION(name, what)                                                                   \
  static void velocity_lab_##name();                                                                       \
  static const ::velocity::lab::Registrar velocity_lab_registrar_##name(#name, what, velocity_lab_##name); \
  static void velocity_lab_##name()

// Any CUDA error ends the lab with the call that failed.
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "kernel lab: %s failed: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// One stream for the whole lab.
inline cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t created;
    check(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking), "cudaStreamCreate");
    return created;
  }();
  return s;
}

// Median time in microseconds of one call of `fn` (enqueued on stream()): `warmup` calls, then
// `samples` measurements of `batch` back-to-back calls between two events (a batch hides the
// event overhead on kernels of a few microseconds; the gaps between calls stay in, as in a model
// step without graphs).
inline double time_us(const std::function<void()>& fn, int samples = 50, int batch = 10, int warmup = 5) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < warmup; ++i) fn();
  check(cudaStreamSynchronize(stream()), "warm-up");
  std::vector<double> us;
  for (int s = 0; s < samples; ++s) {
    check(cudaEventRecord(start, stream()), "cudaEventRecord");
    for (int i = 0; i < batch; ++i) fn();
    check(cudaEventRecord(stop, stream()), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "timed run");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    us.push_back(1000.0 * ms / batch);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

// Like time_us, but the `batch` calls are captured once into a CUDA graph and the graph is
// replayed, as a model's decode step is: no host launch cost between the calls, only what the
// GPU spends on each kernel and between dependent kernels. Falls back to time_us when `fn`
// cannot be captured.
inline double time_graph_us(const std::function<void()>& fn, int samples = 30, int batch = 10, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) fn();
  check(cudaStreamSynchronize(stream()), "warm-up");
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  check(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  for (int i = 0; i < batch; ++i) fn();
  const cudaError_t end = cudaStreamEndCapture(stream(), &graph);
  if (end != cudaSuccess || graph == nullptr || cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
    (void)cudaGetLastError();
    if (graph != nullptr) cudaGraphDestroy(graph);
    return time_us(fn, samples, batch, warmup);
  }
  cudaGraphDestroy(graph);
  const double us = time_us([&] { check(cudaGraphLaunch(exec, stream()), "cudaGraphLaunch"); }, samples, 1, 2);
  cudaGraphExecDestroy(exec);
  return us / batch;
}

// The memory ceiling of this GPU, measured once per process: GB/s of a device-to-device copy of
// 512 MiB, counting the bytes read and written.
inline double copy_ceiling_gbps() {
  static const double gbps = [] {
    const size_t bytes = size_t{512} << 20;
    void *a = nullptr, *b = nullptr;
    check(cudaMalloc(&a, bytes), "cudaMalloc (copy ceiling)");
    check(cudaMalloc(&b, bytes), "cudaMalloc (copy ceiling)");
    check(cudaMemset(a, 1, bytes), "cudaMemset");
    const double us =
        time_us([&] { check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream()), "copy"); }, 20, 1, 3);
    cudaFree(a);
    cudaFree(b);
    const double g = 2.0 * static_cast<double>(bytes) / (us * 1e3);
    std::printf("copy ceiling: %.0f GB/s (device-to-device copy of 512 MiB, read + write)\n", g);
    return g;
  }();
  return gbps;
}

// Whether a case is wanted: LAB_CASES unset, or one of its comma-separated substrings is in the
// case's name (profiling one case under ncu: LAB_CASES="Q4_K 4096->14336 n=1").
inline bool wanted(const std::string& name) {
  const char* env = std::getenv("LAB_CASES");
  if (env == nullptr || *env == '\0') return true;
  const std::string all = env;
  for (size_t b = 0; b <= all.size();) {
    size_t e = all.find(',', b);
    if (e == std::string::npos) e = all.size();
    if (e > b && name.find(all.substr(b, e - b)) != std::string::npos) return true;
    b = e + 1;
  }
  return false;
}

// One measured case: printed at once and kept for the summary.
struct Result {
  std::string section, name;
  double us = 0;
  double value = 0;    // GB/s or TFLOP/s
  std::string unit;    // "GB/s", "TFLOP/s"
  double percent = 0;  // of the ceiling that applies (copy bandwidth, tensor peak)
};

inline std::vector<Result>& results() {
  static std::vector<Result> all;
  return all;
}

inline void report(const std::string& section, const std::string& name, double us, double value, const char* unit,
                   double percent, const char* of) {
  std::printf("%-16s %-44s %10.2f us %9.1f %-8s %6.1f%% of %s\n", section.c_str(), name.c_str(), us, value, unit,
              percent, of);
  std::fflush(stdout);
  results().push_back({section, name, us, value, unit, percent});
}

inline void print_summary() {
  if (results().empty()) return;
  std::printf("\n==== summary (%zu cases) ====\n%-16s %-44s %10s %9s %-8s %7s\n", results().size(), "section", "case",
              "us", "value", "unit", "%");
  for (const Result& r : results())
    std::printf("%-16s %-44s %10.2f %9.1f %-8s %6.1f%%\n", r.section.c_str(), r.name.c_str(), r.us, r.value,
                r.unit.c_str(), r.percent);
}

}  // namespace velocity::lab
