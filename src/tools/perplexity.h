// `velocity perplexity`: how well a model predicts a text, and (--kl-base) how far a model's
// next-token distributions are from a base model's over the same text.
//
//   velocity perplexity -m model.gguf -f text.txt --ctx 512
//   velocity perplexity -m model-q4_0.gguf -f text.txt --kl-base model-f16.gguf --json
//
// Definition (scripts/demo/train_demo.py computes the same in PyTorch):
//   - the text is tokenized with the model's tokenizer, no special tokens added (no BOS), special
//     token text not parsed: ids t[0..N);
//   - windows of at most n_ctx tokens start at 0, stride, 2*stride, ... (stride <= n_ctx); each is
//     evaluated from an empty context, positions 0..L-1;
//   - a window scores the tokens that no earlier window scored, never its own first token (it has
//     no context): with stride == n_ctx, positions 1..L-1 of every window; with stride < n_ctx,
//     the first window scores 1..L-1 and each later one its last `stride` positions;
//   - NLL of a scored token = -log softmax(logits of the position before it)[token], in double;
//     perplexity = exp(mean NLL), uncertainty = perplexity * SE(mean NLL), SE = sample standard
//     deviation of the per-token NLLs / sqrt(n).
// With a base model: mean KL(base || model) = sum_v p_base(v) (log p_base(v) - log p_model(v)) per
// scored position, its SE, and the fraction of positions whose most likely token is the same.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace velocity::tools {

struct PerplexityOptions {
  std::string model_path;    // GGUF model (its tokenizer tokenizes the text)
  std::string text_path;     // UTF-8 text file
  std::string kl_base_path;  // "" : no KL; else a GGUF model with the same vocabulary
  int64_t n_ctx = 512;       // tokens per window (>= 2)
  int64_t stride = 0;        // tokens between window starts; 0: n_ctx
  int n_threads = 0;         // CPU threads; 0: one per online core
  std::string device;        // "cpu", "cuda:N"; "": engine::default_device() (cuda:0 if present)
  int64_t gpu_layers = -1;  // -ngl: the last N layers on the GPU, the rest on the CPU (model::Placement)
  bool no_mmap = false;     // --no-mmap: read the file into memory instead of mapping it
};

// One window of the plan: text tokens [start, start + length), scoring positions
// [first_scored, length) of the window (first_scored >= 1).
struct PerplexityWindow {
  int64_t start = 0;
  int64_t length = 0;
  int64_t first_scored = 1;
};

// The windows over n_tokens tokens (see the definition above). Error when n_ctx < 2 or stride is
// not in [1, n_ctx]; empty when n_tokens < 2.
std::vector<PerplexityWindow> plan_perplexity_windows(int64_t n_tokens, int64_t n_ctx, int64_t stride);

// A mean over scored tokens, with the standard error of the mean.
struct MeanWithError {
  double mean = 0;
  double se = 0;
};

struct PerplexityStats {
  MeanWithError nll;         // nats per token
  double perplexity = 0;     // exp(nll.mean)
  double perplexity_se = 0;  // perplexity * nll.se
};

struct PerplexityReport {
  std::string model_path, text_path, kl_base_path;
  int64_t n_text_bytes = 0;
  int64_t n_tokens = 0;  // tokens of the whole text
  int64_t n_ctx = 0, stride = 0;
  int64_t n_windows = 0;
  int64_t n_scored = 0;  // tokens whose NLL was measured
  PerplexityStats model;
  std::optional<PerplexityStats> base;  // with --kl-base
  MeanWithError kl;                     // KL(base || model), nats per token (with --kl-base)
  MeanWithError top1_agreement;         // fraction of positions whose argmax tokens agree (with --kl-base)
  double seconds = 0;                   // evaluation time (loading and tokenizing excluded)
};

// Loads the model(s), tokenizes the text and evaluates every window. A progress bar with the
// running perplexity and an ETA goes to `progress` (nullptr: none). Throws velocity::Error for a
// missing or unreadable file, a text of fewer than 2 tokens, bad window sizes, and a base model
// whose vocabulary size differs from the model's.
PerplexityReport run_perplexity(const PerplexityOptions& options, std::ostream* progress);

// Human-readable lines (stdout of the CLI).
std::string format_perplexity(const PerplexityReport& report);
nlohmann::ordered_json perplexity_json(const PerplexityReport& report);

}  // namespace velocity::tools
