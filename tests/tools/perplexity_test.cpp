// `velocity perplexity`: the window plan; perplexity on a tiny synth llama against a brute-force
// computation written here from whole-window Model::forward logits (one forward and one chunked
// path); KL of a model against itself (0) and against another quantisation (> 0); the CLI's
// output and errors through the real binary (VELOCITY_BINARY); and the bundled demo model
// (models/demo/) against the PyTorch reference recorded when it was trained.
#include "tools/perplexity.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/batch.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tools/synth.h"

namespace velocity::tools {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Plain English of a few hundred tokens under the synth vocabulary.
std::string sample_text(int n_sentences) {
  static const char* kSentences[] = {
      "In the beginning God created the heaven and the earth. ",
      "And the earth was without form, and void; and darkness was upon the face of the deep. ",
      "A lawyer is one skilled in circumvention of the law, 1881 edition. ",
      "Numbers like 3.14159 and 42 appear, with punctuation: (yes!) -- and \"quotes\". ",
      "The quick brown fox jumps over the lazy dog again and again.\n",
  };
  std::string text;
  for (int i = 0; i < n_sentences; ++i) text += kSentences[i % 5];
  return text;
}

class PerplexityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("velocity-perplexity-test-" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    for (const char* type : {"F16", "Q4_0"}) {
      SynthOptions o;
      o.arch = "llama";
      o.preset = "tiny";
      o.type = type;
      o.seed = 7;
      o.output = (*dir_ / (std::string("tiny-") + type + ".gguf")).string();
      synth(o);
    }
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static std::string path(const std::string& name) { return (*dir_ / name).string(); }
  static std::string f16() { return path("tiny-F16.gguf"); }
  static std::string q4_0() { return path("tiny-Q4_0.gguf"); }

  static std::string text_file(const std::string& name, const std::string& text) {
    write_file(*dir_ / name, text);
    return path(name);
  }

  struct Result {
    int exit_code = -1;
    std::string out, err;
  };
  static Result run_binary(const std::vector<std::string>& args) {
    std::string command = shell_quote(VELOCITY_BINARY);
    for (const auto& a : args) command.append(" ").append(shell_quote(a));
    const fs::path out = *dir_ / "cli.stdout";
    const fs::path err = *dir_ / "cli.stderr";
    command.append(" >").append(shell_quote(out.string())).append(" 2>").append(shell_quote(err.string()));
    const int status = std::system(command.c_str());
    Result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }

  static fs::path* dir_;
};

fs::path* PerplexityTest::dir_ = nullptr;

// The definition written out independently of plan_perplexity_windows: windows at 0, stride, ...,
// each forwarded whole with every position's logits; a token is scored by the first window that
// predicts it from at least one token of context. Mean NLL in long double.
struct BruteForce {
  double mean_nll = 0;
  int64_t n_scored = 0;
};

BruteForce brute_force(const std::string& model_path, const std::string& text, int64_t n_ctx, int64_t stride) {
  model::LoadOptions load;
  load.n_ctx = n_ctx;
  load.max_batch = n_ctx;
  load.max_logits = n_ctx;
  load.n_threads = 1;
  const auto model = model::Model::load(model_path, load);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), model_path));
  const std::vector<int32_t> ids = tok.encode(text, false, false);
  const int64_t n = static_cast<int64_t>(ids.size());
  const size_t n_vocab = static_cast<size_t>(model->config().n_vocab);
  std::set<int64_t> scored;
  long double sum = 0;
  for (int64_t start = 0; start + 1 < n; start += stride) {
    const int64_t length = std::min(n_ctx, n - start);
    engine::Batch batch;
    for (int64_t p = 0; p < length; ++p)
      batch.add(ids[static_cast<size_t>(start + p)], static_cast<int32_t>(p), 0, true);
    const std::span<const float> logits = model->forward(batch);
    for (int64_t p = 1; p < length; ++p) {
      const int64_t token_index = start + p;
      if (scored.count(token_index)) continue;
      scored.insert(token_index);
      const float* row = logits.data() + static_cast<size_t>(p - 1) * n_vocab;
      long double max = row[0];
      for (size_t v = 0; v < n_vocab; ++v) max = std::max<long double>(max, row[v]);
      long double z = 0;
      for (size_t v = 0; v < n_vocab; ++v) z += std::exp(static_cast<long double>(row[v]) - max);
      sum += max + std::log(z) - row[static_cast<size_t>(ids[static_cast<size_t>(token_index)])];
    }
  }
  return {static_cast<double>(sum / static_cast<long double>(scored.size())), static_cast<int64_t>(scored.size())};
}

