#include "tools/bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/membw.h"
#include "core/thread_pool.h"
#include "engine/batch.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "tools/inspect.h"

namespace velocity::tools {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Weight-matrix parameters a token multiplies with, and the head's (see bench.h).
struct MatmulParams {
  double body = 0;   // every 2-D+ weight but token_embd and the head; experts at k / E
  double head = 0;
};

MatmulParams matmul_params(const gguf::File& file, const model::Config& c) {
  MatmulParams p;
  const bool tied = file.find_tensor("output.weight") == nullptr;
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.shape.size() < 2) continue;  // norms, biases, rope factors
    if (t.name == "output.weight" || (tied && t.name == "token_embd.weight")) {
      p.head += (double)t.n_elements;
      continue;
    }
    if (t.name == "token_embd.weight") continue;  // a lookup, not a product
    double n = (double)t.n_elements;
    if (t.name.find("_exps") != std::string::npos && c.n_expert > 0) n *= (double)c.n_expert_used / (double)c.n_expert;
    p.body += n;
  }
  return p;
}

// Attention FLOPs of one token at `position` (it attends to position + 1 keys), all layers.
double attention_flops(const model::Config& c, int64_t position) {
  return 2.0 * (double)c.n_layer * (double)c.n_head * (double)(c.head_dim_k + c.head_dim_v) * (double)(position + 1);
}

std::string human_bytes(double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024 * 1024));
  return fmt::format("{:.2f} MiB", bytes / (1024.0 * 1024));
}

std::string human_count(double n) {
  if (n >= 1e9) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f} M", n / 1e6);
  return fmt::format("{:.2f} K", n / 1e3);
}

std::string model_type(const ModelSummary& s) {
  if (s.file_type) {
    const std::string_view name = file_type_name(*s.file_type);
    if (!name.empty()) return std::string(name);
  }
  const TypeTotals* most = nullptr;
  for (const TypeTotals& t : s.types)
    if (!most || t.n_bytes > most->n_bytes) most = &t;
  return most ? std::string(dtype_name(most->type)) : std::string("?");
}

std::vector<int64_t> positive(const std::vector<int64_t>& values) {
  std::vector<int64_t> out;
  for (int64_t v : values)
    if (v > 0) out.push_back(v);
  return out;
}

void mean_sd(const std::vector<double>& x, double& mean, double& sd) {
  mean = 0;
  for (double v : x) mean += v;
  mean /= (double)x.size();
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  sd = x.size() > 1 ? std::sqrt(ss / (double)(x.size() - 1)) : 0.0;
}

std::string test_name(bool prefill, int64_t n, int64_t depth, int64_t batch) {
  std::string name = fmt::format("{}{}", prefill ? "pp" : "tg", n);
  if (depth > 0) name += fmt::format(" @ d{}", depth);
  if (!prefill && batch > 1) name += fmt::format(" b{}", batch);
  return name;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

}  // namespace

