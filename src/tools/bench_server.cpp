#include "tools/bench_server.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <latch>
#include <limits>
#include <mutex>
#include <thread>

#include "core/error.h"

namespace velocity::tools {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// The "message" of an OpenAI error object, else the body itself (cut short).
std::string error_message(const std::string& body) {
  try {
    const json j = json::parse(body);
    if (j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
        j["error"]["message"].is_string())
      return j["error"]["message"].get<std::string>();
  } catch (const json::exception&) {
  }
  return body.size() > 300 ? body.substr(0, 300) + "..." : body;
}

// One keep-alive HTTP/1.1 connection, used synchronously from one thread. Every operation runs
// asynchronously on a private io_context so that tcp_stream's timeouts apply.
class Connection {
 public:
  using BytesHandler = std::function<void(int status, std::string_view bytes)>;

  Connection(const HttpUrl& url, std::string api_key, std::chrono::milliseconds timeout)
      : url_(url), api_key_(std::move(api_key)), timeout_(timeout) {}

  std::string where() const { return fmt::format("http://{}:{}", url_.host, url_.port); }

  void connect() {
    close();
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    const std::string host = url_.host.starts_with('[') ? url_.host.substr(1, url_.host.size() - 2) : url_.host;
    const auto endpoints = resolver.resolve(host, std::to_string(url_.port), ec);
    if (ec) fail("cannot resolve {}: {}", url_.host, ec.message());
    stream_.expires_after(timeout_);
    stream_.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    run();
    if (ec) fail("cannot connect to {}: {}", where(), ec.message());
    stream_.socket().set_option(tcp::no_delay(true), ec);
    connected_ = true;
  }

  // A request with a whole response body (GET /health, GET /v1/models).
  std::pair<int, std::string> get(const std::string& path) {
    std::string body;
    const int status = exchange(
        http::verb::get, path, {}, [&](int, std::string_view bytes) { body += bytes; }, nullptr);
    return {status, body};
  }

  // POST `body`; while the response streams, on_bytes(status, bytes) for each piece as it
  // arrives. `sent` is set when the request was written. Returns the status.
  int post_stream(const std::string& path, const std::string& body, const BytesHandler& on_bytes,
                  Clock::time_point* sent) {
    return exchange(http::verb::post, path, body, on_bytes, sent);
  }

 private:
  void run() {
    ioc_.restart();
    ioc_.run();
  }

  void close() {
    beast::error_code ec;
    if (stream_.socket().is_open()) {
      stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      stream_.socket().close(ec);
    }
    buffer_.clear();
    connected_ = false;
  }

  int exchange(http::verb method, const std::string& path, const std::string& body, const BytesHandler& on_bytes,
               Clock::time_point* sent) {
    // A reused connection may have been closed by the server while idle: retry once on a new one
    // when nothing of the response arrived.
    for (int attempt = 0;; ++attempt) {
      const bool reused = connected_;
      if (!connected_) connect();
      bool got_header = false;
      try {
        return exchange_once(method, path, body, on_bytes, sent, got_header);
      } catch (const Error&) {
        close();
        if (!reused || got_header || attempt > 0) throw;
      }
    }
  }

  int exchange_once(http::verb method, const std::string& path, const std::string& body, const BytesHandler& on_bytes,
                    Clock::time_point* sent, bool& got_header) {
    http::request<http::string_body> req(method, url_.prefix + path, 11);
    req.set(http::field::host, url_.port == 80 ? url_.host : fmt::format("{}:{}", url_.host, url_.port));
    req.set(http::field::user_agent, "velocity-bench");
    if (!api_key_.empty()) req.set(http::field::authorization, "Bearer " + api_key_);
    if (method == http::verb::post) {
      req.set(http::field::content_type, "application/json");
      req.set(http::field::accept, "text/event-stream");
      req.body() = body;
      req.prepare_payload();
    }
    req.keep_alive(true);
    beast::error_code ec;
    stream_.expires_after(timeout_);
    http::async_write(stream_, req, [&](beast::error_code e, size_t) { ec = e; });
    run();
    if (sent) *sent = Clock::now();
    if (ec)
      fail("{} {}{}: sending the request failed: {}", method == http::verb::post ? "POST" : "GET", where(), path,
           ec.message());

    http::response_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_.expires_after(timeout_);
    http::async_read_header(stream_, buffer_, parser, [&](beast::error_code e, size_t) { ec = e; });
    run();
    if (ec) fail("{}{}: no response: {}", where(), path, ec.message());
    got_header = true;
    const int status = (int)parser.get().result_int();
    char piece[16384];
    while (!parser.is_done()) {
      parser.get().body().data = piece;
      parser.get().body().size = sizeof piece;
      http::async_read_some(stream_, buffer_, parser, [&](beast::error_code e, size_t) { ec = e; });
      run();
      if (ec == http::error::need_buffer) ec = {};
      if (ec) fail("{}{}: the response broke off: {}", where(), path, ec.message());
      const size_t n = sizeof piece - parser.get().body().size;
      if (n > 0) on_bytes(status, std::string_view(piece, n));
    }
    if (!parser.keep_alive()) close();
    return status;
  }

