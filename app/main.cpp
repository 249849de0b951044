// velocity: one binary, one subcommand per job. The CLI wires modules together; no logic here.
//
// Exit codes: 0 success; 1 a velocity::Error (bad file, bad value, I/O); 2 bad command line
// (CLI11's message).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <exception>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "gguf/file.h"
#include "runtime/demo_model.h"
#include "server/serve_cli.h"
#include "tools/bench.h"
#include "tools/bench_server.h"
#include "tools/convert.h"
#include "tools/inspect.h"
#include "tools/perplexity.h"
#include "tools/run_cli.h"
#include "tools/synth.h"
#include "tools/template_cli.h"
#include "tools/tokenize_cli.h"

namespace {

// Matches project(velocity VERSION …) in the top-level CMakeLists.txt.
constexpr const char* kVersion = "velocity " VELOCITY_VERSION;

struct InspectArgs {
  std::string path;
  velocity::tools::InspectOptions options;
};

struct SynthArgs {
  velocity::tools::SynthOptions options;
};

struct ConvertArgs {
  velocity::tools::ConvertOptions options;
  std::string type = "f16";  // f32, f16, bf16, q8_0 (checked by CLI11, mapped by dtype_from_name)
};

struct TokenizeArgs {
  velocity::tools::TokenizeOptions options;
  std::optional<std::string> text;  // stdin when absent
  bool ids = false;
  bool pieces = false;
  bool no_special = false;
  bool no_bos = false;
};

void list_presets(const std::string& arch) {
  const auto archs = arch.empty() ? velocity::tools::synth_archs() : std::vector<std::string>{arch};
  for (const auto& a : archs)
    std::cout << fmt::format("{}: {}\n", a, fmt::join(velocity::tools::synth_presets(a), ", "));
}

CLI::App* add_inspect(CLI::App& app, InspectArgs& args) {
  CLI::App* cmd = app.add_subcommand("inspect", "Show a GGUF model: metadata, tensors, parameters, bytes per token");
  // -m like every other command, or the file as the argument.
  CLI::Option* file = cmd->add_option("file", args.path, "GGUF file (the first shard of a split model)");
  CLI::Option* model = cmd->add_option("-m,--model", args.path, "GGUF file (the same as the argument)");
  file->excludes(model);
  cmd->callback([file, model] {
    if (file->count() + model->count() == 0) throw CLI::RequiredError("file (or -m)");
  });
  cmd->add_flag("--json", args.options.json, "Print everything as JSON (arrays in full)");
  cmd->add_flag("--all", args.options.all_metadata, "Print every metadata key in full");
  return cmd;
}

CLI::App* add_synth(CLI::App& app, SynthArgs& args) {
  CLI::App* cmd = app.add_subcommand("synth", "Write a random-weight GGUF model of a real architecture and size");
  auto& o = args.options;
  cmd->add_option("--arch", o.arch, "Architecture: " + fmt::format("{}", fmt::join(velocity::tools::synth_archs(), ", ")))
      ->required();
  cmd->add_option("--preset", o.preset, "Size preset (see --list-presets)")->capture_default_str();
  cmd->add_option("--type", o.type, "Weight type (F16, BF16, Q8_0, Q4_K, MXFP4 …) or mix (Q4_K_M, MXFP4_MOE)")
      ->capture_default_str();
  cmd->add_option("-o,--output", o.output, "Output path (split shards are named <prefix>-0000i-of-0000N.gguf)")
      ->required();
  cmd->add_option("--seed", o.seed, "Random seed")->capture_default_str();
  cmd->add_flag("--header-only", o.header_only, "Write metadata and tensor infos only (for planning huge models)");
  // K, M, G are decimal (1000^n), as in llama.cpp's gguf-split; KiB, MiB, GiB are binary.
  cmd->add_option("--split-max-size", o.split_max_bytes, "Split into shards of at most this many data bytes (e.g. 500M, 2G)")
      ->transform(CLI::AsSizeValue(true));
  // Like --help: runs while parsing (after --arch is stored, before required options are checked).
  cmd->add_flag_callback(
      "--list-presets",
      [&o] {
        list_presets(o.arch);
        throw CLI::Success();
      },
      "List the presets of --arch (or of every architecture) and exit");
  return cmd;
}

CLI::App* add_tokenize(CLI::App& app, TokenizeArgs& args) {
  CLI::App* cmd = app.add_subcommand("tokenize", "Tokenize a text with a model's tokenizer: ids and pieces");
  cmd->add_option("-m,--model", args.options.model_path, "GGUF model (its tokenizer)")->required();
  cmd->add_option("text", args.text, "Text to tokenize (read from stdin when absent)");
  CLI::Option* ids = cmd->add_flag("--ids", args.ids, "Print the ids only, on one line");
  cmd->add_flag("--pieces", args.pieces, "Print the pieces only (JSON strings), one per line")->excludes(ids);
  cmd->add_flag("--no-special", args.no_special, "Treat special tokens written in the text as plain text");
  cmd->add_flag("--no-bos", args.no_bos, "Add no BOS (nor EOS), whatever the vocabulary asks");
  return cmd;
}

CLI::App* add_template(CLI::App& app, velocity::tools::TemplateOptions& options) {
  CLI::App* cmd = app.add_subcommand("template", "Render a chat template over a conversation, as the model's tokenizer would");
  cmd->add_option("-m,--model", options.model, "GGUF model (its tokenizer.chat_template, BOS and EOS)");
  cmd->add_option("--template", options.template_file, "Jinja template file (overrides the model's)");
  cmd->add_option("--chat-template", options.chat_template,
                  "Built-in template: chatml, llama3, ... (overrides the model's)")
      ->excludes("--template");
  cmd->add_option("--messages", options.messages_file,
                  "JSON file (- for stdin): an array of messages, or an object of template variables with \"messages\"")
      ->required();
  cmd->add_flag_callback("--no-generation-prompt", [&options] { options.add_generation_prompt = false; },
                         "Do not open the assistant's turn at the end");
  return cmd;
}

CLI::App* add_convert(CLI::App& app, ConvertArgs& args) {
  CLI::App* cmd = app.add_subcommand("convert", "Convert a Hugging Face model directory (safetensors) to GGUF");
  auto& o = args.options;
  cmd->add_option("input", o.input_dir, "Model directory: config.json, *.safetensors, tokenizer.json")->required();
  cmd->add_option("-o,--output", o.output, "Output path (split shards are named <prefix>-0000i-of-0000N.gguf)")
      ->required();
  cmd->add_option("--type", args.type, "Type of 2-D weights (1-D tensors and routers stay F32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}, CLI::ignore_case))
      ->capture_default_str();
  // K, M, G are decimal (1000^n), as in llama.cpp's gguf-split; KiB, MiB, GiB are binary.
  cmd->add_option("--split-max-size", o.split_max_bytes, "Split into shards of at most this many data bytes (e.g. 500M, 2G)")
      ->transform(CLI::AsSizeValue(true));
  cmd->add_flag("-q,--quiet", o.quiet, "No per-tensor progress on stderr");
  return cmd;
}

void run_inspect(const InspectArgs& args) {
  const velocity::gguf::File file = velocity::gguf::File::open(args.path);
  velocity::tools::inspect(file, args.options, std::cout);
}

void run_synth(const SynthArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  const velocity::tools::SynthResult result = velocity::tools::synth(args.options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& path : result.paths) std::cout << fmt::format("wrote {}\n", path);
  std::cout << fmt::format("{} file{}, {} tensors, {} params, {} bytes of tensor data", result.paths.size(),
                           result.paths.size() == 1 ? "" : "s", result.n_tensors, result.n_params, result.n_bytes);
  if (args.options.header_only) {
    std::cout << fmt::format(" (header only: not written), {:.2f} s\n", seconds);
  } else {
    std::cout << fmt::format(", {:.2f} s, {:.1f} MB/s\n", seconds, seconds > 0 ? (double)result.n_bytes / seconds / 1e6 : 0.0);
  }
}

void run_convert(ConvertArgs& args) {
  args.options.type = velocity::dtype_from_name(args.type).value();  // CLI11 admitted only known names
  const auto start = std::chrono::steady_clock::now();
  const velocity::tools::ConvertResult result = velocity::tools::convert_hf(args.options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& path : result.paths) std::cout << fmt::format("wrote {}\n", path);
  std::cout << fmt::format("{}: {} tensors, {} bytes of tensor data, {:.2f} s, {:.1f} MB/s\n", result.arch,
                           result.n_tensors, result.n_bytes, seconds,
                           seconds > 0 ? (double)result.n_bytes / seconds / 1e6 : 0.0);
}

void run_tokenize(TokenizeArgs& args) {
  auto& o = args.options;
  o.output = args.ids      ? velocity::tools::TokenizeOutput::Ids
             : args.pieces ? velocity::tools::TokenizeOutput::Pieces
                           : velocity::tools::TokenizeOutput::IdsAndPieces;
  o.parse_special = !args.no_special;
  o.add_special = !args.no_bos;
  const std::string text = args.text ? *args.text
                                     : std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  velocity::tools::tokenize(o, text, std::cout);
}

struct RunArgs {
  velocity::tools::RunOptions options;
  uint64_t seed = 0;
  bool escape = false;
  std::string cache_type_k = "f16", cache_type_v = "f16";
};

struct BenchArgs {
  velocity::tools::BenchOptions options;
  velocity::tools::ServerBenchOptions server;  // with --url
  std::string output = "md";
  std::string cache_type_k = "f16", cache_type_v = "f16";
  uint64_t bandwidth_mib = 1024;
};

// CLI11's NonNegativeNumber / PositiveNumber print their range as "0.000000 to 1797...368.000000"
// (300 digits of DBL_MAX); these say what is wanted.
bool parse_number(const std::string& text, double& v) {
  char* end = nullptr;
  v = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size() && std::isfinite(v);
}
const CLI::Validator kNonNegative(
    [](std::string& text) {
      double v = 0;
      if (!parse_number(text, v)) return "must be a number, got '" + text + "'";
      return v >= 0 ? std::string() : "must be 0 or more, got " + text;
    },
    "NUMBER >= 0");
const CLI::Validator kPositive(
    [](std::string& text) {
      double v = 0;
      if (!parse_number(text, v)) return "must be a number, got '" + text + "'";
      return v > 0 ? std::string() : "must be more than 0, got " + text;
    },
    "NUMBER > 0");

const std::vector<std::string> kCacheTypes = {"f32", "f16", "q8_0", "q4_0", "q4_1", "q5_1"};

CLI::App* add_run(CLI::App& app, RunArgs& args) {
  CLI::App* cmd = app.add_subcommand("run", "Generate text from one prompt, streamed to the terminal");
  auto& o = args.options;
  auto& s = o.sampling;
  cmd->add_option("-m,--model", o.model_path, "GGUF model (default: the bundled demo model)");
  cmd->add_option("-p,--prompt", o.prompt, "Prompt text")->required();
  cmd->add_option("-n,--n-predict", o.n_predict, "Tokens to generate (-1: until end of generation or a full context)")
      ->capture_default_str();
  cmd->add_option("--temp", s.temperature, "Temperature (0: greedy)")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--top-k", s.top_k, "Top-k (0: off)")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--top-p", s.top_p, "Top-p (1: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", s.min_p, "Min-p (0: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "Repeat penalty (1: off)")->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "Tokens the repeat penalty looks back over")->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--presence-penalty", s.presence_penalty, "Presence penalty (0: off)")->capture_default_str();
  cmd->add_option("--frequency-penalty", s.frequency_penalty, "Frequency penalty (0: off)")->capture_default_str();
  cmd->add_option("--seed", args.seed, "Sampling seed (random when absent; the one used is printed)");
  cmd->add_option("--stop", o.stop, "Stop string (repeatable); not printed")->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_flag("-e,--escape", args.escape, "Process escapes (\\n, \\t, \\\\, \\\", \\') in the prompt and stop strings");
  cmd->add_flag("--chat", o.chat, "Apply the model's chat template to the prompt (one user message)");
  cmd->add_option("--chat-template", o.chat_template,
                  "With --chat: a built-in template (chatml, llama3, ...) instead of the model's")
      ->needs("--chat");
  cmd->add_flag("--ignore-eos", o.ignore_eos, "Do not stop at end-of-generation tokens");
  cmd->add_flag("--special", o.print_special, "Print control tokens (<|im_start|> ...) as text");
  cmd->add_option("-c,--ctx", o.n_ctx, "Context length (0: the model's, at most 4096)")->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("-t,--threads", o.n_threads, "CPU threads (0: one per core)")->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--device", o.device, "Where the model runs: cpu or cuda:N (default: cuda:0 when a supported GPU is present, else cpu)");
  cmd->add_option("--gpu-layers,--n-gpu-layers", o.gpu_layers, "GPU layers (llama.cpp's -ngl): the last N layers on the GPU, the rest on the CPU (default: all)")->check(kNonNegative);
  cmd->add_flag("--no-mmap", o.no_mmap, "Read the model into memory instead of mapping it (llama.cpp's --no-mmap)");
  cmd->add_option("--cache-type-k", args.cache_type_k, "KV cache type of K")->capture_default_str()
      ->check(CLI::IsMember(kCacheTypes, CLI::ignore_case));
  cmd->add_option("--cache-type-v", args.cache_type_v, "KV cache type of V")->capture_default_str()
      ->check(CLI::IsMember(kCacheTypes, CLI::ignore_case));
  return cmd;
}

CLI::App* add_bench(CLI::App& app, BenchArgs& args) {
  CLI::App* cmd = app.add_subcommand("bench", "Prefill and decode tok/s (llama-bench style) against the measured bandwidth "
                                              "bound; with --url, a running server's TTFT, ITL and throughput");
  auto& o = args.options;
  auto& s = args.server;
  cmd->add_option("-m,--model", o.model_path, "GGUF model; with --url, the served model's name (default: the first listed)");
  cmd->add_option("-p,--n-prompt", o.n_prompt, "Prefill test sizes, comma-separated (0: none); with --url, prompt words "
                                               "(about tokens; default 32)")
      ->delimiter(',')->capture_default_str()->check(kNonNegative);
  cmd->add_option("-n,--n-gen", o.n_gen, "Decode test lengths, comma-separated (0: none); with --url, max_tokens per request")
      ->delimiter(',')->capture_default_str()->check(kNonNegative);
  CLI::Option* repetitions = cmd->add_option("-r,--repetitions", o.repetitions, "Timed runs per test (after one warm-up)")
      ->capture_default_str()->check(kPositive);
  CLI::Option* depth = cmd->add_option("-d,--depth", o.depth, "Context filled before each test, comma-separated")
      ->delimiter(',')->capture_default_str()->check(kNonNegative);
  CLI::Option* batch = cmd->add_option("-b,--batch", o.batch, "Sequences decoded together, comma-separated (e.g. 1,8)")
      ->delimiter(',')->capture_default_str()->check(kPositive);
  cmd->add_option("-o,--output", args.output, "Output format: md, json, csv")->capture_default_str()
      ->check(CLI::IsMember({"md", "json", "csv"}));
  CLI::Option* threads = cmd->add_option("-t,--threads", o.n_threads, "CPU threads (0: one per core)")->capture_default_str()
      ->check(kNonNegative);
  CLI::Option* device =
      cmd->add_option("--device", o.device, "Where the model runs: cpu or cuda:N (default: cuda:0 when a supported GPU is present, else cpu)");
  CLI::Option* no_mmap =
      cmd->add_flag("--no-mmap", o.no_mmap, "Read the model into memory instead of mapping it (llama.cpp's --no-mmap)");
  CLI::Option* gpu_layers = cmd->add_option("--gpu-layers,--n-gpu-layers", o.gpu_layers,
                                            "GPU layers (llama.cpp's -ngl): the last N layers on the GPU, the rest on "
                                            "the CPU (default: all)")
                                ->check(kNonNegative);
  CLI::Option* type_k = cmd->add_option("--cache-type-k", args.cache_type_k, "KV cache type of K")->capture_default_str()
      ->check(CLI::IsMember(kCacheTypes, CLI::ignore_case));
  CLI::Option* type_v = cmd->add_option("--cache-type-v", args.cache_type_v, "KV cache type of V")->capture_default_str()
      ->check(CLI::IsMember(kCacheTypes, CLI::ignore_case));
  CLI::Option* bandwidth =
      cmd->add_option("--bandwidth-mib", args.bandwidth_mib, "Buffer of the read-bandwidth measurement in MiB (0: skip it)")
          ->capture_default_str();
  // Server mode (tools/bench_server.h).
  CLI::Option* url = cmd->add_option("--url", s.url, "Benchmark a running server instead: http://host:port");
  url->excludes(repetitions)->excludes(depth)->excludes(batch)->excludes(threads)->excludes(type_k)->excludes(type_v)
      ->excludes(bandwidth)->excludes(device)->excludes(gpu_layers)->excludes(no_mmap);
  cmd->add_option("--api-key", s.api_key, "With --url: API key (Authorization: Bearer)")->needs(url);
  cmd->add_option("--concurrency", s.concurrency, "With --url: concurrent clients per level, comma-separated")
      ->delimiter(',')->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1024}))->needs(url);
  cmd->add_option("--requests", s.requests, "With --url: requests per level (0: twice the concurrency)")
      ->capture_default_str()->check(kNonNegative)->needs(url);
  cmd->add_flag("--chat", s.chat, "With --url: use /v1/chat/completions (default /v1/completions)")->needs(url);
  cmd->add_flag_callback("--no-warmup", [&s] { s.warmup = false; }, "With --url: no untimed request first")->needs(url);
  cmd->add_option("--timeout", s.timeout_s, "With --url: seconds a request may take")->capture_default_str()
      ->check(kPositive)->needs(url);
  return cmd;
}