BenchReport run_bench(const BenchOptions& options) {
  const std::vector<int64_t> prompts = positive(options.n_prompt);
  const std::vector<int64_t> gens = positive(options.n_gen);
  if (prompts.empty() && gens.empty()) fail("nothing to measure: give -p or -n greater than 0");
  if (options.repetitions < 1) fail("repetitions must be at least 1 (got {})", options.repetitions);
  if (options.depth.empty() || options.batch.empty()) fail("give at least one depth and one batch size");
  for (int64_t d : options.depth)
    if (d < 0) fail("depth must not be negative (got {})", d);
  for (int64_t b : options.batch)
    if (b < 1) fail("batch sizes must be at least 1 (got {})", b);

  BenchReport report;
  report.version = options.version;
  report.model_path = options.model_path;
  report.cpu = describe_cpu();
  report.n_threads = options.n_threads > 0 ? options.n_threads : (int)std::max(1u, std::thread::hardware_concurrency());
  report.cache_type_k = options.cache_type_k;
  report.cache_type_v = options.cache_type_v;

  const engine::Device device = options.device.empty() ? engine::default_device() : engine::Device::parse(options.device);
  // Bandwidth first: the model's threads and pages are not there yet to compete. On a GPU the
  // ceiling is the device's copy rate (read + written bytes), as the kernel lab measures it.
  auto status = [&](const std::string& what) {
    if (options.on_status) options.on_status(what);
  };
  if (options.bandwidth_bytes > 0) {
    status(fmt::format("measuring the {} bandwidth ({} buffer)...", device.is_cuda() ? "device copy" : "memory read",
                       human_bytes((double)options.bandwidth_bytes)));
    if (device.is_cuda()) {
      report.bandwidth_bytes_per_second = engine::measure_copy_bandwidth(device, options.bandwidth_bytes);
      report.bandwidth_buffer_bytes = options.bandwidth_bytes;
    } else {
      ThreadPool pool(report.n_threads);
      const BandwidthResult bw = measure_read_bandwidth(pool, options.bandwidth_bytes, 5);
      report.bandwidth_bytes_per_second = bw.bytes_per_second;
      report.bandwidth_buffer_bytes = bw.buffer_bytes;
    }
  }
  report.tensor_peak_flops = engine::tensor_peak_flops(device);

  const int64_t max_depth = *std::max_element(options.depth.begin(), options.depth.end());
  const int64_t max_batch_seqs = gens.empty() ? 1 : *std::max_element(options.batch.begin(), options.batch.end());
  int64_t max_tokens = 0;
  for (int64_t p : prompts) max_tokens = std::max(max_tokens, p);
  for (int64_t n : gens) max_tokens = std::max(max_tokens, n);
  model::LoadOptions load;
  load.n_ctx = max_depth + max_tokens;
  load.n_slots = max_batch_seqs;
  load.max_batch = std::max<int64_t>(512, max_batch_seqs);
  load.max_logits = max_batch_seqs;
  load.cache_type_k = options.cache_type_k;
  load.cache_type_v = options.cache_type_v;
  load.n_threads = options.n_threads;
  load.placement.device = device;
  load.placement.gpu_layers = options.gpu_layers;
  load.mmap = !options.no_mmap;
  status("loading " + options.model_path + "...");
  const std::unique_ptr<model::Model> model = model::Model::load(options.model_path, load);
  const model::Config& c = model->config();

  const ModelSummary summary = summarize(model->file());
  report.architecture = c.arch;
  report.model_type = model_type(summary);
  report.model_bytes = summary.n_bytes;
  report.n_params = summary.n_params;
  const MatmulParams mp = matmul_params(model->file(), c);
  report.n_matmul_params = (uint64_t)mp.body;
  report.n_head_params = (uint64_t)mp.head;
  report.bytes_per_token = model->bytes_per_token();
  report.backend = model->backend().name();
  report.n_ctx = model->n_ctx();

  auto progress = [&] {
    if (!options.on_progress) return;
    if (!report.tests.empty()) {  // the speedup of a batched decode test over its batch-1 twin
      BenchTest& t = report.tests.back();
      for (const BenchTest& base : report.tests)
        if (!t.prefill && t.batch != 1 && !base.prefill && base.batch == 1 && base.n_gen == t.n_gen &&
            base.depth == t.depth && base.tokens_per_second > 0)
          t.speedup_vs_batch1 = t.tokens_per_second / base.tokens_per_second;
    }
    options.on_progress(report);
  };
  progress();

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int32_t> random_token(0, (int32_t)c.n_vocab - 1);
  auto draw = [&](int64_t n) {
    std::vector<int32_t> ids((size_t)n);
    for (int32_t& id : ids) id = random_token(rng);
    return ids;
  };
  engine::Batch batch;

  // Fills positions [0, depth) of slots [0, n_seq), untimed.
  auto fill_depth = [&](int64_t depth, int64_t n_seq) {
    if (depth == 0) return;
    const std::vector<int32_t> ids = draw(depth);
    for (int64_t s = 0; s < n_seq; ++s) runtime::prefill(*model, batch, ids, (int32_t)s, 0, engine::Output::None);
  };

  auto finish = [&](BenchTest& t, double tokens_per_run, double flops) {
    std::vector<double> rates;
    double mean_ms = 0;
    for (double ms : t.samples_ms) {
      rates.push_back(1e3 * tokens_per_run / ms);
      mean_ms += ms;
    }
    mean_ms /= (double)t.samples_ms.size();
    mean_sd(rates, t.tokens_per_second, t.tokens_per_second_sd);
    t.flops_per_run = flops;
    t.gflops_per_second = flops / (mean_ms * 1e-3) / 1e9;
  };

  for (int64_t depth : options.depth) {
    for (int64_t p : prompts) {
      BenchTest t;
      t.name = test_name(true, p, depth, 1);
      t.prefill = true;
      t.n_prompt = p;
      t.depth = depth;
      fill_depth(depth, 1);
      const std::vector<int32_t> ids = draw(p);
      for (int run = -1; run < options.repetitions; ++run) {  // run -1: warm-up
        const Clock::time_point start = Clock::now();
        runtime::prefill(*model, batch, ids, 0, (int32_t)depth);
        const double ms = ms_since(start);
        if (run >= 0) t.samples_ms.push_back(ms);
      }
      double flops = 2.0 * mp.body * (double)p + 2.0 * mp.head;
      for (int64_t i = 0; i < p; ++i) flops += attention_flops(c, depth + i);
      finish(t, (double)p, flops);
      if (report.tensor_peak_flops) t.peak_fraction = t.gflops_per_second * 1e9 / *report.tensor_peak_flops;
      report.tests.push_back(std::move(t));
      progress();
    }
    for (int64_t n : gens) {
      for (int64_t b : options.batch) {
        BenchTest t;
        t.name = test_name(false, n, depth, b);
        t.n_gen = n;
        t.depth = depth;
        t.batch = b;
        fill_depth(depth, b);
        const std::vector<int32_t> ids = draw(n * b);  // [n steps, b sequences]
        for (int run = -1; run < options.repetitions; ++run) {
          const Clock::time_point start = Clock::now();
          for (int64_t i = 0; i < n; ++i) {
            batch.clear();
            // Greedy serving's output: the argmax token of each row (no logits copied out).
            for (int64_t s = 0; s < b; ++s)
              batch.add(ids[(size_t)(i * b + s)], (int32_t)(depth + i), (int32_t)s, engine::Output::Token);
            batch.n_decode = b;
            model->step(batch);
          }
          const double ms = ms_since(start);
          if (run >= 0) t.samples_ms.push_back(ms);
        }
        double flops = 2.0 * (mp.body + mp.head) * (double)(n * b);
        for (int64_t i = 0; i < n; ++i) flops += (double)b * attention_flops(c, depth + i);
        finish(t, (double)(n * b), flops);
        if (report.bandwidth_bytes_per_second && *report.bandwidth_bytes_per_second > 0) {
          const double steps_per_second = t.tokens_per_second / (double)b;
          t.bound_fraction = steps_per_second * (double)report.bytes_per_token / *report.bandwidth_bytes_per_second;
        }
        report.tests.push_back(std::move(t));
        progress();
      }
    }
  }

  // Speedups of batched decode against batch 1 at the same n and depth.
  for (BenchTest& t : report.tests) {
    if (t.prefill || t.batch == 1) continue;
    for (const BenchTest& base : report.tests)
      if (!base.prefill && base.batch == 1 && base.n_gen == t.n_gen && base.depth == t.depth && base.tokens_per_second > 0)
        t.speedup_vs_batch1 = t.tokens_per_second / base.tokens_per_second;
  }
  return report;
}

