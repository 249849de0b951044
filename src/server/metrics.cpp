#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace velocity::server {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t bucket = (size_t)(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  std::lock_guard lock(mutex_);
  counts_[bucket] += 1;
  sum_ += value;
  count_ += 1;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mutex_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = i < bounds_.size() ? fmt::format("{}", bounds_[i]) : "+Inf";
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, le, cumulative);
  }
  out += fmt::format("{}_sum{{{}}} {}\n", name, labels, sum_);
  out += fmt::format("{}_count{{{}}} {}\n", name, labels, count_);
}

void ModelMetrics::finish(const Completion& completion) {
  finished[(size_t)completion.finish] += 1;
  prompt_tokens += (uint64_t)std::max<int64_t>(0, completion.usage.prompt_tokens);
  generated_tokens += (uint64_t)std::max<int64_t>(0, completion.usage.completion_tokens);
}

ModelMetrics& Metrics::model(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto& slot = models_[name];
  if (!slot) slot = std::make_unique<ModelMetrics>();
  return *slot;
}

void Metrics::count_response(int status) {
  std::lock_guard lock(mutex_);
  responses_[status] += 1;
}

void Metrics::add_collector(std::function<void(std::string&)> collector) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collector));
}

std::string prometheus_escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string Metrics::render(const std::vector<std::shared_ptr<ModelService>>& models) const {
  struct Row {
    std::string labels;
    const ModelMetrics* metrics;
    const ModelService* service;
  };
  std::vector<Row> rows;
  std::vector<std::function<void(std::string&)>> collectors;
  {
    std::lock_guard lock(mutex_);
    for (const auto& service : models) {
      auto it = models_.find(service->name());
      if (it == models_.end()) continue;
      rows.push_back({"model=\"" + prometheus_escape(service->name()) + "\"", it->second.get(), service.get()});
    }
    collectors = collectors_;
  }
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  family("velocity_requests_total", "counter", "Generation requests accepted.");
  for (const Row& r : rows) out += fmt::format("velocity_requests_total{{{}}} {}\n", r.labels, r.metrics->requests.load());
  family("velocity_requests_finished_total", "counter", "Generation requests finished, by finish reason.");
  for (const Row& r : rows)
    for (FinishReason reason : {FinishReason::Stop, FinishReason::Length, FinishReason::Cancelled, FinishReason::Error})
      out += fmt::format("velocity_requests_finished_total{{{},reason=\"{}\"}} {}\n", r.labels,
                         finish_reason_name(reason), r.metrics->finished[(size_t)reason].load());
  family("velocity_prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
  for (const Row& r : rows)
    out += fmt::format("velocity_prompt_tokens_total{{{}}} {}\n", r.labels, r.metrics->prompt_tokens.load());
  family("velocity_generated_tokens_total", "counter", "Generated tokens of finished requests.");
  for (const Row& r : rows)
    out += fmt::format("velocity_generated_tokens_total{{{}}} {}\n", r.labels, r.metrics->generated_tokens.load());
  family("velocity_time_to_first_token_seconds", "histogram", "From submission to the first generated text.");
  for (const Row& r : rows) r.metrics->time_to_first_token.render(out, "velocity_time_to_first_token_seconds", r.labels);
  family("velocity_inter_token_latency_seconds", "histogram", "Between consecutive pieces of generated text.");
  for (const Row& r : rows) r.metrics->inter_token_latency.render(out, "velocity_inter_token_latency_seconds", r.labels);

  std::vector<ServiceStats> stats;
  for (const Row& r : rows) stats.push_back(r.service->stats());
  family("velocity_queue_depth", "gauge", "Requests waiting for a slot.");
  for (size_t i = 0; i < rows.size(); ++i) out += fmt::format("velocity_queue_depth{{{}}} {}\n", rows[i].labels, stats[i].queue_depth);
  family("velocity_busy_slots", "gauge", "Slots prefilling or generating.");
  for (size_t i = 0; i < rows.size(); ++i) out += fmt::format("velocity_busy_slots{{{}}} {}\n", rows[i].labels, stats[i].busy_slots);
  family("velocity_slots", "gauge", "Slots of the model.");
  for (size_t i = 0; i < rows.size(); ++i) out += fmt::format("velocity_slots{{{}}} {}\n", rows[i].labels, stats[i].n_slots);
  family("velocity_kv_cache_usage_ratio", "gauge", "Fraction of the KV cache holding live tokens.");
  for (size_t i = 0; i < rows.size(); ++i)
    out += fmt::format("velocity_kv_cache_usage_ratio{{{}}} {}\n", rows[i].labels, stats[i].kv_cache_used);
  family("velocity_model_ready", "gauge", "1 when the model serves requests.");
  for (const Row& r : rows)
    out += fmt::format("velocity_model_ready{{{}}} {}\n", r.labels, r.service->state() == ModelService::State::Ready ? 1 : 0);

  family("velocity_http_responses_total", "counter", "HTTP responses by status code.");
  {
    std::lock_guard lock(mutex_);
    for (auto [code, n] : responses_) out += fmt::format("velocity_http_responses_total{{code=\"{}\"}} {}\n", code, n);
  }
  for (const auto& collector : collectors) collector(out);
  return out;
}

}  // namespace velocity::server