  HttpUrl url_;
  std::string api_key_;
  std::chrono::milliseconds timeout_;
  net::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

// A prompt of about `n_words` tokens, different for each request (no prefix is shared beyond
// the first word, so no prefix cache can skip the prefill).
std::string make_prompt(int64_t n_words, int64_t request_index) {
  static constexpr const char* kWords[] = {
      "the",   "history", "of",    "a",      "small",  "town",  "begins", "with",  "river", "that",  "ran",
      "past",  "old",     "mill",  "where",  "people", "came",  "to",     "trade", "grain", "and",   "stories",
      "about", "weather", "roads", "family", "market", "songs", "winter", "light", "over",  "hills", "quiet"};
  constexpr size_t n = sizeof kWords / sizeof kWords[0];
  std::string prompt = fmt::format("Request {}:", request_index);
  for (int64_t i = 1; i < n_words; ++i) {
    prompt += ' ';
    prompt += kWords[(size_t)(i * 7 + request_index * 13) % n];
  }
  return prompt;
}

std::string request_body(const ServerBenchOptions& o, const std::string& model, int64_t max_tokens,
                         int64_t request_index) {
  json j;
  j["model"] = model;
  const std::string prompt = make_prompt(o.n_prompt_words, request_index);
  if (o.chat)
    j["messages"] = json::array({json{{"role", "user"}, {"content", prompt}}});
  else
    j["prompt"] = prompt;
  j["max_tokens"] = max_tokens;
  j["temperature"] = 0;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  j["ignore_eos"] = true;  // llama.cpp's extension; servers without it ignore the field
  return j.dump();
}

const json* object_field(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_object() ? &*it : nullptr;
}

std::optional<double> number_field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// Sends one streaming request and times its chunks.
RequestSample run_request(Connection& connection, const ServerBenchOptions& o, const std::string& model,
                          int64_t max_tokens, int64_t request_index) {
  const std::string path = o.chat ? "/v1/chat/completions" : "/v1/completions";
  const std::string body = request_body(o, model, max_tokens, request_index);
  RequestSample s;
  SseParser sse;
  std::vector<std::string> events;
  std::string error_body;
  bool done = false;
  std::optional<Clock::time_point> first_text, last_text;
  Clock::time_point sent;
  auto on_event = [&](const std::string& data, Clock::time_point now) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    json j;
    try {
      j = json::parse(data);
    } catch (const json::exception& e) {
      fail("{}{}: a stream event is not JSON ({}): {}", connection.where(), path, e.what(), data.substr(0, 200));
    }
    if (const json* err = object_field(j, "error"))
      fail("{}{}: the server reported an error mid-stream: {}", connection.where(), path,
           err->value("message", std::string("(no message)")));
    if (auto it = j.find("choices"); it != j.end() && it->is_array() && !it->empty()) {
      const json& choice = (*it)[0];
      size_t n_text = 0;
      if (o.chat) {
        if (const json* delta = object_field(choice, "delta")) {
          for (const char* key : {"content", "reasoning_content"})
            if (auto t = delta->find(key); t != delta->end() && t->is_string())
              n_text += t->get_ref<const std::string&>().size();
        }
      } else if (auto t = choice.find("text"); t != choice.end() && t->is_string()) {
        n_text = t->get_ref<const std::string&>().size();
      }
      if (n_text > 0) {
        if (!first_text)
          first_text = now;
        else
          s.itl_ms.push_back(ms_between(*last_text, now));
        last_text = now;
        s.n_text_chunks += 1;
      }
      if (auto f = choice.find("finish_reason"); f != choice.end() && f->is_string())
        s.finish_reason = f->get<std::string>();
    }
    if (const json* t = object_field(j, "timings")) {
      s.server_predicted_per_second = number_field(*t, "predicted_per_second");
      s.server_prompt_per_second = number_field(*t, "prompt_per_second");
    }
    if (const json* u = object_field(j, "usage")) {
      s.has_usage = true;
      s.prompt_tokens = (int64_t)number_field(*u, "prompt_tokens").value_or(0);
      s.completion_tokens = (int64_t)number_field(*u, "completion_tokens").value_or(0);
    }
  };
  const int status = connection.post_stream(
      path, body,
      [&](int code, std::string_view bytes) {
        const Clock::time_point now = Clock::now();
        if (code != 200) {
          error_body += bytes;
          return;
        }
        events.clear();
        sse.feed(bytes, events);
        for (const std::string& e : events) on_event(e, now);
      },
      &sent);
  const Clock::time_point end = Clock::now();
  if (status != 200) fail("{}{}: HTTP {}: {}", connection.where(), path, status, error_message(error_body));
  if (!done) fail("{}{}: the stream ended without 'data: [DONE]'", connection.where(), path);
  s.e2e_ms = ms_between(sent, end);
  if (!s.has_usage) s.completion_tokens = s.n_text_chunks;  // a server without include_usage
  if (!first_text) return s;
  s.ttft_ms = ms_between(sent, *first_text);
  const double decode_ms = ms_between(*first_text, *last_text);
  if (s.completion_tokens >= 2 && decode_ms > 0) {
    s.decode_tokens_per_second = 1e3 * (double)(s.completion_tokens - 1) / decode_ms;
    s.decode_begin_s = std::chrono::duration<double>(first_text->time_since_epoch()).count();
    s.decode_end_s = std::chrono::duration<double>(last_text->time_since_epoch()).count();
  }
  return s;
}

// A non-200 answer: the status and the server's message.
[[noreturn]] void fail_status(const Connection& connection, const std::string& path, int status,
                              const std::string& body) {
  fail("{}{}: HTTP {}: {}", connection.where(), path, status, error_message(body));
}

// Waits while /health answers 503 (the model loads); checks the key with /v1/models; returns
// the model to ask for.
std::string prepare(Connection& connection, const ServerBenchOptions& o) {
  const Clock::time_point start = Clock::now();
  for (;;) {
    auto [status, body] = connection.get("/health");
    if (status == 200) break;
    if (status != 503) fail_status(connection, "/health", status, body);
    if (ms_between(start, Clock::now()) > o.wait_ready_s * 1e3)
      fail("{}: not ready after {} s: {}", connection.where(), o.wait_ready_s, error_message(body));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto [status, body] = connection.get("/v1/models");
  if (status != 200) fail_status(connection, "/v1/models", status, body);
  if (!o.model.empty()) return o.model;
  try {
    const json j = json::parse(body);
    const json& data = j.at("data");
    if (!data.is_array() || data.empty()) fail("{}/v1/models: the server lists no model", connection.where());
    return data[0].at("id").get<std::string>();
  } catch (const json::exception& e) {
    fail("{}/v1/models: unexpected answer ({}): {}", connection.where(), e.what(), body.substr(0, 200));
  }
}

// Runs `n_requests` requests on `concurrency` client threads.
ServerBenchLevel run_level(const HttpUrl& url, const ServerBenchOptions& o, const std::string& model,
                           int64_t concurrency, int64_t n_requests, int64_t& request_index) {
  ServerBenchLevel level;
  level.concurrency = concurrency;
  const auto timeout = std::chrono::milliseconds((int64_t)(o.timeout_s * 1e3));
  std::vector<std::unique_ptr<Connection>> connections;
  for (int64_t i = 0; i < concurrency; ++i) {
    connections.push_back(std::make_unique<Connection>(url, o.api_key, timeout));
    connections.back()->connect();  // before the clock starts
  }
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::exception_ptr error;
  const int64_t first_index = request_index;
  std::latch ready((std::ptrdiff_t)concurrency + 1);
  std::vector<std::thread> threads;
  for (int64_t c = 0; c < concurrency; ++c) {
    threads.emplace_back([&, c] {
      ready.arrive_and_wait();
      for (;;) {
        const int64_t i = next++;
        if (i >= n_requests || failed) return;
        try {
          RequestSample s = run_request(*connections[(size_t)c], o, model, o.n_gen, first_index + i);
          std::lock_guard<std::mutex> lock(mutex);
          level.samples.push_back(std::move(s));
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!error) error = std::current_exception();
          failed = true;
          return;
        }
      }
    });
  }
  ready.arrive_and_wait();
  const Clock::time_point start = Clock::now();
  for (std::thread& t : threads) t.join();
  level.wall_s = ms_between(start, Clock::now()) / 1e3;
  request_index += n_requests;
  if (error) std::rethrow_exception(error);
  summarize_level(level);
  return level;
}

json latency_json(const LatencyStats& s) {
  return json{{"n", s.n}, {"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max}};
}

json optional_json(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

HttpUrl parse_http_url(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  auto bad = [&](const std::string& why) {
    fail("bad --url '{}': {} (expected http://host[:port][/prefix])", url, why);
  };
  if (url.starts_with("https://")) bad("https is not supported");
  if (!url.starts_with(kScheme)) bad("it must start with http://");
  std::string_view rest = std::string_view(url).substr(kScheme.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  HttpUrl u;
  if (slash != std::string_view::npos) {
    u.prefix = std::string(rest.substr(slash));
    while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
    if (u.prefix.find_first_of("?# ") != std::string::npos) bad("a query, fragment or space in the path");
  }
  if (authority.find('@') != std::string_view::npos) bad("user info is not supported");
  std::string_view port;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) bad("unclosed '[' in the host");
    u.host = std::string(authority.substr(0, close + 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') bad("junk after the IPv6 host");
      port = after.substr(1);
      if (port.empty()) bad("empty port");
    }
  } else {
    const size_t colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) bad("empty port");
    }
  }
  if (u.host.empty() || u.host == "[]") bad("no host");
  if (!port.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
      bad(fmt::format("port '{}' is not in 1..65535", port));
    u.port = (uint16_t)value;
  }
  return u;
}

void SseParser::feed(std::string_view bytes, std::vector<std::string>& events) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the \n of a \r\n: the line already ended
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r')
      line_done(events);
    else
      line_ += c;
  }
}