void print_bench_markdown_header(const BenchReport& r, std::ostream& out) {
  out << fmt::format("velocity {} | {} | backend {} | {} thread{} | KV cache {}/{}\n", r.version, r.cpu, r.backend,
                     r.n_threads, r.n_threads == 1 ? "" : "s", dtype_name(r.cache_type_k), dtype_name(r.cache_type_v));
  out << fmt::format("model {}: {} {}, {}, {} params; {:.2f} MB read per decoded token\n", r.model_path,
                     r.architecture, r.model_type, human_bytes((double)r.model_bytes), human_count((double)r.n_params),
                     (double)r.bytes_per_token / 1e6);
  if (r.bandwidth_bytes_per_second) {
    out << fmt::format("measured {} bandwidth {:.2f} GB/s ({}) -> batch-1 decode bound {:.2f} tok/s\n",
                       r.tensor_peak_flops ? "device copy" : "read", *r.bandwidth_bytes_per_second / 1e9,
                       human_bytes((double)r.bandwidth_buffer_bytes),
                       r.bytes_per_token ? *r.bandwidth_bytes_per_second / (double)r.bytes_per_token : 0.0);
  } else {
    out << "read bandwidth not measured\n";
  }
  if (r.tensor_peak_flops) out << fmt::format("dense BF16 tensor peak {:.0f} TFLOP/s\n", *r.tensor_peak_flops / 1e12);
  out << "\n| model | size | params | backend | threads | test | t/s | GFLOP/s | % of bound | speedup |\n";
  out << "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |\n";
}

void print_bench_markdown_row(const BenchReport& r, const BenchTest& t, std::ostream& out) {
  const std::optional<double> fraction = t.bound_fraction ? t.bound_fraction : t.peak_fraction;
  out << fmt::format("| {} {} | {} | {} | {} | {} | {} | {:.2f} ± {:.2f} | {:.2f} | {} | {} |\n", r.architecture,
                     r.model_type, human_bytes((double)r.model_bytes), human_count((double)r.n_params), r.backend,
                     r.n_threads, t.name, t.tokens_per_second, t.tokens_per_second_sd, t.gflops_per_second,
                     fraction ? fmt::format("{:.1f}%{}", 100 * *fraction, t.peak_fraction ? " of peak" : "") : std::string(),
                     t.speedup_vs_batch1 ? fmt::format("{:.2f}x", *t.speedup_vs_batch1) : std::string());
}

