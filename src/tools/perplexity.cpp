#include "tools/perplexity.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <sstream>

#include "core/error.h"
#include "engine/batch.h"
#include "model/model.h"
#include "runtime/logprobs.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace velocity::tools {

namespace {

using Clock = std::chrono::steady_clock;

// The text to score: a regular file of UTF-8 (a GGUF or a directory given by mistake is refused
// with the reason instead of being scored for hours or as "0 tokens").
std::string read_text_file(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) fail("{}: cannot open the text file: {}", path, ec.message());
  if (std::filesystem::is_directory(status)) fail("{}: is a directory; give a text file", path);
  if (!std::filesystem::is_regular_file(status)) fail("{}: is not a regular file; give a text file", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the text file: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error: {}", path, std::strerror(errno));
  std::string text = ss.str();
  if (!tokenizer::utf8_is_valid(text)) {
    size_t bad = 0;
    while (bad < text.size()) {
      const size_t n = tokenizer::utf8_valid_length(text, bad);
      if (n == 0) break;
      bad += n;
    }
    fail("{}: is not UTF-8 text (invalid bytes at offset {}{}); give a text file", path, bad,
         text.starts_with("GGUF") ? ": this is a GGUF model file" : "");
  }
  return text;
}

// Welford's running mean and variance: stable over millions of values.
class RunningMean {
 public:
  void add(double x) {
    ++n_;
    const double delta = x - mean_;
    mean_ += delta / static_cast<double>(n_);
    m2_ += delta * (x - mean_);
  }
  int64_t count() const { return n_; }
  MeanWithError result() const {
    MeanWithError r;
    r.mean = mean_;
    r.se = n_ > 1 ? std::sqrt(m2_ / static_cast<double>(n_ - 1) / static_cast<double>(n_)) : 0.0;
    return r;
  }

 private:
  int64_t n_ = 0;
  double mean_ = 0, m2_ = 0;
};

PerplexityStats stats_of(const RunningMean& nll) {
  PerplexityStats s;
  s.nll = nll.result();
  s.perplexity = std::exp(s.nll.mean);
  s.perplexity_se = s.perplexity * s.nll.se;
  return s;
}

// log softmax(x)[v] = x[v] - log_sum_exp(x): the same function the API's logprobs use.
using runtime::log_sum_exp;

size_t argmax(std::span<const float> row) {
  return static_cast<size_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// KL(p || q) for rows of logits p_logits, q_logits with log-sum-exps p_lse, q_lse.
double kl_divergence(std::span<const float> p_logits, double p_lse, std::span<const float> q_logits, double q_lse) {
  double kl = 0;
  for (size_t v = 0; v < p_logits.size(); ++v) {
    const double log_p = static_cast<double>(p_logits[v]) - p_lse;
    const double log_q = static_cast<double>(q_logits[v]) - q_lse;
    kl += std::exp(log_p) * (log_p - log_q);
  }
  return std::max(kl, 0.0);  // rounding can leave -1e-17 for identical rows
}

// "[=========>          ] 12/45 windows  3.4 s  ETA 10.2 s  ppl 31.20" on one line, redrawn.
class ProgressBar {
 public:
  ProgressBar(std::ostream* out, int64_t n_total) : out_(out), n_total_(n_total), start_(Clock::now()) {}

  void update(int64_t n_done, double running_ppl) {
    if (!out_) return;
    const auto now = Clock::now();
    if (n_done < n_total_ && now - last_draw_ < std::chrono::milliseconds(200)) return;
    last_draw_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double eta = n_done > 0 ? elapsed / static_cast<double>(n_done) * static_cast<double>(n_total_ - n_done) : 0;
    constexpr int kWidth = 30;
    const int filled = n_total_ > 0 ? static_cast<int>(kWidth * n_done / n_total_) : kWidth;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < kWidth) bar += '>';
    bar.resize(kWidth, ' ');
    *out_ << fmt::format("\r[{}] {}/{} windows  {:.1f} s", bar, n_done, n_total_, elapsed);
    if (n_done > 0) *out_ << fmt::format("  ETA {:.1f} s  ppl {:.4f}   ", eta, running_ppl);
    if (n_done == n_total_) *out_ << '\n';
    out_->flush();
  }

 private:
  std::ostream* out_;
  int64_t n_total_;
  Clock::time_point start_;
  Clock::time_point last_draw_{};
};

// One model's side of the evaluation: runs a window chunk by chunk and hands out the logits rows.
class WindowRunner {
 public:
  explicit WindowRunner(model::Model& model) : model_(model) {}