TEST(PerplexityWindows, PlanCoversEveryTokenOnce) {
  // stride == ctx: each window skips its own first token.
  auto w = plan_perplexity_windows(10, 4, 4);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].start, 0);
  EXPECT_EQ(w[0].length, 4);
  EXPECT_EQ(w[0].first_scored, 1);
  EXPECT_EQ(w[1].start, 4);
  EXPECT_EQ(w[1].first_scored, 1);
  EXPECT_EQ(w[2].start, 8);
  EXPECT_EQ(w[2].length, 2);
  EXPECT_EQ(w[2].first_scored, 1);
  // stride < ctx: later windows score only their last `stride` positions; tokens 1..N-1 once.
  for (int64_t n : {2, 3, 9, 10, 11, 37}) {
    for (int64_t ctx : {2, 4, 7}) {
      for (int64_t stride = 1; stride <= ctx; ++stride) {
        std::vector<int> hits(static_cast<size_t>(n), 0);
        for (const auto& win : plan_perplexity_windows(n, ctx, stride)) {
          EXPECT_GE(win.first_scored, 1);
          EXPECT_LE(win.length, ctx);
          if (win.start > 0 && stride < ctx && win.start + ctx <= n) {
            EXPECT_EQ(win.first_scored, ctx - stride);
          }
          for (int64_t p = win.first_scored; p < win.length; ++p) hits[static_cast<size_t>(win.start + p)]++;
        }
        EXPECT_EQ(hits[0], 0);
        for (int64_t i = 1; i < n; ++i) {
          if (stride < ctx) {
            EXPECT_EQ(hits[static_cast<size_t>(i)], 1)
                << "n " << n << " ctx " << ctx << " stride " << stride << " token " << i;
          } else {
            EXPECT_EQ(hits[static_cast<size_t>(i)], i % ctx == 0 ? 0 : 1)
                << "n " << n << " ctx " << ctx << " token " << i;
          }
        }
      }
    }
  }
  EXPECT_TRUE(plan_perplexity_windows(1, 4, 4).empty());
  EXPECT_TRUE(plan_perplexity_windows(0, 4, 4).empty());
  EXPECT_THROW(plan_perplexity_windows(10, 1, 1), Error);
  EXPECT_THROW(plan_perplexity_windows(10, 4, 0), Error);
  EXPECT_THROW(plan_perplexity_windows(10, 4, 5), Error);
}

TEST_F(PerplexityTest, MatchesBruteForce) {
  const std::string text = sample_text(5);
  const std::string file = text_file("brute.txt", text);
  for (const auto& [ctx, stride] : std::vector<std::pair<int64_t, int64_t>>{{32, 32}, {32, 8}, {48, 40}}) {
    PerplexityOptions o;
    o.model_path = f16();
    o.text_path = file;
    o.n_ctx = ctx;
    o.stride = stride;
    o.n_threads = 1;
    const PerplexityReport r = run_perplexity(o, nullptr);
    const BruteForce expected = brute_force(f16(), text, ctx, stride);
    EXPECT_GT(r.n_tokens, 3 * ctx);
    EXPECT_EQ(r.n_scored, expected.n_scored) << "ctx " << ctx << " stride " << stride;
    EXPECT_NEAR(r.model.nll.mean, expected.mean_nll, 1e-5 * expected.mean_nll) << "ctx " << ctx << " stride " << stride;
    EXPECT_NEAR(r.model.perplexity, std::exp(r.model.nll.mean), 1e-9 * r.model.perplexity);
    EXPECT_GT(r.model.nll.se, 0);
    EXPECT_NEAR(r.model.perplexity_se, r.model.perplexity * r.model.nll.se, 1e-9);
    EXPECT_FALSE(r.base.has_value());
  }
}