struct ServeArgs {
  velocity::server::ServeFlags flags;
  int n_threads = 0;
  std::string flash_attn;  // llama-server's -fa [on|off|auto]: accepted, nothing to choose
  bool jinja = false;      // llama-server's --jinja: accepted, templates are always Jinja
};

CLI::App* add_serve(CLI::App& app, ServeArgs& args) {
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible server for one model (flags) or many (--config); "
                                              "no model: the bundled demo model");
  auto& f = args.flags;
  cmd->add_option("--config", f.config_file, "TOML config: a [server] table and one [[model]] table per model");
  cmd->add_option("-m,--model", f.model_path, "GGUF model (one model; excludes --config)");
  cmd->add_option("--name,--alias", f.model_name, "Model name clients send (default: the file name)");
  cmd->add_option("--device", f.device, "Where the model runs: auto (cuda:0 when a supported GPU is present, else cpu), cpu, cuda:N")
      ->capture_default_str();
  cmd->add_option("-c,--ctx,--ctx-size", f.ctx, "Context length per slot (default: the model's trained context, at most 4096)");
  cmd->add_flag("--no-mmap", f.no_mmap, "Read the model into memory instead of mapping it (llama.cpp's --no-mmap)");
  cmd->add_option("--gpu-layers,--n-gpu-layers", f.gpu_layers, "GPU layers (llama.cpp's -ngl): the last N layers on the GPU, the rest on the CPU (default: all)")->check(kNonNegative);
  cmd->add_option("--slots,--parallel", f.slots,
                  fmt::format("Sequences decoded together (parallel requests; llama-server: -np; default {})",
                              velocity::server::ModelEntry{}.slots));
  cmd->add_option("--prefill-chunk", f.prefill_chunk,
                  "Prompt tokens per step while other requests decode (default 128; smaller: steadier "
                  "inter-token latency, slower first token)");
  cmd->add_option("--cache-type-k", f.cache_type_k, "KV cache type of K: f32, f16, q8_0, q4_0, q4_1, q5_1 (-ctk; default f16)");
  cmd->add_option("--cache-type-v", f.cache_type_v, "KV cache type of V: f32, f16, q8_0, q4_0, q4_1, q5_1 (-ctv; default f16)");
  // llama-server flags that mean nothing different here, accepted so its command lines carry over.
  cmd->add_option("--flash-attn", args.flash_attn, "Accepted for llama-server command lines (-fa [on]): attention is always flash")
      ->expected(0, 1);
  cmd->add_flag("--jinja", args.jinja, "Accepted for llama-server command lines: chat templates are always Jinja");
  cmd->add_option("--chat-template-file", f.chat_template_file, "Jinja chat template replacing the model's (default: the GGUF's)");
  cmd->add_option("--chat-template", f.chat_template,
                  "Built-in chat template (chatml, llama3, ...) replacing the model's")
      ->excludes("--chat-template-file");
  cmd->add_option("--host", f.host, "Address to bind (default 127.0.0.1)");
  cmd->add_option("--port", f.port, "Port (default 8080; 0: any free port)");
  cmd->add_option("--api-key", f.api_keys, "Accepted API key (repeatable); required off loopback")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--api-key-file", f.api_key_file, "File of API keys, one per line");
  cmd->add_flag("--allow-no-key-public", f.allow_no_key_public, "Allow a non-loopback address without API keys");
  cmd->add_option("--allowed-host", f.allowed_hosts,
                  "Without API keys, also answer requests whose Host header is NAME (repeatable; \"*\": any). "
                  "IP addresses, localhost and the bound host are always answered")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--cors-origin", f.cors_origins,
                  "Let web pages of ORIGIN (http://host:port) call the API from a browser (repeatable; \"*\": any)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  const velocity::server::SamplingDefaults d;  // the defaults --help shows
  cmd->add_option("--temp", f.temperature, fmt::format("Default temperature (default {}; 0: greedy)", d.temperature));
  cmd->add_option("--top-k", f.top_k, fmt::format("Default top-k (default {}; 0: off)", d.top_k));
  cmd->add_option("--top-p", f.top_p, fmt::format("Default top-p (default {}; 1: off)", d.top_p));
  cmd->add_option("--min-p", f.min_p, fmt::format("Default min-p (default {}; 0: off)", d.min_p));
  cmd->add_option("--repeat-penalty", f.repeat_penalty, fmt::format("Default repeat penalty (default {}; 1: off)", d.repeat_penalty));
  cmd->add_option("--seed", f.seed, "Default seed (random per request when absent)");
  cmd->add_option("-t,--threads", args.n_threads, "CPU threads per model (0: one per core)")->capture_default_str()
      ->check(kNonNegative);
  return cmd;
}