void SseParser::line_done(std::vector<std::string>& events) {
  if (line_.empty()) {  // blank line: the event ends
    if (has_data_) events.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line_[0] != ':') {
    const size_t colon = line_.find(':');
    const std::string_view field = std::string_view(line_).substr(0, colon);
    if (field == "data") {
      std::string_view value =
          colon == std::string::npos ? std::string_view() : std::string_view(line_).substr(colon + 1);
      if (value.starts_with(' ')) value.remove_prefix(1);
      if (has_data_) data_ += '\n';
      data_ += value;
      has_data_ = true;
    }
  }
  line_.clear();
}

double percentile(std::vector<double> sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = std::clamp(q, 0.0, 1.0) * (double)(sorted.size() - 1);
  const size_t lo = (size_t)std::floor(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - (double)lo);
}

LatencyStats latency_stats(std::vector<double> values) {
  LatencyStats s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.n = (int64_t)values.size();
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / (double)values.size();
  s.p50 = percentile(values, 0.50);
  s.p90 = percentile(values, 0.90);
  s.p99 = percentile(values, 0.99);
  s.max = values.back();
  return s;
}

void summarize_level(ServerBenchLevel& level) {
  std::vector<double> ttft, itl, e2e, rates, server_rates;
  std::vector<std::pair<double, double>> decode_spans;
  int64_t decode_tokens = 0;
  int64_t n_chunks = 0, n_tokens_with_text = 0;
  level.prompt_tokens = level.generated_tokens = level.n_finished_by_length = level.n_without_text = 0;
  for (const RequestSample& s : level.samples) {
    if (s.ttft_ms) ttft.push_back(*s.ttft_ms);
    level.n_without_text += !s.ttft_ms;
    e2e.push_back(s.e2e_ms);
    itl.insert(itl.end(), s.itl_ms.begin(), s.itl_ms.end());
    if (s.decode_tokens_per_second) {
      rates.push_back(*s.decode_tokens_per_second);
      decode_spans.emplace_back(s.decode_begin_s, s.decode_end_s);
      decode_tokens += s.completion_tokens - 1;
    }
    if (s.server_predicted_per_second) server_rates.push_back(*s.server_predicted_per_second);
    level.prompt_tokens += s.prompt_tokens;
    level.generated_tokens += s.completion_tokens;
    level.n_finished_by_length += s.finish_reason == "length";
    n_chunks += s.n_text_chunks;
    if (s.ttft_ms) n_tokens_with_text += s.completion_tokens;
  }
  level.ttft_ms = latency_stats(ttft);
  level.itl_ms = latency_stats(itl);
  level.e2e_ms = latency_stats(e2e);
  const LatencyStats r = latency_stats(rates);
  level.stream_tokens_per_second_mean = r.mean;
  level.stream_tokens_per_second_p50 = r.p50;
  level.server_predicted_per_second_mean =
      server_rates.empty() ? std::nullopt : std::optional<double>(latency_stats(server_rates).mean);
  level.tokens_per_chunk = n_chunks > 0 ? (double)n_tokens_with_text / (double)n_chunks : 0;
  level.aggregate_tokens_per_second = level.wall_s > 0 ? (double)level.generated_tokens / level.wall_s : 0;
  // Length of the union of the decode spans.
  std::sort(decode_spans.begin(), decode_spans.end());
  double decoding_s = 0, covered_to = -std::numeric_limits<double>::infinity();
  for (auto [begin, end] : decode_spans) {
    begin = std::max(begin, covered_to);
    if (end > begin) decoding_s += end - begin;
    covered_to = std::max(covered_to, end);
  }
  level.aggregate_decode_tokens_per_second = decoding_s > 0 ? (double)decode_tokens / decoding_s : 0;
}