  // Forwards tokens [c0, c1) of the window at positions c0..c1-1, asking for logits at positions
  // in [first_logit, last_logit]. Returns the rows [n, n_vocab], valid until the next call.
  std::span<const float> forward(std::span<const int32_t> window, int64_t c0, int64_t c1, int64_t first_logit,
                                 int64_t last_logit) {
    batch_.clear();
    for (int64_t p = c0; p < c1; ++p) {
      batch_.add(window[static_cast<size_t>(p)], static_cast<int32_t>(p), /*seq=*/0,
                 p >= first_logit && p <= last_logit);
    }
    return model_.forward(batch_);
  }

 private:
  model::Model& model_;
  engine::Batch batch_;
};

}  // namespace

std::vector<PerplexityWindow> plan_perplexity_windows(int64_t n_tokens, int64_t n_ctx, int64_t stride) {
  if (n_ctx < 2) fail("perplexity: the context must hold at least 2 tokens (got {})", n_ctx);
  if (stride < 1 || stride > n_ctx) fail("perplexity: the stride must be in [1, ctx = {}] (got {})", n_ctx, stride);
  std::vector<PerplexityWindow> windows;
  int64_t next_unscored = 1;  // the first token no window has scored yet
  for (int64_t start = 0; start + 1 < n_tokens && next_unscored < n_tokens; start += stride) {
    PerplexityWindow w;
    w.start = start;
    w.length = std::min(n_ctx, n_tokens - start);
    w.first_scored = std::max<int64_t>(1, next_unscored - start);
    if (w.first_scored < w.length) windows.push_back(w);
    next_unscored = start + w.length;
  }
  return windows;
}

PerplexityReport run_perplexity(const PerplexityOptions& options, std::ostream* progress) {
  PerplexityReport report;
  report.model_path = options.model_path;
  report.text_path = options.text_path;
  report.kl_base_path = options.kl_base_path;
  report.n_ctx = options.n_ctx;
  report.stride = options.stride == 0 ? options.n_ctx : options.stride;
  plan_perplexity_windows(0, report.n_ctx, report.stride);  // check the sizes before loading anything

  const std::string text = read_text_file(options.text_path);
  report.n_text_bytes = static_cast<int64_t>(text.size());

  // One forward per window when it fits; longer windows go in chunks through the KV cache.
  model::LoadOptions load;
  load.n_ctx = report.n_ctx;
  load.n_slots = 1;
  load.max_batch = std::min<int64_t>(report.n_ctx, 512);
  load.max_logits = load.max_batch;
  load.n_threads = options.n_threads;
  load.placement.device = options.device.empty() ? engine::default_device() : engine::Device::parse(options.device);
  load.device_is_default = options.device.empty();
  load.placement.gpu_layers = options.gpu_layers;
  load.mmap = !options.no_mmap;
  const std::unique_ptr<model::Model> model = model::Model::load(options.model_path, load);
  std::unique_ptr<model::Model> base;
  if (!options.kl_base_path.empty()) {
    base = model::Model::load(options.kl_base_path, load);
    if (base->config().n_vocab != model->config().n_vocab) {
      fail("{}: the base model's vocabulary has {} tokens, {} has {}: KL needs the same vocabulary",
           options.kl_base_path, base->config().n_vocab, options.model_path, model->config().n_vocab);
    }
  }

  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), options.model_path));
  const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/false, /*parse_special=*/false);
  report.n_tokens = static_cast<int64_t>(ids.size());
  if (ids.size() < 2) {
    fail("{}: the text is {} token{} long; perplexity needs at least 2", options.text_path, ids.size(),
         ids.size() == 1 ? "" : "s");
  }
  const std::vector<PerplexityWindow> windows = plan_perplexity_windows(report.n_tokens, report.n_ctx, report.stride);
  report.n_windows = static_cast<int64_t>(windows.size());

  const size_t n_vocab = static_cast<size_t>(model->config().n_vocab);
  RunningMean nll_model, nll_base, kl, agree;
  WindowRunner model_runner(*model);
  std::unique_ptr<WindowRunner> base_runner = base ? std::make_unique<WindowRunner>(*base) : nullptr;
  std::vector<float> base_rows;  // the base model's logits of the current chunk
  ProgressBar bar(progress, report.n_windows);
  const auto start_time = Clock::now();
  bar.update(0, 0);
  for (size_t iw = 0; iw < windows.size(); ++iw) {
    const PerplexityWindow& w = windows[iw];
    const std::span<const int32_t> window(ids.data() + w.start, static_cast<size_t>(w.length));
    // Position p's logits predict token p + 1: scored positions [first_scored, length) need the
    // logits of [first_scored - 1, length - 2].
    const int64_t first_logit = w.first_scored - 1, last_logit = w.length - 2;
    for (int64_t c0 = 0; c0 < w.length; c0 += model->max_batch()) {
      const int64_t c1 = std::min(w.length, c0 + model->max_batch());
      if (base_runner) {
        const std::span<const float> rows = base_runner->forward(window, c0, c1, first_logit, last_logit);
        base_rows.assign(rows.begin(), rows.end());
      }
      const std::span<const float> rows = model_runner.forward(window, c0, c1, first_logit, last_logit);
      size_t row = 0;
      for (int64_t p = std::max(c0, first_logit); p < c1 && p <= last_logit; ++p, ++row) {
        const size_t target = static_cast<size_t>(window[static_cast<size_t>(p + 1)]);
        if (target >= n_vocab) fail("token id {} of the text is outside the vocabulary ({})", target, n_vocab);
        const std::span<const float> logits = rows.subspan(row * n_vocab, n_vocab);
        const double lse = log_sum_exp(logits);
        nll_model.add(lse - static_cast<double>(logits[target]));
        if (base_runner) {
          const std::span<const float> base_logits = std::span<const float>(base_rows).subspan(row * n_vocab, n_vocab);
          const double base_lse = log_sum_exp(base_logits);
          nll_base.add(base_lse - static_cast<double>(base_logits[target]));
          kl.add(kl_divergence(base_logits, base_lse, logits, lse));
          agree.add(argmax(base_logits) == argmax(logits) ? 1.0 : 0.0);
        }
      }
      VELOCITY_CHECK(row * n_vocab == rows.size(), "forward returned {} logits rows, expected {}",
                     rows.size() / n_vocab, row);
    }
    bar.update(static_cast<int64_t>(iw + 1), std::exp(nll_model.result().mean));
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - start_time).count();
  report.n_scored = nll_model.count();
  report.model = stats_of(nll_model);
  if (base_runner) {
    report.base = stats_of(nll_base);
    report.kl = kl.result();
    report.top1_agreement = agree.result();
  }
  return report;
}