void run_run(RunArgs& args, const CLI::App& cmd, const char* argv0) {
  auto& o = args.options;
  if (o.model_path.empty()) {
    o.model_path = velocity::runtime::find_demo_model(argv0);
    if (o.model_path.empty()) velocity::fail("no model given (-m) and the bundled demo model models/demo/demo.gguf was not found");
  }
  if (cmd.count("--seed") > 0) o.seed = args.seed;
  if (args.escape) {
    o.prompt = velocity::tools::process_escapes(o.prompt);
    for (std::string& stop : o.stop) stop = velocity::tools::process_escapes(stop);
  }
  o.cache_type_k = velocity::tools::parse_cache_type(args.cache_type_k);
  o.cache_type_v = velocity::tools::parse_cache_type(args.cache_type_v);
  const velocity::tools::RunReport report = velocity::tools::run_prompt(o, std::cout);
  std::cout << '\n';
  std::cout.flush();
  std::cerr << velocity::tools::format_run_summary(report) << '\n';
}

void run_bench(BenchArgs& args, const CLI::App& cmd) {
  auto& o = args.options;
  const velocity::tools::BenchOutput format = args.output == "json"  ? velocity::tools::BenchOutput::Json
                                              : args.output == "csv" ? velocity::tools::BenchOutput::Csv
                                                                     : velocity::tools::BenchOutput::Markdown;
  if (!args.server.url.empty()) {
    auto& s = args.server;
    auto single = [](const std::vector<int64_t>& values, const char* flag) {
      if (values.size() != 1) throw CLI::ValidationError(flag, "with --url, give one value");
      return values.front();
    };
    s.model = o.model_path;
    if (cmd.count("--n-prompt") > 0) s.n_prompt_words = single(o.n_prompt, "--n-prompt");
    s.n_gen = single(o.n_gen, "--n-gen");
    s.version = VELOCITY_VERSION;
    velocity::tools::print_server_bench(velocity::tools::run_server_bench(s), format, std::cout);
    return;
  }
  if (o.model_path.empty()) throw CLI::RequiredError("--model (or --url)");
  o.cache_type_k = velocity::tools::parse_cache_type(args.cache_type_k);
  o.cache_type_v = velocity::tools::parse_cache_type(args.cache_type_v);
  o.bandwidth_bytes = args.bandwidth_mib << 20;
  o.version = VELOCITY_VERSION;
  o.on_status = [](const std::string& what) { std::cerr << "velocity: " << what << std::endl; };
  if (format == velocity::tools::BenchOutput::Markdown) {  // each row as it finishes
    o.on_progress = [](const velocity::tools::BenchReport& r) {
      if (r.tests.empty()) velocity::tools::print_bench_markdown_header(r, std::cout);
      else velocity::tools::print_bench_markdown_row(r, r.tests.back(), std::cout);
      std::cout.flush();
    };
    velocity::tools::run_bench(o);
    return;
  }
  const velocity::tools::BenchReport report = velocity::tools::run_bench(o);
  velocity::tools::print_bench(report, format, std::cout);
}

