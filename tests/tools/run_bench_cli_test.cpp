// `velocity run` and `velocity bench` through the real binary (VELOCITY_BINARY), on a tiny llama
// written by `velocity synth`: output, summaries, formats and exit codes
// (0 success, 1 velocity::Error with "velocity: error: ...", 2 bad command line).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tools/bench.h"
#include "tools/run_cli.h"

namespace {

namespace fs = std::filesystem;

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

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class RunBenchCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("velocity-run-bench-test-" + std::to_string(::getpid())));
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

  static Result run(const std::vector<std::string>& args) {
    std::string command = shell_quote(VELOCITY_BINARY);
    for (const auto& a : args) command.append(" ").append(shell_quote(a));
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()
                                 ? ::testing::UnitTest::GetInstance()->current_test_info()->name()
                                 : "setup";
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

  static fs::path* dir_;
  static std::string* model_;
};

fs::path* RunBenchCliTest::dir_ = nullptr;
std::string* RunBenchCliTest::model_ = nullptr;

TEST_F(RunBenchCliTest, RunStreamsTextAndPrintsTheSummary) {
  const Result r = run({"run", "-m", *model_, "-p", "Hello there", "-n", "12", "--seed", "42", "--ignore-eos", "-t", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  const std::regex summary(R"(prompt: (\d+) tokens, ([0-9.]+) tok/s \| generated: (\d+) tokens, ([0-9.]+) tok/s \| seed: 42 \| finish: length \(n_predict\))");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, summary)) << r.err;
  EXPECT_GT(std::stoi(m[1].str()), 0);
  EXPECT_GT(std::stod(m[2].str()), 0);
  EXPECT_EQ(m[3].str(), "12");
  EXPECT_GT(std::stod(m[4].str()), 0);
}

TEST_F(RunBenchCliTest, RunSeedsAndGreedy) {
  auto text = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"run", "-m", *model_, "-p", "Once upon a time", "-n", "24", "--ignore-eos", "-t", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  EXPECT_EQ(text({"--seed", "1"}), text({"--seed", "1"}));
  EXPECT_NE(text({"--seed", "1", "--temp", "1.5", "--top-k", "0", "--min-p", "0"}),
            text({"--seed", "2", "--temp", "1.5", "--top-k", "0", "--min-p", "0"}));
  // Greedy does not depend on the seed.
  EXPECT_EQ(text({"--temp", "0", "--seed", "1"}), text({"--temp", "0", "--seed", "2"}));
  // A random seed is drawn and reported when none is given.
  const Result r = run({"run", "-m", *model_, "-p", "x", "-n", "2", "-t", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(seed: \d+)"))) << r.err;
}

TEST_F(RunBenchCliTest, RunStopString) {
  const Result full = run({"run", "-m", *model_, "-p", "stop", "-n", "40", "--temp", "0", "--ignore-eos", "-t", "1"});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  // The greedy text minus run's final newline; a stop string from its middle (ASCII only, so
  // that the argument is a whole character).
  const std::string text = full.out.substr(0, full.out.size() - 1);
  size_t at = std::string::npos;
  for (size_t i = text.size() / 3; i + 2 < text.size(); ++i) {
    if ((unsigned char)text[i] < 0x80 && (unsigned char)text[i + 1] < 0x80 && text[i] != '\n' && text[i + 1] != '\n') {
      at = i;
      break;
    }
  }
  if (at == std::string::npos) GTEST_SKIP() << "no ASCII pair in the greedy text";
  const std::string stop = text.substr(at, 2);
  const Result r = run({"run", "-m", *model_, "-p", "stop", "-n", "40", "--temp", "0", "--ignore-eos", "-t", "1", "--stop", stop});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, text.substr(0, text.find(stop)) + "\n");
  EXPECT_TRUE(contains(r.err, "finish: stop (stop string)")) << r.err;
}

TEST_F(RunBenchCliTest, RunErrors) {
  // No model: the bundled demo model, here pointed at a missing file.
  setenv("VELOCITY_DEMO_MODEL", "/nonexistent/demo.gguf", 1);
  Result r = run({"run", "-p", "x"});
  unsetenv("VELOCITY_DEMO_MODEL");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "/nonexistent/demo.gguf")) << r.err;
  r = run({"run", "-m", *model_});  // no prompt
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"run", "-m", *model_, "-p", "x", "--no-such-flag"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"run", "-m", *model_, "-p", "x", "--temp", "-1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"run", "-m", *model_, "-p", "x", "--top-p", "abc"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"run", "-m", *model_, "-p", "x", "--cache-type-k", "q6_k"});
  EXPECT_EQ(r.exit_code, 2) << r.err;

  r = run({"run", "-m", (*dir_ / "missing.gguf").string(), "-p", "x"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "velocity: error:")) << r.err;
  EXPECT_TRUE(contains(r.err, "missing.gguf")) << r.err;

  // The synthetic model has no chat template.
  r = run({"run", "-m", *model_, "-p", "x", "--chat"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "chat template")) << r.err;

  // A prompt longer than the context.
  r = run({"run", "-m", *model_, "-p", std::string(64, 'a') + " " + std::string(64, 'b'), "--ctx", "4"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "context")) << r.err;
}

