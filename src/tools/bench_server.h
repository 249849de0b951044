// `velocity bench --url`: latency and throughput of a running OpenAI-compatible server (velocity
// serve, or any server that streams OpenAI's SSE chunks), as clients see them.
//
//   velocity bench --url http://127.0.0.1:8080 --concurrency 1,8 -n 128 -p 32
//
// For each concurrency level C: C client threads, each on its own keep-alive connection, send
// streaming requests back to back ("stream": true, "temperature": 0, "max_tokens": n,
// "stream_options": {"include_usage": true}) until the level's requests are done. One untimed
// request warms the server up first. Per request:
//   TTFT     request sent -> first chunk carrying text (connect time excluded: connections are reused);
//            a request whose tokens all decode to no text (special tokens) has none
//   ITL      gaps between consecutive chunks carrying text. A chunk may carry more than one token
//            (the server holds text back while it may be a stop string or half a UTF-8 character);
//            tokens_per_chunk reports how many on average.
//   e2e      request sent -> end of the stream ([DONE])
//   tok/s    the stream's decode rate: (completion_tokens - 1) / (last text chunk - first text chunk),
//            completion_tokens from the usage chunk (the server's count, not the chunk count).
// Per level: aggregate tok/s = generated tokens of all requests / wall time of the level (prefill
// included); speedup = aggregate tok/s against the level with C = 1, when it ran. Aggregate decode
// tok/s = the tokens after each request's first / the time during which at least one request was
// decoding (the union of the requests' [first text chunk, last text chunk] intervals): the decode
// throughput with the pure-prefill time left out (prefills of requests that arrive while others
// decode still slow those down, and count); decode speedup compares it with C = 1's. The server's
// own decode rate (timings.predicted_per_second of the finish chunk, a llama.cpp extension;
// velocity counts from the end of the prefill) is averaged beside, to separate HTTP overhead.
//
// EOS: servers without "ignore_eos" (velocity's) may end a request early; rates use the tokens
// actually generated, so they stay right, but short requests skew TTFT-heavy. Random-weight
// models (velocity synth) and the demo model rarely emit EOS.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "tools/bench.h"

namespace velocity::tools {

// http://host[:port][/prefix]. Only plain HTTP; IPv6 hosts in brackets.
struct HttpUrl {
  std::string host;
  uint16_t port = 80;
  std::string prefix;  // path before /v1/..., without a trailing '/' ("" or "/api")
};
// Throws velocity::Error naming the URL for anything else.
HttpUrl parse_http_url(const std::string& url);

// Incremental Server-Sent Events parser: feed bytes as they arrive, take whole events' data.
// Lines end with \n, \r\n or \r; an event ends at a blank line; "data:" lines of one event join
// with \n; comments (":...") and other fields (event:, id:, retry:) are skipped, as are events
// without data.
class SseParser {
 public:
  // Appends the data of every event completed by `bytes` to `events`.
  void feed(std::string_view bytes, std::vector<std::string>& events);

 private:
  void line_done(std::vector<std::string>& events);
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

struct ServerBenchOptions {
  std::string url;
  std::string api_key;  // sent as "Authorization: Bearer <key>" when not empty
  std::string model;    // request's "model"; empty: the first of GET /v1/models
  bool chat = false;    // /v1/chat/completions (one user message) instead of /v1/completions
  std::vector<int64_t> concurrency = {1, 8};
  int64_t n_gen = 128;          // max_tokens of each request
  int64_t n_prompt_words = 32;  // prompt length in words (about as many tokens)
  int64_t requests = 0;         // per level; 0: 2 * concurrency
  bool warmup = true;           // one untimed request first
  double timeout_s = 600;       // per request
  double wait_ready_s = 60;     // how long to wait while /health says 503 (loading)
  std::string version;
};

// Latency distribution in milliseconds (linear interpolation between order statistics).
struct LatencyStats {
  int64_t n = 0;
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};
LatencyStats latency_stats(std::vector<double> values_ms);
double percentile(std::vector<double> sorted, double q);  // q in [0, 1]; sorted ascending; 0 when empty

// One request as the client saw it.
struct RequestSample {
  std::optional<double> ttft_ms;  // absent when no chunk carried text (only special tokens, say)
  double e2e_ms = 0;
  std::vector<double> itl_ms;  // gaps between text chunks
  int64_t n_text_chunks = 0;
  int64_t prompt_tokens = 0;      // from the usage chunk
  int64_t completion_tokens = 0;  // from the usage chunk
  bool has_usage = false;
  std::optional<double> decode_tokens_per_second;  // see the header comment; needs >= 2 tokens
  // First and last text chunk, seconds on the steady clock (present with decode_tokens_per_second).
  double decode_begin_s = 0, decode_end_s = 0;
  std::optional<double> server_predicted_per_second;
  std::optional<double> server_prompt_per_second;
  std::string finish_reason;
};

struct ServerBenchLevel {
  int64_t concurrency = 1;
  double wall_s = 0;
  std::vector<RequestSample> samples;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t n_finished_by_length = 0;  // requests that generated all n_gen tokens
  int64_t n_without_text = 0;        // requests with no text chunk (no TTFT, ITL or stream tok/s)
  double aggregate_tokens_per_second = 0;
  double aggregate_decode_tokens_per_second = 0;  // see the header comment
  LatencyStats ttft_ms, itl_ms, e2e_ms;
  double stream_tokens_per_second_mean = 0, stream_tokens_per_second_p50 = 0;
  double tokens_per_chunk = 0;  // of the requests with text: their tokens / their text chunks
  std::optional<double> server_predicted_per_second_mean;
  std::optional<double> speedup_vs_concurrency1;
  std::optional<double> decode_speedup_vs_concurrency1;
};

struct ServerBenchReport {
  std::string version;
  std::string url;
  std::string model;
  std::string endpoint;  // "/v1/completions" or "/v1/chat/completions"
  int64_t n_gen = 0;
  int64_t n_prompt_words = 0;
  std::vector<ServerBenchLevel> levels;
};

// Summarises a level's samples (everything but concurrency, wall_s and the speedup).
void summarize_level(ServerBenchLevel& level);

// Checks the server (waiting while it loads), resolves the model, runs the levels. Throws
// velocity::Error for bad options, an unreachable server and any failed request (HTTP error,
// error event, stream cut short).
ServerBenchReport run_server_bench(const ServerBenchOptions& options);

void print_server_bench_markdown(const ServerBenchReport& report, std::ostream& out);
void print_server_bench_csv(const ServerBenchReport& report, std::ostream& out);
nlohmann::ordered_json server_bench_json(const ServerBenchReport& report);
void print_server_bench(const ServerBenchReport& report, BenchOutput format, std::ostream& out);

}  // namespace velocity::tools
