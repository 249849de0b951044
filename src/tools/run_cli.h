// `velocity run`: one prompt through a model, the text streamed to the terminal as it decodes,
// then a summary (prompt and generation rates, seed, finish reason).
//
//   velocity run -m model.gguf -p "Once upon a time" -n 64 --temp 0
//   velocity run -m model.gguf -p "Why is the sky blue?" --chat --seed 7 --stop "\n\n"
//
// --chat renders the model's chat template (GGUF tokenizer.chat_template), or the one
// --chat-template names (a built-in such as chatml, or Jinja), over one user message with
// add_generation_prompt; a reasoning model's <think> section is printed as it comes.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "tokenizer/vocab.h"

namespace velocity::tools {

struct RunOptions {
  std::string model_path;
  std::string prompt;
  int64_t n_predict = -1;            // < 0: until end of generation or a full context
  runtime::SamplingParams sampling = default_sampling();
  std::optional<uint64_t> seed;      // random when absent (the one used is reported)
  std::vector<std::string> stop;     // stop strings
  bool chat = false;                 // apply the model's chat template to the prompt
  std::string chat_template;         // with chat: a built-in template's name or Jinja; "" = the model's
  bool ignore_eos = false;           // keep generating past end-of-generation tokens
  bool print_special = false;        // print control tokens (<|im_start|> ...); llama.cpp's --special
  int64_t n_ctx = 0;                 // 0: the model's context length, capped at 4096
  int n_threads = 0;                 // 0: one per online core
  std::string device;                // "cpu", "cuda:N"; "": engine::default_device() (cuda:0 if present)
  int64_t gpu_layers = -1;  // -ngl: the last N layers on the GPU, the rest on the CPU (model::Placement)
  bool no_mmap = false;     // --no-mmap: read the file into memory instead of mapping it
  DType cache_type_k = DType::F16;
  DType cache_type_v = DType::F16;

  // temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties (llama.cpp's defaults).
  static runtime::SamplingParams default_sampling();
};

struct RunReport {
  runtime::GenerationResult result;
  uint64_t seed = 0;                 // the seed the sampler used
};

// Loads the model and its tokenizer, generates, writes the text to `out` piece by piece (flushed
// after each). Throws velocity::Error for a bad model file, a model without a chat template
// (with --chat), a prompt that does not fit the context, and bad sampling values.
RunReport run_prompt(const RunOptions& options, std::ostream& out);

// "prompt: N tokens, X tok/s | generated: M tokens, Y tok/s | seed: S | finish: stop (eog)"
std::string format_run_summary(const RunReport& report);

// The prompt as the model's chat template renders one user message, generation prompt opened.
// `chat_template`, when not empty, replaces the vocabulary's: a built-in template's name or Jinja
// (tokenizer::resolve_chat_template). Throws velocity::Error when there is no chat template, the
// name is unknown or rendering fails.
std::string apply_chat_template(const tokenizer::Vocab& vocab, const std::string& user_message,
                                const std::string& model_name, const std::string& chat_template = {});

// llama.cpp's -e: \n, \r, \t, \\, \", \' and \0 become the characters they name; any other
// backslash stays as written.
std::string process_escapes(const std::string& text);

// A KV cache type from a flag value: f32, f16, q8_0, q4_0, q4_1, q5_1 (any case); Error otherwise.
DType parse_cache_type(const std::string& name);

}  // namespace velocity::tools