ServerBenchReport run_server_bench(const ServerBenchOptions& o) {
  const HttpUrl url = parse_http_url(o.url);
  if (o.concurrency.empty()) fail("--concurrency: no level given");
  for (int64_t c : o.concurrency)
    if (c < 1 || c > 1024) fail("--concurrency: {} is not in 1..1024", c);
  if (o.n_gen < 1) fail("-n: {} tokens per request; need at least 1", o.n_gen);
  if (o.n_prompt_words < 1) fail("-p: {} prompt words; need at least 1", o.n_prompt_words);
  if (o.requests < 0) fail("--requests: {} is negative", o.requests);
  const auto timeout = std::chrono::milliseconds((int64_t)(o.timeout_s * 1e3));

  ServerBenchReport report;
  report.version = o.version;
  report.url = o.url;
  report.endpoint = o.chat ? "/v1/chat/completions" : "/v1/completions";
  report.n_gen = o.n_gen;
  report.n_prompt_words = o.n_prompt_words;
  Connection probe(url, o.api_key, timeout);
  report.model = prepare(probe, o);
  int64_t request_index = 0;
  if (o.warmup) run_request(probe, o, report.model, std::min<int64_t>(o.n_gen, 16), request_index++);

  for (int64_t c : o.concurrency) {
    const int64_t n_requests = o.requests > 0 ? o.requests : 2 * c;
    report.levels.push_back(run_level(url, o, report.model, c, n_requests, request_index));
  }
  const ServerBenchLevel* base = nullptr;
  for (const ServerBenchLevel& l : report.levels)
    if (l.concurrency == 1 && !base) base = &l;
  if (base && base->aggregate_tokens_per_second > 0)
    for (ServerBenchLevel& l : report.levels)
      l.speedup_vs_concurrency1 = l.aggregate_tokens_per_second / base->aggregate_tokens_per_second;
  if (base && base->aggregate_decode_tokens_per_second > 0)
    for (ServerBenchLevel& l : report.levels)
      l.decode_speedup_vs_concurrency1 =
          l.aggregate_decode_tokens_per_second / base->aggregate_decode_tokens_per_second;
  return report;
}