struct PerplexityArgs {
  velocity::tools::PerplexityOptions options;
  bool json = false;
};

CLI::App* add_perplexity(CLI::App& app, PerplexityArgs& args) {
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a model over a text file; KL divergence against a base model");
  auto& o = args.options;
  cmd->add_option("-m,--model", o.model_path, "GGUF model (its tokenizer tokenizes the text)")->required();
  cmd->add_option("-f,--file", o.text_path, "Text file (UTF-8)")->required();
  cmd->add_option("-c,--ctx", o.n_ctx, "Tokens per window")->capture_default_str()->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  cmd->add_option("--stride", o.stride, "Tokens between window starts (0: ctx); a window scores only tokens no earlier one did")
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--kl-base", o.kl_base_path, "Base GGUF model (same vocabulary): report KL(base || model) and top-token agreement");
  cmd->add_option("-t,--threads", o.n_threads, "CPU threads (0: one per core)")->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--device", o.device, "Where the model runs: cpu or cuda:N (default: cuda:0 when a supported GPU is present, else cpu)");
  cmd->add_option("--gpu-layers,--n-gpu-layers", o.gpu_layers, "GPU layers (llama.cpp's -ngl): the last N layers on the GPU, the rest on the CPU (default: all)")->check(kNonNegative);
  cmd->add_flag("--no-mmap", o.no_mmap, "Read the model into memory instead of mapping it (llama.cpp's --no-mmap)");
  cmd->add_flag("--json", args.json, "Print the result as JSON");
  return cmd;
}

