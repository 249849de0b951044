// `velocity bench --url`: the URL and SSE parsers and the statistics, then the real binary
// (VELOCITY_BINARY) benchmarking a real `velocity serve` of a tiny synth llama; its token counts
// are checked against the server's own /metrics.
#include "tools/bench_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace velocity::tools {
namespace {

namespace fs = std::filesystem;

// --- URL --------------------------------------------------------------------------------------

TEST(BenchServerUrl, Parses) {
  HttpUrl u = parse_http_url("http://127.0.0.1:8080");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8080);
  EXPECT_EQ(u.prefix, "");
  u = parse_http_url("http://localhost/");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.prefix, "");
  u = parse_http_url("http://[::1]:9000/api/");
  EXPECT_EQ(u.host, "[::1]");
  EXPECT_EQ(u.port, 9000);
  EXPECT_EQ(u.prefix, "/api");
}

TEST(BenchServerUrl, RejectsWithAMessage) {
  for (const char* bad : {"127.0.0.1:8080", "https://x:1", "http://", "http://:80", "http://h:", "http://h:0",
                          "http://h:65536", "http://h:12ab", "http://[::1", "http://u@h:1", "http://h/a?b"}) {
    try {
      parse_http_url(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad --url"), std::string::npos) << e.what();
    }
  }
}

// --- SSE --------------------------------------------------------------------------------------

TEST(BenchServerSse, EventsSplitAnywhere) {
  const std::string stream =
      ": keep-alive\n\n"
      "data: {\"a\":1}\n\n"
      "event: x\r\ndata: line1\r\ndata:line2\r\n\r\n"
      "id: 7\n\n"  // no data: no event
      "data: [DONE]\n\n";
  const std::vector<std::string> want = {"{\"a\":1}", "line1\nline2", "[DONE]"};
  // Whole, and fed one byte at a time (a \r\n split between reads included).
  for (size_t step : {stream.size(), size_t{1}, size_t{3}}) {
    SseParser parser;
    std::vector<std::string> events;
    for (size_t i = 0; i < stream.size(); i += step) parser.feed(std::string_view(stream).substr(i, step), events);
    EXPECT_EQ(events, want) << "step " << step;
  }
}

TEST(BenchServerSse, IncompleteEventWaits) {
  SseParser parser;
  std::vector<std::string> events;
  parser.feed("data: x\n", events);
  EXPECT_TRUE(events.empty());
  parser.feed("\n", events);
  EXPECT_EQ(events, std::vector<std::string>{"x"});
}

// --- statistics -------------------------------------------------------------------------------

TEST(BenchServerStats, Percentiles) {
  EXPECT_EQ(percentile({}, 0.5), 0);
  EXPECT_DOUBLE_EQ(percentile({5}, 0.99), 5);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4}, 1.0), 4);
  EXPECT_DOUBLE_EQ(percentile({0, 10}, 0.9), 9);
  const LatencyStats s = latency_stats({4, 1, 3, 2});
  EXPECT_EQ(s.n, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.p50, 2.5);
  EXPECT_DOUBLE_EQ(s.max, 4);
}

// Aggregate decode rate: decode tokens over the union of the decode spans, however they overlap
// (nested, disjoint, touching), against a brute-force count over a fine grid.
TEST(BenchServerStats, AggregateDecodeUsesTheUnionOfSpans) {
  const std::vector<std::pair<double, double>> spans = {{0, 4}, {1, 2}, {4, 5}, {7, 9}, {8, 8.5}, {20, 21}};
  ServerBenchLevel level;
  level.wall_s = 30;
  for (auto [b, e] : spans) {
    RequestSample s;
    s.ttft_ms = 1;
    s.completion_tokens = 11;
    s.decode_tokens_per_second = 10 / (e - b);
    s.decode_begin_s = b;
    s.decode_end_s = e;
    level.samples.push_back(s);
  }
  int64_t covered = 0;  // grid points of 1 ms inside some span
  for (int64_t t = 0; t < 30000; ++t) {
    const double x = (t + 0.5) / 1000;
    for (auto [b, e] : spans)
      if (x > b && x < e) {
        ++covered;
        break;
      }
  }
  summarize_level(level);
  EXPECT_NEAR(level.aggregate_decode_tokens_per_second, 60.0 / (covered / 1000.0), 1e-9);
  EXPECT_DOUBLE_EQ(covered / 1000.0, 8.0);
}

