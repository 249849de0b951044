// `velocity bench`: prefill and decode throughput of a model, as llama-bench measures them, set
// against this machine's measured memory bandwidth.
//
//   velocity bench -m model.gguf                      # pp512, tg128, 5 repetitions
//   velocity bench -m model.gguf -p 512 -n 128 --depth 0,4096 --batch 1,8 -o json
//
// Tests (each: one untimed warm-up run, then `repetitions` timed runs; mean ± sd of tok/s):
//   ppP @ dD     prefill of P tokens in one sequence after D tokens of context (the D tokens are
//                filled once per test, untimed); logits only for the last token, as in real use.
//   tgN @ dD bB  N decode steps of B sequences (slots 0..B-1, each with D tokens of context): every
//                step is one forward carrying one token of each sequence, logits for all of them;
//                tok/s counts all B*N tokens.
// Tokens are random valid ids from a fixed seed; decode feeds pre-drawn ids (no sampling is timed).
//
// What is reported beside tok/s:
//   GFLOP/s       2 * (matmul parameters) per token, where the matmul parameters are every weight
//                 matrix but the embedding table (MoE expert tensors at n_expert_used / n_expert),
//                 plus the output head (2 * head parameters) for each token that wants logits, plus
//                 attention: 2 * n_head * (head_dim_k + head_dim_v) * (position + 1) per token per
//                 layer (QK^T and the weighted sum of V). Softmax, norms and RoPE are not counted.
//   bound         decode only: steps/s * bytes_per_token / measured read bandwidth, the fraction of
//                 the batch-1 bandwidth bound reached (bytes_per_token = weight bytes one step reads,
//                 Model::bytes_per_token(); KV-cache reads are not counted). With B > 1 a step still
//                 reads the weights once (MoE: it may read more experts, so this is a lower estimate).
//   speedup       tgN bB against tgN b1 at the same depth, when both were measured.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace velocity::tools {

enum class BenchOutput { Markdown, Json, Csv };

struct BenchReport;

struct BenchOptions {
  std::string model_path;
  // Called once the header is known (the model, the bandwidth: report.tests empty), then after
  // each test with it last in report.tests: for printing rows as they finish.
  std::function<void(const BenchReport& report)> on_progress;
  // A line for people while something slow runs unseen ("measuring the bandwidth (1 GiB)").
  std::function<void(const std::string& what)> on_status;
  std::vector<int64_t> n_prompt = {512};  // prefill tests (0: none)
  std::vector<int64_t> n_gen = {128};     // decode tests (0: none)
  std::vector<int64_t> depth = {0};       // context before each test
  std::vector<int64_t> batch = {1};       // sequences decoded together (decode tests)
  int repetitions = 5;                    // timed runs per test (>= 1)
  int n_threads = 0;                      // 0: one per online core
  std::string device;                     // "cpu", "cuda:N"; "": engine::default_device() (cuda:0 if present)
  int64_t gpu_layers = -1;  // -ngl: the last N layers on the GPU, the rest on the CPU (model::Placement)
  bool no_mmap = false;     // --no-mmap: read the file into memory instead of mapping it
  DType cache_type_k = DType::F16;
  DType cache_type_v = DType::F16;
  uint64_t bandwidth_bytes = 1ull << 30;  // buffer of the bandwidth measurement; 0: not measured
  uint64_t seed = 1234;                   // of the random token ids
  std::string version;                    // printed as is (the binary's version string)
};

struct BenchTest {
  std::string name;             // "pp512", "tg128", "pp512 @ d4096", "tg128 b8"
  bool prefill = false;         // pp (true) or tg (false)
  int64_t n_prompt = 0;         // pp: tokens prefilled
  int64_t n_gen = 0;            // tg: steps
  int64_t depth = 0;
  int64_t batch = 1;            // tg: sequences per step
  std::vector<double> samples_ms;  // wall time of each timed run
  double tokens_per_second = 0;    // mean over the runs of tokens / time
  double tokens_per_second_sd = 0; // sample standard deviation (0 with one run)
  double flops_per_run = 0;        // see the header comment
  double gflops_per_second = 0;    // flops_per_run / mean time
  std::optional<double> bound_fraction;     // tg only, when the bandwidth was measured
  std::optional<double> peak_fraction;      // pp on a GPU: GFLOP/s over the dense BF16 tensor peak
  std::optional<double> speedup_vs_batch1;  // tg with batch > 1 when the b1 test ran
};

struct BenchReport {
  std::string version;
  std::string model_path;
  std::string architecture;
  std::string model_type;       // file type (Q4_K_M …) or the weight type holding most bytes
  uint64_t model_bytes = 0;     // tensor data
  uint64_t n_params = 0;
  uint64_t n_matmul_params = 0; // weight-matrix parameters but the embedding table and head
  uint64_t n_head_params = 0;   // output head (or tied embedding)
  uint64_t bytes_per_token = 0; // Model::bytes_per_token()
  std::string backend;
  std::string cpu;
  int n_threads = 0;
  int64_t n_ctx = 0;
  DType cache_type_k = DType::F16;
  DType cache_type_v = DType::F16;
  std::optional<double> bandwidth_bytes_per_second;  // measured in this run (a GPU: device copy)
  uint64_t bandwidth_buffer_bytes = 0;
  std::optional<double> tensor_peak_flops;           // a GPU's dense BF16 peak (engine/backend.h)
  std::vector<BenchTest> tests;
};

// Measures the bandwidth (before loading, so that nothing else competes), loads the model with
// the context and slots the tests need, runs the tests. Throws velocity::Error for bad options
// and a bad model file.
BenchReport run_bench(const BenchOptions& options);

void print_bench_markdown(const BenchReport& report, std::ostream& out);
void print_bench_csv(const BenchReport& report, std::ostream& out);
nlohmann::ordered_json bench_json(const BenchReport& report);  // keys in the order above
void print_bench(const BenchReport& report, BenchOutput format, std::ostream& out);
// Markdown in pieces, for rows printed as they finish: the header and the table's head, then a row.
void print_bench_markdown_header(const BenchReport& report, std::ostream& out);
void print_bench_markdown_row(const BenchReport& report, const BenchTest& test, std::ostream& out);

}  // namespace velocity::tools