void run_perplexity(const PerplexityArgs& args) {
  const velocity::tools::PerplexityReport report = velocity::tools::run_perplexity(args.options, &std::cerr);
  if (args.json) {
    std::cout << velocity::tools::perplexity_json(report).dump(2) << '\n';
  } else {
    std::cout << velocity::tools::format_perplexity(report);
  }
}

// Every option takes one value per occurrence (repeat the flag for several), and a value that is
// another option of the same command is an error: CLI11 would otherwise let `--api-key --port 9`
// take "--port" as the key and leave the port at its default.
void one_value_each(CLI::App& cmd) {
  for (CLI::Option* opt : cmd.get_options()) {
    if (opt->get_type_size_max() == 0 || opt->get_expected_max() == 0) continue;  // a flag
    if (opt->get_items_expected_max() > 1) opt->allow_extra_args(false);  // -p 512 128: "128" is not -p's
    CLI::App* owner = &cmd;
    opt->check(CLI::Validator(
        [owner, opt](std::string& value) -> std::string {
          if (value.size() < 2 || value[0] != '-') return {};
          const std::string name = value.substr(0, value.find('='));
          if (!owner->get_option_no_throw(name) && !(name == "--help" || name == "-h")) return {};
          return "needs a value, but " + name + " follows it (" + opt->get_name() + " " + name +
                 ": give the value first, or repeat " + opt->get_name() + " for several values)";
        },
        "", "not another option"));
  }
  for (CLI::App* sub : cmd.get_subcommands({})) one_value_each(*sub);
}

}  // namespace