void print_server_bench_markdown(const ServerBenchReport& r, std::ostream& out) {
  out << fmt::format("velocity {} | server {} | model {} | {} | prompt ~{} words | max_tokens {} | greedy\n", r.version,
                     r.url, r.model, r.endpoint, r.n_prompt_words, r.n_gen);
  out << "\n| conc | requests | prompt tok/req | gen tokens | wall s | agg tok/s | speedup | agg decode tok/s | decode speedup "
         "| stream tok/s mean | stream tok/s p50 | server tok/s | TTFT ms p50 | TTFT ms p90 | TTFT ms p99 | ITL ms p50 "
         "| ITL ms p90 | ITL ms p99 | e2e ms p50 | e2e ms p99 | tok/chunk |\n";
  out << "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
         "---: | ---: | ---: | ---: "
         "| ---: | ---: |\n";
  for (const ServerBenchLevel& l : r.levels) {
    out << fmt::format(
        "| {} | {} | {:.1f} | {} | {:.2f} | {:.2f} | {} | {:.2f} | {} | {:.2f} | {:.2f} | {} | {:.1f} | {:.1f} | {:.1f} | {:.2f} | {:.2f} | "
        "{:.2f} "
        "| {:.1f} | {:.1f} | {:.2f} |\n",
        l.concurrency, l.samples.size(),
        l.samples.empty() ? 0.0 : (double)l.prompt_tokens / (double)l.samples.size(), l.generated_tokens, l.wall_s,
        l.aggregate_tokens_per_second, l.speedup_vs_concurrency1 ? fmt::format("{:.2f}x", *l.speedup_vs_concurrency1) : std::string(),
        l.aggregate_decode_tokens_per_second,
        l.decode_speedup_vs_concurrency1 ? fmt::format("{:.2f}x", *l.decode_speedup_vs_concurrency1) : std::string(),
        l.stream_tokens_per_second_mean, l.stream_tokens_per_second_p50,
        l.server_predicted_per_second_mean ? fmt::format("{:.2f}", *l.server_predicted_per_second_mean) : std::string(),
        l.ttft_ms.p50, l.ttft_ms.p90, l.ttft_ms.p99, l.itl_ms.p50, l.itl_ms.p90, l.itl_ms.p99, l.e2e_ms.p50,
        l.e2e_ms.p99, l.tokens_per_chunk);
  }
  for (const ServerBenchLevel& l : r.levels)
    if (l.n_finished_by_length < (int64_t)l.samples.size())
      out << fmt::format(
          "\nnote: concurrency {}: {} of {} requests stopped before max_tokens (end of generation or a "
          "stop); rates use the tokens generated\n",
          l.concurrency, (int64_t)l.samples.size() - l.n_finished_by_length, l.samples.size());
  for (const ServerBenchLevel& l : r.levels)
    if (l.n_without_text > 0)
      out << fmt::format(
          "\nnote: concurrency {}: {} of {} requests streamed no text (special tokens only): no TTFT, "
          "ITL or stream tok/s for them\n",
          l.concurrency, l.n_without_text, l.samples.size());
}