// Windows longer than one forward (512 tokens) go through the KV cache in chunks.
TEST_F(PerplexityTest, ChunkedWindowMatchesBruteForce) {
  const std::string text = sample_text(12);
  const std::string file = text_file("long.txt", text);
  PerplexityOptions o;
  o.model_path = f16();
  o.text_path = file;
  o.n_ctx = 600;
  o.n_threads = 2;
  const PerplexityReport r = run_perplexity(o, nullptr);
  ASSERT_GT(r.n_tokens, 600);
  const BruteForce expected = brute_force(f16(), text, 600, 600);
  EXPECT_EQ(r.n_scored, expected.n_scored);
  EXPECT_NEAR(r.model.nll.mean, expected.mean_nll, 1e-4 * expected.mean_nll);
}

TEST_F(PerplexityTest, KlAgainstItselfIsZero) {
  PerplexityOptions o;
  o.model_path = q4_0();
  o.kl_base_path = q4_0();
  o.text_path = text_file("kl-self.txt", sample_text(10));
  o.n_ctx = 64;
  o.n_threads = 1;
  const PerplexityReport r = run_perplexity(o, nullptr);
  ASSERT_TRUE(r.base.has_value());
  EXPECT_LT(r.kl.mean, 1e-12);
  EXPECT_DOUBLE_EQ(r.top1_agreement.mean, 1.0);
  EXPECT_DOUBLE_EQ(r.base->perplexity, r.model.perplexity);
}

TEST_F(PerplexityTest, KlAgainstAnotherQuantisationIsPositive) {
  PerplexityOptions o;
  o.model_path = q4_0();
  o.kl_base_path = f16();
  o.text_path = text_file("kl.txt", sample_text(10));
  o.n_ctx = 64;
  o.n_threads = 1;
  const PerplexityReport r = run_perplexity(o, nullptr);
  ASSERT_TRUE(r.base.has_value());
  EXPECT_GT(r.kl.mean, 1e-6);
  EXPECT_GT(r.kl.se, 0);
  // synth draws each type's weights on their own, so the two models are unrelated: any agreement.
  EXPECT_GE(r.top1_agreement.mean, 0.0);
  EXPECT_LT(r.top1_agreement.mean, 1.0);
  EXPECT_NE(r.base->perplexity, r.model.perplexity);
  // The base's perplexity is what a run of the base alone gives.
  PerplexityOptions alone = o;
  alone.model_path = f16();
  alone.kl_base_path.clear();
  EXPECT_NEAR(run_perplexity(alone, nullptr).model.perplexity, r.base->perplexity, 1e-9 * r.base->perplexity);
}