// ---- "did you mean": the closest name to a mistyped command or option -------------------------

// Edits (insert, delete, substitute, swap two neighbours) between a and b: a typo's distance.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// The candidate nearest to `word` (at most a third of its letters off, or containing it), or "".
std::string nearest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(1, word.size() / 3) + 1;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d >= best_d && word.size() >= 3 && c.find(word) != std::string::npos) d = best_d - 1;
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

// `velocity serv`: CLI11 says only "A subcommand is required".
std::optional<std::string> unknown_command(const CLI::App& app, const std::vector<std::string>& args) {
  if (args.size() < 2 || args[1].empty() || args[1][0] == '-') return std::nullopt;
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  if (std::find(names.begin(), names.end(), args[1]) != names.end()) return std::nullopt;
  std::string message = fmt::format("unknown command '{}'", args[1]);
  if (std::string n = nearest(args[1], names); !n.empty()) message += fmt::format(" (did you mean '{}'?)", n);
  return message + fmt::format("; the commands are {}", fmt::join(names, ", "));
}

// `velocity serve --ctxsize 5`: CLI11 says "The following arguments were not expected: 5
// --ctxsize"; this names the option and the nearest one the command has.
std::optional<std::string> unknown_option(CLI::App& app, const std::vector<std::string>& args) {
  CLI::App* cmd = nullptr;
  for (CLI::App* sub : app.get_subcommands()) cmd = sub;  // the one given
  if (cmd == nullptr) return std::nullopt;
  std::vector<std::string> names;
  for (const CLI::Option* o : cmd->get_options()) {
    for (const std::string& l : o->get_lnames()) names.push_back("--" + l);
    for (const std::string& sn : o->get_snames()) names.push_back("-" + sn);
  }
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-' || a == "--") continue;
    double number = 0;
    if (parse_number(a, number)) continue;  // a negative value
    const std::string name = a.substr(0, a.find('='));
    // Known: --name, -x, or -xVALUE of a known -x.
    const std::string key = name.starts_with("--") ? name : name.substr(0, 2);
    if (cmd->get_option_no_throw(key) != nullptr) continue;
    std::string message = fmt::format("{}: unknown option '{}'", cmd->get_name(), name);
    if (std::string n = nearest(name, names); !n.empty()) message += fmt::format(" (did you mean '{}'?)", n);
    return message + fmt::format("; see velocity {} --help", cmd->get_name());
  }
  return std::nullopt;
}