nlohmann::ordered_json server_bench_json(const ServerBenchReport& r) {
  json j;
  j["version"] = r.version;
  j["url"] = r.url;
  j["model"] = r.model;
  j["endpoint"] = r.endpoint;
  j["n_prompt_words"] = r.n_prompt_words;
  j["n_gen"] = r.n_gen;
  json levels = json::array();
  for (const ServerBenchLevel& l : r.levels) {
    json e;
    e["concurrency"] = l.concurrency;
    e["requests"] = l.samples.size();
    e["finished_by_length"] = l.n_finished_by_length;
    e["without_text"] = l.n_without_text;
    e["wall_s"] = l.wall_s;
    e["prompt_tokens"] = l.prompt_tokens;
    e["generated_tokens"] = l.generated_tokens;
    e["aggregate_tokens_per_second"] = l.aggregate_tokens_per_second;
    e["speedup_vs_concurrency1"] = optional_json(l.speedup_vs_concurrency1);
    e["aggregate_decode_tokens_per_second"] = l.aggregate_decode_tokens_per_second;
    e["decode_speedup_vs_concurrency1"] = optional_json(l.decode_speedup_vs_concurrency1);
    e["stream_tokens_per_second"] = {{"mean", l.stream_tokens_per_second_mean},
                                     {"p50", l.stream_tokens_per_second_p50}};
    e["server_predicted_per_second"] = optional_json(l.server_predicted_per_second_mean);
    e["ttft_ms"] = latency_json(l.ttft_ms);
    e["itl_ms"] = latency_json(l.itl_ms);
    e["e2e_ms"] = latency_json(l.e2e_ms);
    e["tokens_per_chunk"] = l.tokens_per_chunk;
    json samples = json::array();
    for (const RequestSample& s : l.samples)
      samples.push_back(json{{"ttft_ms", optional_json(s.ttft_ms)},
                             {"e2e_ms", s.e2e_ms},
                             {"prompt_tokens", s.prompt_tokens},
                             {"completion_tokens", s.completion_tokens},
                             {"text_chunks", s.n_text_chunks},
                             {"decode_tokens_per_second", optional_json(s.decode_tokens_per_second)},
                             {"server_predicted_per_second", optional_json(s.server_predicted_per_second)},
                             {"finish_reason", s.finish_reason}});
    e["samples"] = std::move(samples);
    levels.push_back(std::move(e));
  }
  j["levels"] = std::move(levels);
  return j;
}