void print_bench_markdown(const BenchReport& r, std::ostream& out) {
  print_bench_markdown_header(r, out);
  for (const BenchTest& t : r.tests) print_bench_markdown_row(r, t, out);
}

nlohmann::ordered_json bench_json(const BenchReport& r) {
  nlohmann::ordered_json j;
  j["version"] = r.version;
  j["model"] = {{"path", r.model_path},
                {"architecture", r.architecture},
                {"type", r.model_type},
                {"size_bytes", r.model_bytes},
                {"n_params", r.n_params},
                {"n_matmul_params", r.n_matmul_params},
                {"n_head_params", r.n_head_params},
                {"bytes_per_token", r.bytes_per_token}};
  j["backend"] = r.backend;
  j["cpu"] = r.cpu;
  j["threads"] = r.n_threads;
  j["n_ctx"] = r.n_ctx;
  j["cache_type_k"] = std::string(dtype_name(r.cache_type_k));
  j["cache_type_v"] = std::string(dtype_name(r.cache_type_v));
  if (r.bandwidth_bytes_per_second) {
    j["bandwidth"] = {{"bytes_per_second", *r.bandwidth_bytes_per_second}, {"buffer_bytes", r.bandwidth_buffer_bytes}};
  } else {
    j["bandwidth"] = nullptr;
  }
  j["tensor_peak_flops"] = r.tensor_peak_flops ? nlohmann::ordered_json(*r.tensor_peak_flops) : nlohmann::ordered_json(nullptr);
  nlohmann::ordered_json tests = nlohmann::ordered_json::array();
  for (const BenchTest& t : r.tests) {
    nlohmann::ordered_json e;
    e["name"] = t.name;
    e["kind"] = t.prefill ? "pp" : "tg";
    e["n_prompt"] = t.n_prompt;
    e["n_gen"] = t.n_gen;
    e["depth"] = t.depth;
    e["batch"] = t.batch;
    e["repetitions"] = t.samples_ms.size();
    e["samples_ms"] = t.samples_ms;
    e["tokens_per_second"] = t.tokens_per_second;
    e["tokens_per_second_sd"] = t.tokens_per_second_sd;
    e["flops_per_run"] = t.flops_per_run;
    e["gflops_per_second"] = t.gflops_per_second;
    e["bound_fraction"] = t.bound_fraction ? nlohmann::ordered_json(*t.bound_fraction) : nlohmann::ordered_json(nullptr);
    e["peak_fraction"] = t.peak_fraction ? nlohmann::ordered_json(*t.peak_fraction) : nlohmann::ordered_json(nullptr);
    e["speedup_vs_batch1"] = t.speedup_vs_batch1 ? nlohmann::ordered_json(*t.speedup_vs_batch1) : nlohmann::ordered_json(nullptr);
    tests.push_back(std::move(e));
  }
  j["tests"] = std::move(tests);
  return j;
}

void print_bench_csv(const BenchReport& r, std::ostream& out) {
  out << "model,architecture,type,size_bytes,n_params,bytes_per_token,backend,cpu,threads,bandwidth_bytes_per_second,"
         "test,kind,n_prompt,n_gen,depth,batch,repetitions,tokens_per_second,tokens_per_second_sd,gflops_per_second,"
         "bound_fraction,speedup_vs_batch1\n";
  for (const BenchTest& t : r.tests) {
    out << fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.4f},{:.4f},{:.4f},{},{}\n",
                       csv_field(r.model_path), csv_field(r.architecture), csv_field(r.model_type), r.model_bytes,
                       r.n_params, r.bytes_per_token, csv_field(r.backend), csv_field(r.cpu), r.n_threads,
                       r.bandwidth_bytes_per_second ? fmt::format("{:.0f}", *r.bandwidth_bytes_per_second) : std::string(),
                       csv_field(t.name), t.prefill ? "pp" : "tg", t.n_prompt, t.n_gen, t.depth, t.batch,
                       t.samples_ms.size(), t.tokens_per_second, t.tokens_per_second_sd, t.gflops_per_second,
                       t.bound_fraction ? fmt::format("{:.4f}", *t.bound_fraction) : std::string(),
                       t.speedup_vs_batch1 ? fmt::format("{:.4f}", *t.speedup_vs_batch1) : std::string());
  }
}

void print_bench(const BenchReport& report, BenchOutput format, std::ostream& out) {
  switch (format) {
    case BenchOutput::Markdown: print_bench_markdown(report, out); break;
    case BenchOutput::Json: out << bench_json(report).dump(2) << '\n'; break;
    case BenchOutput::Csv: print_bench_csv(report, out); break;
  }
}

}  // namespace velocity::tools