TEST_F(PerplexityTest, CliTextAndJson) {
  const std::string file = text_file("cli.txt", sample_text(8));
  Result r = run_binary({"perplexity", "-m", q4_0(), "-f", file, "--ctx", "32", "-t", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("perplexity "), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("windows"), std::string::npos) << r.err;  // the progress bar
  EXPECT_NE(r.err.find("ETA"), std::string::npos) << r.err;

  r = run_binary({"perplexity", "-m", q4_0(), "-f", file, "--ctx", "32", "--stride", "16", "--kl-base", f16(), "--json",
                  "-t", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["n_ctx"], 32);
  EXPECT_EQ(j["stride"], 16);
  EXPECT_EQ(j["n_scored"].get<int64_t>(), j["n_tokens"].get<int64_t>() - 1);
  EXPECT_GT(j["result"]["perplexity"].get<double>(), 1.0);
  EXPECT_GT(j["kl_mean"].get<double>(), 0.0);
  EXPECT_TRUE(j.contains("base_result"));
  EXPECT_TRUE(j.contains("top1_agreement"));
}

TEST_F(PerplexityTest, Errors) {
  const std::string good = text_file("good.txt", sample_text(4));
  auto expect_error = [&](const std::vector<std::string>& args, const std::string& needle) {
    const Result r = run_binary(args);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("velocity: error:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  };
  expect_error({"perplexity", "-m", path("missing.gguf"), "-f", good}, "missing.gguf");
  expect_error({"perplexity", "-m", q4_0(), "-f", path("missing.txt")}, "missing.txt");
  expect_error({"perplexity", "-m", q4_0(), "-f", text_file("empty.txt", "")}, "at least 2");
  expect_error({"perplexity", "-m", q4_0(), "-f", text_file("one.txt", "a")}, "at least 2");
  expect_error({"perplexity", "-m", q4_0(), "-f", good, "--ctx", "16", "--stride", "17"}, "stride");
  // Not a text file: a model given as the text, a directory, a device, bytes that are not UTF-8.
  expect_error({"perplexity", "-m", q4_0(), "-f", q4_0()}, "is not UTF-8 text (invalid bytes at offset");
  expect_error({"perplexity", "-m", q4_0(), "-f", q4_0()}, "this is a GGUF model file");
  expect_error({"perplexity", "-m", q4_0(), "-f", path("")}, "is a directory");
  expect_error({"perplexity", "-m", q4_0(), "-f", "/dev/null"}, "is not a regular file");
  expect_error({"perplexity", "-m", q4_0(), "-f", text_file("latin1.txt", "caf\xe9 au lait")},
               "invalid bytes at offset 3");
  expect_error({"perplexity", "-m", q4_0(), "-f", path("missing.txt")}, "No such file or directory");
  // Bad command line: exit 2.
  EXPECT_EQ(run_binary({"perplexity", "-m", q4_0()}).exit_code, 2);
  EXPECT_EQ(run_binary({"perplexity", "-m", q4_0(), "-f", good, "--ctx", "1"}).exit_code, 2);

  PerplexityOptions o;
  o.model_path = q4_0();
  o.text_path = path("empty.txt");
  EXPECT_THROW(run_perplexity(o, nullptr), Error);
}

// --- the bundled demo model -------------------------------------------------------------------

fs::path demo_dir() { return fs::path(VELOCITY_SOURCE_DIR) / "models" / "demo"; }

TEST_F(PerplexityTest, KlNeedsTheSameVocabulary) {
  const fs::path demo = demo_dir() / "demo.gguf";
  if (!fs::exists(demo)) GTEST_SKIP() << demo << " is absent";
  PerplexityOptions o;
  o.model_path = q4_0();
  o.kl_base_path = demo.string();  // 4096 tokens against the synth's 1280
  o.text_path = text_file("vocab.txt", sample_text(2));
  try {
    run_perplexity(o, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
  }
}

// velocity's Q8_0 demo model against PyTorch (float32, the saved float16 weights) on the
// committed held-out sample, windows of 256, stride 256: within 0.5%.
TEST(PerplexityDemo, MatchesThePyTorchReference) {
  const fs::path demo = demo_dir() / "demo.gguf";
  const fs::path sample = demo_dir() / "heldout-sample.txt";
  const fs::path reference = demo_dir() / "perplexity_reference.json";
  if (!fs::exists(demo)) GTEST_SKIP() << demo << " is absent (see models/demo/README.md)";
  ASSERT_TRUE(fs::exists(sample)) << sample;
  ASSERT_TRUE(fs::exists(reference)) << reference;
  const nlohmann::json ref = nlohmann::json::parse(read_file(reference));
  const nlohmann::json* expected = nullptr;
  for (const auto& r : ref.at("sample").at("results"))
    if (r.at("n_ctx") == 256 && r.at("stride") == 256) expected = &r;
  ASSERT_NE(expected, nullptr) << "no ctx 256 / stride 256 result in " << reference;

  PerplexityOptions o;
  o.model_path = demo.string();
  o.text_path = sample.string();
  o.n_ctx = 256;
  const PerplexityReport r = run_perplexity(o, nullptr);
  EXPECT_EQ(r.n_tokens, ref.at("sample").at("n_tokens").get<int64_t>()) << "the tokenizer differs from Hugging Face's";
  EXPECT_EQ(r.n_scored, expected->at("n_scored").get<int64_t>());
  const double want = expected->at("perplexity").get<double>();
  EXPECT_NEAR(r.model.perplexity, want, 0.005 * want) << "velocity " << r.model.perplexity << " vs PyTorch " << want;
}

}  // namespace
}  // namespace velocity::tools