void print_server_bench_csv(const ServerBenchReport& r, std::ostream& out) {
  out << "url,model,endpoint,n_prompt_words,n_gen,concurrency,requests,generated_tokens,wall_s,"
         "aggregate_tokens_per_second,speedup_vs_concurrency1,aggregate_decode_tokens_per_second,"
         "decode_speedup_vs_concurrency1,stream_tokens_per_second_mean,"
         "stream_tokens_per_second_p50,server_predicted_per_second,ttft_ms_p50,ttft_ms_p90,ttft_ms_p99,itl_ms_p50,"
         "itl_ms_p90,itl_ms_p99,e2e_ms_p50,e2e_ms_p99,tokens_per_chunk\n";
  for (const ServerBenchLevel& l : r.levels) {
    out << fmt::format(
        "{},{},{},{},{},{},{},{},{:.4f},{:.4f},{},{:.4f},{},{:.4f},{:.4f},{},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f},"
        "{:.3f},{:.3f},{:.4f}\n",
        csv_quote(r.url), csv_quote(r.model), r.endpoint, r.n_prompt_words, r.n_gen, l.concurrency, l.samples.size(),
        l.generated_tokens, l.wall_s, l.aggregate_tokens_per_second,
        l.speedup_vs_concurrency1 ? fmt::format("{:.4f}", *l.speedup_vs_concurrency1) : std::string(),
        l.aggregate_decode_tokens_per_second,
        l.decode_speedup_vs_concurrency1 ? fmt::format("{:.4f}", *l.decode_speedup_vs_concurrency1) : std::string(),
        l.stream_tokens_per_second_mean, l.stream_tokens_per_second_p50,
        l.server_predicted_per_second_mean ? fmt::format("{:.4f}", *l.server_predicted_per_second_mean) : std::string(),
        l.ttft_ms.p50, l.ttft_ms.p90, l.ttft_ms.p99, l.itl_ms.p50, l.itl_ms.p90, l.itl_ms.p99, l.e2e_ms.p50,
        l.e2e_ms.p99, l.tokens_per_chunk);
  }
}

void print_server_bench(const ServerBenchReport& report, BenchOutput format, std::ostream& out) {
  switch (format) {
    case BenchOutput::Markdown: print_server_bench_markdown(report, out); break;
    case BenchOutput::Json: out << server_bench_json(report).dump(2) << '\n'; break;
    case BenchOutput::Csv: print_server_bench_csv(report, out); break;
  }
}

}  // namespace velocity::tools