TEST(BenchServerStats, LevelSummary) {
  ServerBenchLevel level;
  level.wall_s = 2;
  for (int i = 0; i < 2; ++i) {
    RequestSample s;
    s.ttft_ms = 10.0 * (i + 1);
    s.e2e_ms = 100;
    s.itl_ms = {5, 5, 10};
    s.n_text_chunks = 4;
    s.prompt_tokens = 3;
    s.completion_tokens = 8;
    s.decode_tokens_per_second = 50.0 + 10 * i;
    s.decode_begin_s = 10 + i;      // spans [10, 12] and [11, 14]: 4 s of decoding
    s.decode_end_s = 12 + 2.0 * i;
    s.server_predicted_per_second = 60;
    s.finish_reason = i == 0 ? "length" : "stop";
    level.samples.push_back(s);
  }
  RequestSample silent;  // special tokens only: no text chunk
  silent.e2e_ms = 100;
  silent.prompt_tokens = 3;
  silent.completion_tokens = 4;
  silent.finish_reason = "length";
  level.samples.push_back(silent);
  summarize_level(level);
  EXPECT_EQ(level.generated_tokens, 20);
  EXPECT_EQ(level.prompt_tokens, 9);
  EXPECT_EQ(level.n_finished_by_length, 2);
  EXPECT_EQ(level.n_without_text, 1);
  EXPECT_EQ(level.ttft_ms.n, 2);
  EXPECT_EQ(level.e2e_ms.n, 3);
  EXPECT_DOUBLE_EQ(level.aggregate_tokens_per_second, 10);
  EXPECT_DOUBLE_EQ(level.ttft_ms.p50, 15);
  EXPECT_EQ(level.itl_ms.n, 6);
  EXPECT_DOUBLE_EQ(level.itl_ms.p50, 5);
  EXPECT_DOUBLE_EQ(level.stream_tokens_per_second_mean, 55);
  EXPECT_DOUBLE_EQ(level.aggregate_decode_tokens_per_second, 14.0 / 4);  // 2 x (8 - 1) tokens
  EXPECT_DOUBLE_EQ(level.tokens_per_chunk, 2);  // of the requests with text
  ASSERT_TRUE(level.server_predicted_per_second_mean.has_value());
  EXPECT_DOUBLE_EQ(*level.server_predicted_per_second_mean, 60);
}

// --- the real binary against a real server ----------------------------------------------------

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// GET `target` over a plain socket (HTTP/1.0: the body ends when the server closes).
std::string http_get(uint16_t port, const std::string& target) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), 0) == (ssize_t)request.size()) {
      char buf[4096];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) response.append(buf, (size_t)n);
    }
  }
  ::close(fd);
  return response;
}

class BenchServerCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("velocity-bench-server-test-" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    model_ = new std::string((*dir_ / "tiny.gguf").string());
    const Result r = run({"synth", "--arch", "llama", "--preset", "tiny", "--type", "Q8_0", "-o", *model_});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete model_;
  }

  void TearDown() override {
    if (server_pid_ > 0) {  // a failed test left it running
      ::kill(server_pid_, SIGKILL);
      ::waitpid(server_pid_, nullptr, 0);
    }
  }

  static Result run(const std::vector<std::string>& args) {
    std::string command = shell_quote(VELOCITY_BINARY);
    for (const auto& a : args) command.append(" ").append(shell_quote(a));
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = info ? info->name() : "setup";
    const fs::path out = *dir_ / (name + ".stdout");
    const fs::path err = *dir_ / (name + ".stderr");
    command.append(" >").append(shell_quote(out.string())).append(" 2>").append(shell_quote(err.string()));
    const int status = std::system(command.c_str());
    Result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }

  // Starts `velocity serve` of `model` (named "tiny") on an ephemeral port; waits until it is ready.
  void start_server(const std::string& model, const std::vector<std::string>& extra) {
    server_log_ = *dir_ / "serve.stderr";
    fs::remove(server_log_);
    std::vector<std::string> args = {VELOCITY_BINARY, "serve", "-m", model, "--name", "tiny", "--port", "0", "-t", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    server_pid_ = ::fork();
    ASSERT_GE(server_pid_, 0);
    if (server_pid_ == 0) {
      const std::string log = server_log_.string();
      if (!std::freopen(log.c_str(), "w", stderr) || !std::freopen("/dev/null", "w", stdout)) ::_exit(127);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const std::regex listening(R"(listening on http://127\.0\.0\.1:(\d+))");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::string log;
    while (std::chrono::steady_clock::now() < deadline) {
      log = read_file(server_log_);
      std::smatch m;
      if (std::regex_search(log, m, listening) && log.find("' ready") != std::string::npos) {
        port_ = (uint16_t)std::stoi(m[1].str());
        return;
      }
      int status = 0;
      if (::waitpid(server_pid_, &status, WNOHANG) == server_pid_) {
        server_pid_ = -1;
        FAIL() << "velocity serve exited early:\n" << log;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "velocity serve did not get ready:\n" << log;
  }

  // SIGTERM; returns the exit code (-1 when killed by a signal).
  int stop_server() {
    ::kill(server_pid_, SIGTERM);
    int status = 0;
    ::waitpid(server_pid_, &status, 0);
    server_pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // The value of `family{model="tiny"}` in /metrics.
  double metric(const std::string& family) {
    const std::string text = http_get(port_, "/metrics");
    const std::regex line("\n" + family + R"(\{model="tiny"\} ([0-9.e+]+))");
    std::smatch m;
    if (!std::regex_search(text, m, line)) {
      ADD_FAILURE() << family << " not in /metrics:\n" << text;
      return -1;
    }
    return std::stod(m[1].str());
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  static fs::path* dir_;
  static std::string* model_;
  pid_t server_pid_ = -1;
  uint16_t port_ = 0;
  fs::path server_log_;
};

fs::path* BenchServerCliTest::dir_ = nullptr;
std::string* BenchServerCliTest::model_ = nullptr;

TEST_F(BenchServerCliTest, JsonReportMatchesTheServersCounts) {
  ASSERT_NO_FATAL_FAILURE(start_server(*model_, {"--slots", "4"}));
  const Result r =
      run({"bench", "--url", url(), "--concurrency", "1,4", "-n", "16", "-p", "8", "--no-warmup", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"], "tiny");  // the first (only) model of /v1/models
  EXPECT_EQ(j["endpoint"], "/v1/completions");
  EXPECT_EQ(j["n_gen"], 16);
  ASSERT_EQ(j["levels"].size(), 2u);
  int64_t generated = 0, prompt = 0;
  for (size_t i = 0; i < 2; ++i) {
    const auto& l = j["levels"][i];
    const int64_t c = i == 0 ? 1 : 4;
    EXPECT_EQ(l["concurrency"], c);
    EXPECT_EQ(l["requests"], 2 * c);
    ASSERT_EQ(l["samples"].size(), (size_t)(2 * c));
    int64_t level_tokens = 0;
    for (const auto& s : l["samples"]) {
      const int64_t n = s["completion_tokens"];
      EXPECT_GE(n, 1);
      EXPECT_LE(n, 16);
      // A random-weight model often samples special tokens, which stream no text.
      EXPECT_LE(s["text_chunks"].get<int64_t>(), n);
      if (!s["ttft_ms"].is_null()) {
        EXPECT_GT(s["ttft_ms"].get<double>(), 0);
      }
      EXPECT_GT(s["e2e_ms"].get<double>(), 0);
      EXPECT_GT(s["prompt_tokens"].get<int64_t>(), 0);
      EXPECT_GT(s["server_predicted_per_second"].get<double>(), 0);
      level_tokens += n;
      prompt += s["prompt_tokens"].get<int64_t>();
    }
    EXPECT_EQ(l["generated_tokens"], level_tokens);
    generated += level_tokens;
    EXPECT_GT(l["wall_s"].get<double>(), 0);
    EXPECT_GT(l["aggregate_tokens_per_second"].get<double>(), 0);
    EXPECT_GT(l["server_predicted_per_second"].get<double>(), 0);
    EXPECT_LE(l["e2e_ms"]["p50"].get<double>(), l["e2e_ms"]["p99"].get<double>());
  }
  EXPECT_TRUE(j["levels"][0]["speedup_vs_concurrency1"] == 1.0);
  EXPECT_GT(j["levels"][1]["speedup_vs_concurrency1"].get<double>(), 0);
  // The client's counts are the server's.
  EXPECT_EQ(metric("velocity_generated_tokens_total"), (double)generated);
  EXPECT_EQ(metric("velocity_prompt_tokens_total"), (double)prompt);
  EXPECT_EQ(metric("velocity_requests_total"), 10.0);
  EXPECT_EQ(stop_server(), 0) << read_file(server_log_);
}

TEST_F(BenchServerCliTest, ServerErrorsReachTheUser) {
  ASSERT_NO_FATAL_FAILURE(start_server(*model_, {"--slots", "1"}));
  // A model the server does not have.
  Result r = run({"bench", "--url", url(), "-m", "nope", "--concurrency", "1", "-n", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("velocity: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("HTTP 404"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;
  // Chat on a model without a chat template.
  r = run({"bench", "--url", url(), "--chat", "--concurrency", "1", "-n", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("HTTP 400"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("chat template"), std::string::npos) << r.err;
  EXPECT_EQ(stop_server(), 0) << read_file(server_log_);
}

// The demo model is trained: its tokens are text, so every request has TTFT, ITL and a rate.
TEST_F(BenchServerCliTest, DemoModelTextChatAndFormats) {
  const fs::path demo = fs::path(VELOCITY_SOURCE_DIR) / "models" / "demo" / "demo.gguf";
  if (!fs::exists(demo)) GTEST_SKIP() << demo << " is absent";
  ASSERT_NO_FATAL_FAILURE(start_server(demo.string(), {"--slots", "2"}));
  Result r = run({"bench", "--url", url(), "--concurrency", "1,2", "-n", "16", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["levels"].size(), 2u);
  for (const auto& l : j["levels"]) {
    EXPECT_EQ(l["without_text"], 0);
    for (const auto& s : l["samples"]) {
      EXPECT_GT(s["ttft_ms"].get<double>(), 0);
      EXPECT_GE(s["e2e_ms"].get<double>(), s["ttft_ms"].get<double>());
      EXPECT_GE(s["text_chunks"].get<int64_t>(), 1);
    }
    EXPECT_GT(l["ttft_ms"]["p50"].get<double>(), 0);
    EXPECT_LE(l["ttft_ms"]["p50"].get<double>(), l["ttft_ms"]["p99"].get<double>());
    EXPECT_GT(l["itl_ms"]["n"].get<int64_t>(), 0);
    EXPECT_LE(l["itl_ms"]["p50"].get<double>(), l["itl_ms"]["p90"].get<double>());
    EXPECT_GT(l["stream_tokens_per_second"]["mean"].get<double>(), 0);
    EXPECT_GE(l["tokens_per_chunk"].get<double>(), 1.0);
  }
  r = run({"bench", "--url", url(), "-m", "tiny", "--concurrency", "2", "--requests", "3", "-n", "4", "--chat"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("/v1/chat/completions"), std::string::npos) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\n\| 2 \| 3 \| [0-9.]+ \| \d+ \| )"))) << r.out;
  // Every percentile column names what it measures.
  EXPECT_NE(r.out.find("| TTFT ms p50 | TTFT ms p90 | TTFT ms p99 | ITL ms p50 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("| p90 |"), std::string::npos) << r.out;
  r = run({"bench", "--url", url() + "/", "--concurrency", "1", "--requests", "1", "-n", "2", "-o", "csv"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("url,model,endpoint,")) << r.out;
  EXPECT_NE(r.out.find("\nhttp://127.0.0.1:" + std::to_string(port_) + "/,tiny,/v1/completions,32,2,1,1,"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(stop_server(), 0) << read_file(server_log_);
}

TEST_F(BenchServerCliTest, WrongApiKey) {
  ASSERT_NO_FATAL_FAILURE(start_server(*model_, {"--api-key", "secret"}));
  Result r = run({"bench", "--url", url(), "--api-key", "wrong", "--concurrency", "1", "-n", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("HTTP 401"), std::string::npos) << r.err;
  r = run({"bench", "--url", url(), "--api-key", "secret", "--concurrency", "1", "--requests", "1", "-n", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(stop_server(), 0) << read_file(server_log_);
}

TEST_F(BenchServerCliTest, UnreachableServer) {
  // Port 1 on loopback: nothing listens there (binding it needs root, and no test does).
  const Result r = run({"bench", "--url", "http://127.0.0.1:1", "-n", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("velocity: error: cannot connect to http://127.0.0.1:1"), std::string::npos) << r.err;
}

TEST_F(BenchServerCliTest, BadCommandLines) {
  Result r = run({"bench", "--url", "ftp://127.0.0.1:8080"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad --url 'ftp://127.0.0.1:8080'"), std::string::npos) << r.err;
  r = run({"bench", "--url", "http://127.0.0.1:8080", "-b", "1,8"});  // raw-bench flags do not apply
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"bench", "--url", "http://127.0.0.1:8080", "-n", "8,16"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("one value"), std::string::npos) << r.err;
  r = run({"bench", "--concurrency", "4", "-m", *model_});  // server flags need --url
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"bench"});  // neither a model nor a URL
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--model"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace velocity::tools
