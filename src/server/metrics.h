// Prometheus metrics of the server (text exposition format 0.0.4, served at GET /metrics).
//
// Per model (label model="<name>"):
//   velocity_requests_total                counter  generation requests accepted by the service
//   velocity_requests_finished_total       counter  by finish reason (label reason=stop|length|cancelled|error)
//   velocity_prompt_tokens_total           counter
//   velocity_generated_tokens_total        counter
//   velocity_time_to_first_token_seconds   histogram  submit -> first text delta
//   velocity_inter_token_latency_seconds   histogram  between consecutive text deltas
//   velocity_queue_depth, velocity_busy_slots, velocity_slots, velocity_kv_cache_usage_ratio  gauges
//     (from ModelService::stats() at scrape time)
//   velocity_model_ready                   gauge 1 when ready
// Server-wide: velocity_http_responses_total{code}. More gauges (GPU memory, temperature) come
// from collectors added with add_collector(), called at each scrape.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/service.h"

namespace velocity::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending, seconds; +Inf is implicit
  void observe(double value);
  // Appends the _bucket/_sum/_count lines of `name` with `labels` ("model=\"x\"").
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct ModelMetrics {
  std::atomic<uint64_t> requests{0};
  std::array<std::atomic<uint64_t>, 4> finished{};  // indexed by FinishReason
  std::atomic<uint64_t> prompt_tokens{0};
  std::atomic<uint64_t> generated_tokens{0};
  Histogram time_to_first_token{{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}};
  Histogram inter_token_latency{{0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5}};

  void finish(const Completion& completion);
};

class Metrics {
 public:
  // The metrics of `model`, created on first use; the reference stays valid.
  ModelMetrics& model(const std::string& name);
  void count_response(int status);

  // `collector` appends complete metric families (with # TYPE lines) to the exposition.
  void add_collector(std::function<void(std::string& out)> collector);

  std::string render(const std::vector<std::shared_ptr<ModelService>>& models) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<ModelMetrics>> models_;
  std::map<int, uint64_t> responses_;
  std::vector<std::function<void(std::string&)>> collectors_;
};

// Prometheus label value escaping (\\, \", \n).
std::string prometheus_escape(const std::string& value);

}  // namespace velocity::server