std::string format_perplexity(const PerplexityReport& r) {
  std::string out;
  out += fmt::format("text: {} ({} bytes, {} tokens)\n", r.text_path, r.n_text_bytes, r.n_tokens);
  out += fmt::format("windows: {} of up to {} tokens, stride {}; {} tokens scored in {:.2f} s ({:.1f} tokens/s)\n",
                     r.n_windows, r.n_ctx, r.stride, r.n_scored, r.seconds,
                     r.seconds > 0 ? static_cast<double>(r.n_scored) / r.seconds : 0.0);
  auto line = [](const std::string& label, const std::string& path, const PerplexityStats& s) {
    return fmt::format("{}: {}\n  perplexity {:.4f} +/- {:.4f} (mean NLL {:.5f} +/- {:.5f} nats/token)\n", label, path,
                       s.perplexity, s.perplexity_se, s.nll.mean, s.nll.se);
  };
  if (r.base) out += line("base", r.kl_base_path, *r.base);
  out += line("model", r.model_path, r.model);
  if (r.base) {
    out += fmt::format("KL(base || model): {:.6f} +/- {:.6f} nats/token\n", r.kl.mean, r.kl.se);
    out +=
        fmt::format("same top token: {:.3f} % +/- {:.3f} %\n", 100 * r.top1_agreement.mean, 100 * r.top1_agreement.se);
  }
  return out;
}

nlohmann::ordered_json perplexity_json(const PerplexityReport& r) {
  auto stats = [](const PerplexityStats& s) {
    nlohmann::ordered_json j;
    j["perplexity"] = s.perplexity;
    j["perplexity_se"] = s.perplexity_se;
    j["mean_nll"] = s.nll.mean;
    j["mean_nll_se"] = s.nll.se;
    return j;
  };
  nlohmann::ordered_json j;
  j["model"] = r.model_path;
  j["text"] = r.text_path;
  j["n_text_bytes"] = r.n_text_bytes;
  j["n_tokens"] = r.n_tokens;
  j["n_ctx"] = r.n_ctx;
  j["stride"] = r.stride;
  j["n_windows"] = r.n_windows;
  j["n_scored"] = r.n_scored;
  j["seconds"] = r.seconds;
  j["result"] = stats(r.model);
  if (r.base) {
    j["kl_base"] = r.kl_base_path;
    j["base_result"] = stats(*r.base);
    j["kl_mean"] = r.kl.mean;
    j["kl_se"] = r.kl.se;
    j["top1_agreement"] = r.top1_agreement.mean;
    j["top1_agreement_se"] = r.top1_agreement.se;
  }
  return j;
}

}  // namespace velocity::tools