TEST_F(RunBenchCliTest, BenchJson) {
  const Result r = run({"bench", "-m", *model_, "-p", "32", "-n", "8", "-r", "2", "--batch", "1,2", "--depth", "0,16",
                        "-o", "json", "-t", "1", "--bandwidth-mib", "32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out;
  EXPECT_EQ(j["model"]["architecture"], "llama");
  EXPECT_EQ(j["model"]["type"], "Q8_0");
  EXPECT_GT(j["model"]["n_params"].get<double>(), 0);
  EXPECT_GT(j["model"]["n_matmul_params"].get<double>(), 0);
  EXPECT_GT(j["model"]["bytes_per_token"].get<double>(), 0);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_FALSE(j["cpu"].get<std::string>().empty());
  EXPECT_FALSE(j["version"].get<std::string>().empty());
  EXPECT_GT(j["bandwidth"]["bytes_per_second"].get<double>(), 0);
  ASSERT_EQ(j["tests"].size(), 6u);  // per depth: pp32, tg8, tg8 b2
  std::vector<std::string> names;
  for (const auto& t : j["tests"]) {
    names.push_back(t["name"]);
    EXPECT_EQ(t["repetitions"], 2);
    EXPECT_EQ(t["samples_ms"].size(), 2u);
    EXPECT_GT(t["tokens_per_second"].get<double>(), 0) << t.dump();
    EXPECT_GE(t["tokens_per_second_sd"].get<double>(), 0);
    EXPECT_GT(t["gflops_per_second"].get<double>(), 0);
    if (t["kind"] == "tg") {
      EXPECT_GT(t["bound_fraction"].get<double>(), 0);
      if (t["batch"] == 2) EXPECT_GT(t["speedup_vs_batch1"].get<double>(), 0);
      else EXPECT_TRUE(t["speedup_vs_batch1"].is_null());
    } else {
      EXPECT_TRUE(t["bound_fraction"].is_null());
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"pp32", "tg8", "tg8 b2", "pp32 @ d16", "tg8 @ d16", "tg8 @ d16 b2"}));
}

TEST_F(RunBenchCliTest, BenchMarkdownAndCsv) {
  Result r = run({"bench", "-m", *model_, "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--bandwidth-mib", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "| model | size | params |")) << r.out;
  EXPECT_TRUE(contains(r.out, "| pp16 |")) << r.out;
  EXPECT_TRUE(contains(r.out, "| tg4 |")) << r.out;
  EXPECT_TRUE(contains(r.out, "GB/s")) << r.out;

  r = run({"bench", "-m", *model_, "-p", "16", "-n", "0", "-r", "1", "-t", "1", "--bandwidth-mib", "0", "-o", "csv"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string header, row, extra;
  std::getline(lines, header);
  std::getline(lines, row);
  EXPECT_FALSE(std::getline(lines, extra)) << r.out;  // one test: pp16 only
  EXPECT_EQ(header.rfind("model,architecture,type,", 0), 0u) << header;
  EXPECT_TRUE(contains(row, ",pp16,pp,16,0,0,1,1,")) << row;
}

// Rows come as they finish (BenchOptions::on_progress): the header first with no test, then one
// more test per call, each batched one with its speedup over batch 1 already set; the status
// line names the bandwidth probe before it runs.
TEST_F(RunBenchCliTest, BenchReportsEachTestAsItFinishes) {
  velocity::tools::BenchOptions o;
  o.model_path = *model_;
  o.n_prompt = {8};
  o.n_gen = {3};
  o.batch = {1, 2};
  o.repetitions = 1;
  o.n_threads = 1;
  o.bandwidth_bytes = 16 << 20;
  std::vector<size_t> seen;
  std::vector<std::string> status;
  bool speedup_in_time = false;
  o.on_status = [&](const std::string& what) { status.push_back(what); };
  o.on_progress = [&](const velocity::tools::BenchReport& r) {
    seen.push_back(r.tests.size());
    if (!r.tests.empty() && r.tests.back().batch == 2) speedup_in_time = r.tests.back().speedup_vs_batch1.has_value();
    if (r.tests.empty()) {
      EXPECT_TRUE(r.bandwidth_bytes_per_second.has_value());
    }
  };
  const velocity::tools::BenchReport report = velocity::tools::run_bench(o);
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2, 3}));  // header, pp8, tg3, tg3 b2
  EXPECT_TRUE(speedup_in_time);
  ASSERT_GE(status.size(), 2u);
  EXPECT_TRUE(contains(status[0], "bandwidth")) << status[0];
  EXPECT_TRUE(contains(status[1], "loading")) << status[1];
  ASSERT_EQ(report.tests.size(), 3u);
  // The CLI prints the same rows (stdout) and the status lines (stderr).
  Result r = run({"bench", "-m", *model_, "-p", "8", "-n", "3", "-r", "1", "-t", "1", "--bandwidth-mib", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "velocity: measuring the memory read bandwidth")) << r.err;
  EXPECT_TRUE(contains(r.out, "| tg3 |")) << r.out;
}