int main(int argc, char** argv) {
  CLI::App app{"velocity: LLM inference server for GGUF models on NVIDIA GPUs"};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1);
  InspectArgs inspect_args;
  SynthArgs synth_args;
  ConvertArgs convert_args;
  TokenizeArgs tokenize_args;
  velocity::tools::TemplateOptions template_options;
  CLI::App* inspect_cmd = add_inspect(app, inspect_args);
  CLI::App* synth_cmd = add_synth(app, synth_args);
  CLI::App* convert_cmd = add_convert(app, convert_args);
  CLI::App* tokenize_cmd = add_tokenize(app, tokenize_args);
  CLI::App* template_cmd = add_template(app, template_options);
  RunArgs run_args;
  BenchArgs bench_args;
  CLI::App* run_cmd = add_run(app, run_args);
  CLI::App* bench_cmd = add_bench(app, bench_args);
  PerplexityArgs perplexity_args;
  CLI::App* perplexity_cmd = add_perplexity(app, perplexity_args);
  ServeArgs serve_args;
  CLI::App* serve_cmd = add_serve(app, serve_args);
  one_value_each(app);
  // llama-server's multi-letter single-dash flags, which CLI11 would read as bundled short flags.
  std::vector<std::string> args(argv, argv + argc);
  for (std::string& a : args) {
    static const std::pair<const char*, const char*> kLlamaFlags[] = {
        {"-np", "--parallel"},     {"-ctk", "--cache-type-k"}, {"-ctv", "--cache-type-v"},
        {"-ngl", "--gpu-layers"}, {"-fa", "--flash-attn"}};
    for (const auto& [from, to] : kLlamaFlags) {
      const std::string_view f(from);
      if (a == f || (a.starts_with(f) && a.size() > f.size() && a[f.size()] == '=')) a = to + a.substr(f.size());
    }
  }
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  if (std::optional<std::string> unknown = unknown_command(app, args)) {
    std::fprintf(stderr, "velocity: %s\n", unknown->c_str());
    return 2;
  }
  try {
    app.parse(argc, arg_ptrs.data());
    if (inspect_cmd->parsed()) run_inspect(inspect_args);
    if (synth_cmd->parsed()) run_synth(synth_args);
    if (convert_cmd->parsed()) run_convert(convert_args);
    if (tokenize_cmd->parsed()) run_tokenize(tokenize_args);
    if (template_cmd->parsed()) std::cout << velocity::tools::render_template(template_options);
    if (run_cmd->parsed()) run_run(run_args, *run_cmd, argv[0]);
    if (bench_cmd->parsed()) run_bench(bench_args, *bench_cmd);
    if (perplexity_cmd->parsed()) run_perplexity(perplexity_args);
    if (serve_cmd->parsed()) return velocity::server::serve(serve_args.flags, argv[0], serve_args.n_threads, std::cerr);
  } catch (const CLI::ExtrasError& e) {
    if (std::optional<std::string> unknown = unknown_option(app, args)) {
      std::fprintf(stderr, "velocity %s\n", unknown->c_str());
      return 2;
    }
    app.exit(e);
    return 2;
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, the version, the preset list's end, or the error
    return code == 0 ? 0 : 2;
  } catch (const velocity::Error& e) {
    std::cout.flush();
    std::fprintf(stderr, "velocity: error: %s\n", e.what());
    return 1;
  } catch (const velocity::InternalError& e) {  // a failed VELOCITY_CHECK
    std::cout.flush();
    std::fprintf(stderr, "velocity: internal error: %s (a bug; please report it)\n", e.what());
    return 70;  // EX_SOFTWARE
  } catch (const std::exception& e) {  // a bug or resource exhaustion: still a message, not an abort
    std::cout.flush();
    std::fprintf(stderr, "velocity: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