TEST_F(RunBenchCliTest, BenchErrors) {
  Result r = run({"bench", "-p", "8"});  // no model
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"bench", "-m", *model_, "-o", "xml"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"bench", "-m", *model_, "--batch", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"bench", "-m", *model_, "-r", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"bench", "-m", *model_, "-p", "0", "-n", "0", "--bandwidth-mib", "0"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "nothing to measure")) << r.err;
  r = run({"bench", "-m", (*dir_ / "missing.gguf").string(), "--bandwidth-mib", "0"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "missing.gguf")) << r.err;
}

TEST(RunCli, ChatTemplateOneUserMessage) {
  velocity::tokenizer::Vocab vocab;
  vocab.tokens = {"<s>", "</s>", "a"};
  vocab.bos = 0;
  vocab.eos = 1;
  vocab.chat_template =
      "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}"
      "{% if add_generation_prompt %}[assistant]{% endif %}";
  EXPECT_EQ(velocity::tools::apply_chat_template(vocab, "hi \"there\"", "m.gguf"), "<s>[user]hi \"there\"</s>[assistant]");
  vocab.chat_template.clear();
  EXPECT_THROW(velocity::tools::apply_chat_template(vocab, "hi", "m.gguf"), velocity::Error);
  vocab.chat_template = "{{ raise_exception('no') }}";
  EXPECT_THROW(velocity::tools::apply_chat_template(vocab, "hi", "m.gguf"), velocity::Error);
  // --chat-template: a built-in name (or Jinja) replaces the vocabulary's, which may be absent.
  vocab.chat_template.clear();
  EXPECT_EQ(velocity::tools::apply_chat_template(vocab, "hi", "m.gguf", "chatml"),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(velocity::tools::apply_chat_template(vocab, "hi", "m.gguf", "{{ bos_token }}{{ messages[0].content }}"),
            "<s>hi");
  EXPECT_THROW(velocity::tools::apply_chat_template(vocab, "hi", "m.gguf", "chatm1"), velocity::Error);
}

TEST(RunCli, EscapesAndCacheTypes) {
  using velocity::tools::process_escapes;
  EXPECT_EQ(process_escapes("a\\nb\\tc\\\\d\\\"e\\'f\\qg\\"), "a\nb\tc\\d\"e'f\\qg\\");
  EXPECT_EQ(velocity::tools::parse_cache_type("q8_0"), velocity::DType::Q8_0);
  EXPECT_EQ(velocity::tools::parse_cache_type("F16"), velocity::DType::F16);
  EXPECT_THROW(velocity::tools::parse_cache_type("q4_k"), velocity::Error);
}

}  // namespace
