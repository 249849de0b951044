// The real `velocity` binary (VELOCITY_BINARY): exit codes and messages a user sees.
//   0 success, 1 velocity::Error ("velocity: error: <what>" on stderr), 2 bad command line,
//   70 a failed internal check ("velocity: internal error: <what> (a bug; please report it)"),
//   130 `velocity serve` stopped by a second SIGINT/SIGTERM.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "tools/synth.h"

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

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("velocity-cli-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `input`, when given, is written to a file and becomes the command's stdin.
  Result run(const std::vector<std::string>& args, const std::optional<std::string>& input = std::nullopt) {
    std::string command = shell_quote(VELOCITY_BINARY);
    // (appends one piece at a time: g++ 12 -Wrestrict misfires on `" >" + std::string`)
    for (const auto& a : args) command.append(" ").append(shell_quote(a));
    const fs::path out = dir_ / "stdout.txt";
    const fs::path err = dir_ / "stderr.txt";
    command.append(" >").append(shell_quote(out.string())).append(" 2>").append(shell_quote(err.string()));
    if (input) {
      const fs::path in = dir_ / "stdin.txt";
      std::ofstream(in, std::ios::binary) << *input;
      command.append(" <").append(shell_quote(in.string()));
    }
    const int status = std::system(command.c_str());
    Result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A tiny llama written by `velocity synth`.
  std::string synth_tiny(const std::string& name, const std::string& type = "Q8_0") {
    const std::string p = path(name);
    const Result r = run({"synth", "--arch", "llama", "--preset", "tiny", "--type", type, "-o", p});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return p;
  }

  fs::path dir_;
};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_F(CliTest, HelpAndVersion) {
  Result r = run({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "inspect")) << r.out;
  EXPECT_TRUE(contains(r.out, "synth")) << r.out;

  r = run({"inspect", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "--json")) << r.out;

  r = run({"synth", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "--split-max-size")) << r.out;

  r = run({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "velocity ")) << r.out;
}

TEST_F(CliTest, BadCommandLinesExit2) {
  Result r = run({});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  r = run({"no-such-command"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  r = run({"inspect"});  // missing FILE
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "file")) << r.err;
  r = run({"inspect", "--no-such-flag", "x.gguf"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  r = run({"synth", "--preset", "tiny", "-o", path("x.gguf")});  // missing --arch
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--arch")) << r.err;
  r = run({"synth", "--arch", "llama", "-o", path("x.gguf"), "--split-max-size", "lots"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_FALSE(fs::exists(path("x.gguf")));
}

// An option's value that is another option is a mistake (`--api-key --port 18616` once served on
// 8080 with the key "--port"); each occurrence takes one value (`-p 512 128` is not two sizes).
TEST_F(CliTest, OptionsDoNotSwallowTheNextOption) {
  Result r = run({"serve", "-m", path("none.gguf"), "--api-key", "--port", "18616"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--api-key: needs a value, but --port follows it")) << r.err;
  r = run({"run", "-m", path("none.gguf"), "--stop", "--temp", "0", "-p", "hi"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--stop: needs a value, but --temp follows it")) << r.err;
  r = run({"serve", "-m", path("none.gguf"), "--allowed-host", "--cors-origin=http://a.example"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "but --cors-origin follows it")) << r.err;
  r = run({"bench", "-m", path("none.gguf"), "-p", "512", "128"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "128")) << r.err;
  // Values that only look like options stay values; repeated options collect.
  r = run({"run", "-m", path("none.gguf"), "--stop", "-1", "--stop", "-x", "-p", "hi"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;  // parsed; then the missing model
  EXPECT_TRUE(contains(r.err, "none.gguf")) << r.err;
}

// A mistyped command or option names the nearest real one; a range error says the range in words
// (CLI11 printed DBL_MAX's 309 digits).
TEST_F(CliTest, MistakesNameTheNearestCommandOrOption) {
  Result r = run({"serv"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "unknown command 'serv' (did you mean 'serve'?)")) << r.err;
  EXPECT_TRUE(contains(r.err, "perplexity")) << r.err;  // the list of commands
  r = run({"benhc", "-m", path("none.gguf")});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "did you mean 'bench'?")) << r.err;
  r = run({"serve", "-m", path("none.gguf"), "--ctxsize", "5"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "unknown option '--ctxsize' (did you mean '--ctx-size'?)")) << r.err;
  r = run({"run", "-m", path("none.gguf"), "-p", "hi", "--tmp=0"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "unknown option '--tmp' (did you mean '--temp'?)")) << r.err;
  r = run({"inspect", "--zzzzzzzz", path("x.gguf")});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "unknown option '--zzzzzzzz'")) << r.err;
  EXPECT_FALSE(contains(r.err, "did you mean")) << r.err;
  r = run({"bench", "-m", path("none.gguf"), "--threads", "-1"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--threads: must be 0 or more, got -1")) << r.err;
  EXPECT_LT(r.err.size(), 200u) << r.err;
  r = run({"run", "-m", path("none.gguf"), "-p", "hi", "--repeat-penalty", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "must be more than 0, got 0")) << r.err;
}

// llama-server's common flags carry over to `velocity serve` where they mean the same.
TEST_F(CliTest, ServeTakesLlamaServerFlags) {
  Result r = run({"serve", "-m", path("none.gguf"), "-np", "2", "-ctk", "q8_0", "-ctv=q8_0", "--ctx-size", "128",
                  "-fa", "--jinja", "--alias", "x"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;  // parsed; then the missing model
  EXPECT_TRUE(contains(r.err, "none.gguf")) << r.err;
  r = run({"serve", "-m", path("none.gguf"), "-fa", "on", "--parallel", "4", "-ngl", "99", "--no-mmap"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  for (std::vector<std::string> cmd : {std::vector<std::string>{"run", "-p", "hi"}, {"bench"}, {"perplexity"}}) {
    cmd.insert(cmd.end(), {"-m", path("none.gguf"), "-ngl", "-3"});  // -ngl everywhere a model loads
    r = run(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd[0] << r.out << r.err;
    EXPECT_TRUE(contains(r.err, "--gpu-layers: must be 0 or more, got -3")) << cmd[0] << r.err;
  }
  // -np is --slots: its value is checked as the slots (before the file is read).
  std::ofstream(path("x.gguf")) << "not read";
  r = run({"serve", "-m", path("x.gguf"), "-np", "0"});
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "slots")) << r.err;
}

// The same name for the same thing: -m names the model in inspect too, and --messages - reads the
// conversation from stdin.
TEST_F(CliTest, ModelFlagAndStdinEverywhere) {
  const std::string demo = std::string(VELOCITY_SOURCE_DIR) + "/models/demo/demo.gguf";
  if (!fs::exists(demo)) GTEST_SKIP() << demo << " is absent";
  Result a = run({"inspect", "-m", demo}), b = run({"inspect", demo});
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_TRUE(contains(a.out, "architecture  llama")) << a.out;
  Result r = run({"inspect", "-m", demo, demo});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  r = run({"template", "--chat-template", "chatml", "--messages", "-"}, R"([{"role": "user", "content": "from stdin"}])");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "<|im_start|>user\nfrom stdin<|im_end|>")) << r.out;
}

TEST_F(CliTest, InspectMissingFile) {
  const std::string p = path("does-not-exist.gguf");
  const Result r = run({"inspect", p});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("velocity: error: ")) << r.err;
  EXPECT_TRUE(contains(r.err, p)) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(CliTest, InspectNotGguf) {
  const std::string p = path("notes.txt");
  std::ofstream(p) << "these are not the weights you are looking for\n";
  const Result r = run({"inspect", p});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("velocity: error: ")) << r.err;
  EXPECT_TRUE(contains(r.err, p)) << r.err;

  const std::string empty = path("empty.gguf");
  std::ofstream{empty};
  const Result e = run({"inspect", empty});
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_TRUE(contains(e.err, empty)) << e.err;
}

TEST_F(CliTest, InspectTruncatedFile) {
  const std::string p = synth_tiny("tiny.gguf");
  const auto size = fs::file_size(p);
  // Cut in the tensor data, then in the header.
  for (const uint64_t keep : {size - 1, size / 2, (uint64_t)100, (uint64_t)10}) {
    fs::resize_file(p, keep);
    const Result r = run({"inspect", p});
    EXPECT_EQ(r.exit_code, 1) << "kept " << keep << " bytes: " << r.out << r.err;
    EXPECT_TRUE(r.err.starts_with("velocity: error: ")) << r.err;
    EXPECT_TRUE(contains(r.err, p)) << "kept " << keep << " bytes: " << r.err;
  }
}

TEST_F(CliTest, SynthThenInspect) {
  const std::string p = path("tiny-q4_k_m.gguf");
  Result r = run({"synth", "--arch", "llama", "--preset", "tiny", "--type", "Q4_K_M", "-o", p, "--seed", "7"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, p)) << r.out;
  EXPECT_TRUE(contains(r.out, "MB/s")) << r.out;

  r = run({"inspect", p});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "architecture  llama")) << r.out;
  EXPECT_TRUE(contains(r.out, "bytes per token")) << r.out;
  EXPECT_TRUE(contains(r.out, "tok/s")) << r.out;

  r = run({"inspect", "--json", p});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_GT(j["summary"]["n_params"].get<uint64_t>(), 0u);
  EXPECT_GT(j["summary"]["bytes_per_token"].get<uint64_t>(), 0u);

  r = run({"inspect", "--all", p});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CliTest, SynthSplitWithSizeSuffix) {
  // Tiny llama in F32 is several MB; 100K (decimal) gives several shards.
  const std::string p = path("split.gguf");
  Result r = run({"synth", "--arch", "llama", "--preset", "tiny", "--type", "F32", "-o", p, "--split-max-size", "100K"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string first = path("split-00001-of-");
  ASSERT_TRUE(contains(r.out, first)) << r.out;
  const size_t at = r.out.find(first);
  const std::string first_path = r.out.substr(at, r.out.find('\n', at) - at);
  r = run({"inspect", "--json", first_path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["file"]["n_shards"].get<int>(), 1);
  // A shard holds at most 100 kB of tensor data, unless it is one tensor larger than that.
  for (const auto& shard : j["shards"]) {
    const uint64_t data_bytes = shard["file_size"].get<uint64_t>() - shard["data_offset"].get<uint64_t>();
    if (data_bytes > 100000) {
      EXPECT_EQ(shard["n_tensors"], 1) << shard.dump();
    }
  }
}

TEST_F(CliTest, SynthHeaderOnly) {
  const std::string p = path("header.gguf");
  Result r = run({"synth", "--arch", "llama", "--preset", "tiny", "--header-only", "-o", p});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = run({"inspect", "--json", p});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["file"]["header_only"], true);
}

TEST_F(CliTest, SynthUnknownNamesListTheValidOnes) {
  Result r = run({"synth", "--arch", "gpt-17", "-o", path("x.gguf")});
  EXPECT_NE(r.exit_code, 0);
  for (const auto& arch : velocity::tools::synth_archs()) EXPECT_TRUE(contains(r.err, arch)) << r.err;

  r = run({"synth", "--arch", "llama", "--preset", "gigantic-nonexistent", "-o", path("x.gguf")});
  EXPECT_NE(r.exit_code, 0);
  for (const auto& preset : velocity::tools::synth_presets("llama")) EXPECT_TRUE(contains(r.err, preset)) << r.err;

  r = run({"synth", "--arch", "llama", "--type", "Q9_X", "-o", path("x.gguf")});
  EXPECT_NE(r.exit_code, 0);
  for (const char* type : {"Q8_0", "Q4_K_M", "MXFP4_MOE"}) EXPECT_TRUE(contains(r.err, type)) << r.err;
  EXPECT_FALSE(fs::exists(path("x.gguf")));
}

TEST_F(CliTest, SynthListPresets) {
  Result r = run({"synth", "--list-presets"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const auto& arch : velocity::tools::synth_archs()) EXPECT_TRUE(contains(r.out, arch + ": ")) << r.out;
  EXPECT_TRUE(contains(r.out, "tiny")) << r.out;

  r = run({"synth", "--arch", "qwen3moe", "--list-presets"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "qwen3moe: ")) << r.out;
  EXPECT_FALSE(contains(r.out, "llama: ")) << r.out;
}

TEST_F(CliTest, SynthUnwritableOutput) {
  const Result r = run({"synth", "--arch", "llama", "-o", path("no-such-dir/x.gguf")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "no-such-dir")) << r.err;
}

// llama.cpp's GPT-2 vocabulary and its test vectors (tokenized by Hugging Face), when present.
fs::path gpt2_fixture() { return fs::path(VELOCITY_SOURCE_DIR) / ".." / "shared" / "fixtures" / "tokenizer" / "ggml-vocab-gpt-2.gguf"; }

TEST_F(CliTest, TokenizeIdsMatchFixture) {
  const fs::path gguf = gpt2_fixture();
  if (!fs::exists(gguf)) GTEST_SKIP() << gguf << " is absent";
  const std::string inp = read_file(gguf.string() + ".inp");
  std::istringstream out_lines(read_file(gguf.string() + ".out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  size_t n_checked = 0;
  size_t pos = 0;
  std::string want;
  while (pos < inp.size() && std::getline(out_lines, want) && n_checked < 8) {
    const size_t next = std::min(inp.find(sep, pos), inp.size());
    const std::string text = inp.substr(pos, next - pos);
    pos = next + sep.size();
    if (text.empty() || text.size() > 100) continue;
    // The .out lines are encode(text, add_special = false, parse_special = false), space-led.
    const Result r = run({"tokenize", "-m", gguf.string(), "--ids", "--no-bos", "--no-special", text});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(" " + r.out, want + "\n") << "text: " << text;
    ++n_checked;
  }
  EXPECT_EQ(n_checked, 8u);
}

TEST_F(CliTest, TokenizeOutputForms) {
  const fs::path gguf = gpt2_fixture();
  if (!fs::exists(gguf)) GTEST_SKIP() << gguf << " is absent";
  const std::string m = gguf.string();
  Result r = run({"tokenize", "-m", m, "Hello world"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "15496\t\"Hello\"\n995\t\" world\"\n");
  r = run({"tokenize", "-m", m, "--pieces", "a\tb\"c"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "\"a\"\n\"\\t\"\n\"b\"\n\"\\\"\"\n\"c\"\n");
  // Stdin when no text is given; the trailing newline is part of the text (198 = "\n").
  r = run({"tokenize", "-m", m, "--ids"}, "Hello world\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "15496 995 198\n");
  // A piece that is part of a UTF-8 sequence shows as its vocabulary entry (🦙 = 4 byte tokens).
  r = run({"tokenize", "-m", m, "--pieces", "\xF0\x9F\xA6\x99"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  // --ids and --pieces together: a command-line error.
  EXPECT_EQ(run({"tokenize", "-m", m, "--ids", "--pieces", "x"}).exit_code, 2);
}

TEST_F(CliTest, TokenizeSpecialTokens) {
  const fs::path gguf = gpt2_fixture();
  if (!fs::exists(gguf)) GTEST_SKIP() << gguf << " is absent";
  const std::string m = gguf.string();
  Result r = run({"tokenize", "-m", m, "--ids", "<|endoftext|>"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "50256\n");
  r = run({"tokenize", "-m", m, "--ids", "--no-special", "<|endoftext|>"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(contains(r.out, "50256")) << r.out;
  EXPECT_GT(std::count(r.out.begin(), r.out.end(), ' '), 2) << r.out;
}

TEST_F(CliTest, TokenizeSynthModelAddsBos) {
  const std::string m = synth_tiny("tiny.gguf");
  const Result with = run({"tokenize", "-m", m, "--ids", "Hello world"});
  const Result without = run({"tokenize", "-m", m, "--ids", "--no-bos", "Hello world"});
  ASSERT_EQ(with.exit_code, 0) << with.err;
  ASSERT_EQ(without.exit_code, 0) << without.err;
  const Result inspect = run({"inspect", "--json", m});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  const auto meta = nlohmann::json::parse(inspect.out).at("metadata");
  const bool add_bos = meta.contains("tokenizer.ggml.add_bos_token") && meta["tokenizer.ggml.add_bos_token"]["value"].get<bool>();
  if (add_bos) {
    const std::string bos = std::to_string(meta.at("tokenizer.ggml.bos_token_id").at("value").get<int64_t>());
    EXPECT_EQ(with.out, bos + " " + without.out);
  } else {
    EXPECT_EQ(with.out, without.out);
  }
  EXPECT_FALSE(without.out.empty());
}

TEST_F(CliTest, TokenizeErrors) {
  const std::string missing = path("does-not-exist.gguf");
  Result r = run({"tokenize", "-m", missing, "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("velocity: error: ")) << r.err;
  EXPECT_TRUE(contains(r.err, missing)) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;

  // A valid GGUF (v3, no tensors, no metadata) without a tokenizer.
  const std::string bare = path("bare.gguf");
  {
    std::ofstream f(bare, std::ios::binary);
    const uint32_t version = 3;
    const uint64_t zero = 0;
    f.write("GGUF", 4);
    f.write(reinterpret_cast<const char*>(&version), sizeof version);
    f.write(reinterpret_cast<const char*>(&zero), sizeof zero);  // n_tensors
    f.write(reinterpret_cast<const char*>(&zero), sizeof zero);  // n_kv
  }
  r = run({"tokenize", "-m", bare, "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("velocity: error: ")) << r.err;
  EXPECT_TRUE(contains(r.err, "tokenizer")) << r.err;

  EXPECT_EQ(run({"tokenize", "x"}).exit_code, 2);  // -m is required
}

}  // namespace

namespace {

// `velocity template`: the expected prompt is written out by hand from Qwen2.5's documented
// ChatML format, independent of the renderer.
TEST_F(CliTest, TemplateRendersAJinjaFileOverAConversation) {
  const fs::path tmpl = fs::path(VELOCITY_SOURCE_DIR) / "../shared/fixtures/templates/Qwen-Qwen2.5-7B-Instruct.jinja";
  if (!fs::exists(tmpl)) GTEST_SKIP() << "../shared/fixtures/templates absent: " << tmpl;
  const std::string messages = path("messages.json");
  std::ofstream(messages) << R"([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi 你好"}])";
  Result r = run({"template", "--template", tmpl.string(), "--messages", messages});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi 你好<|im_end|>\n<|im_start|>assistant\n");
  r = run({"template", "--template", tmpl.string(), "--messages", messages, "--no-generation-prompt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi 你好<|im_end|>\n");
}

TEST_F(CliTest, TemplateErrorsNameTheFile) {
  const std::string messages = path("messages.json");
  std::ofstream(messages) << R"([{"role": "user", "content": "x"}])";
  // A model without tokenizer.chat_template.
  const std::string model = synth_tiny("m.gguf");
  Result r = run({"template", "-m", model, "--messages", messages});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no tokenizer.chat_template"), std::string::npos) << r.err;
  // Invalid JSON.
  const std::string bad = path("bad.json");
  std::ofstream(bad) << "[{\"role\": ";
  r = run({"template", "-m", model, "--messages", bad});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
  // A template that raises: the message carries the file and the template's own words.
  const std::string tmpl = path("t.jinja");
  std::ofstream(tmpl) << "{{ raise_exception('only user turns') }}";
  r = run({"template", "--template", tmpl, "--messages", messages});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(tmpl), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("only user turns"), std::string::npos) << r.err;
}

// `--chat-template NAME` picks a built-in template (issue 15: "chatml" was taken as the literal
// template text, and every prompt became "chatml").
TEST_F(CliTest, TemplateRendersABuiltInTemplateByName) {
  const std::string messages = path("messages.json");
  std::ofstream(messages) << R"([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi 你好"}])";
  const std::string model = synth_tiny("m.gguf");  // it has no tokenizer.chat_template
  Result r = run({"template", "-m", model, "--chat-template", "chatml", "--messages", messages});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi 你好<|im_end|>\n<|im_start|>assistant\n");
  r = run({"template", "--chat-template", "llama3", "--messages", messages, "--no-generation-prompt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<|start_header_id|>system<|end_header_id|>\n\nBe terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi 你好<|eot_id|>");
  // An unknown name is an error listing the names; with --template it is a command-line error.
  r = run({"template", "-m", model, "--chat-template", "chatm1", "--messages", messages});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--chat-template: 'chatm1' is neither a built-in chat template (chatml, ")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  r = run({"template", "--chat-template", "chatml", "--template", path("t.jinja"), "--messages", messages});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  r = run({"run", "-m", model, "--chat-template", "chatml", "-p", "hi"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;  // needs --chat
  r = run({"serve", "-m", model, "--chat-template", "chatml", "--chat-template-file", path("t.jinja")});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  r = run({"serve", "-m", model, "--chat-template", "chatm1"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--chat-template")) << r.err;
  EXPECT_TRUE(contains(r.err, "chatml, ")) << r.err;
  r = run({"run", "-m", model, "--chat", "--chat-template", "chatm1", "-p", "hi", "-n", "1"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--chat-template: 'chatm1'")) << r.err;
}

// `velocity serve` drains on the first SIGTERM/SIGINT (shutdown_grace_s, 30 s by default); a
// second one ends the process at once.
// A model that cannot load for a reason found without reading its weights (not a GGUF, an
// unknown device) stops serve before it opens the port: no "listening" line, exit 1, the reason.
TEST_F(CliTest, ServeChecksModelsBeforeListening) {
  std::ofstream(path("bad.gguf")) << "garbage, not a GGUF file";
  Result r = run({"serve", "-m", path("bad.gguf"), "--port", "0"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "not a GGUF file")) << r.err;
  EXPECT_FALSE(contains(r.err + r.out, "listening")) << r.err;
  const std::string demo = std::string(VELOCITY_SOURCE_DIR) + "/models/demo/demo.gguf";
  if (!fs::exists(demo)) GTEST_SKIP() << demo << " is absent";
  std::ofstream(path("two.toml")) << "[server]\nport = 0\n\n[[model]]\nname = \"good\"\npath = \"" << demo
                                   << "\"\ndevice = \"cpu\"\n\n[[model]]\nname = \"far\"\npath = \"" << demo
                                   << "\"\ndevice = \"cuda:77\"\n";
  r = run({"serve", "--config", path("two.toml")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "far: device cuda:77")) << r.err;
  EXPECT_FALSE(contains(r.err + r.out, "listening")) << r.err;
}

// The GGUF's own chat template is parsed with the other checks: one that does not parse stops
// serve before it opens the port, with what to do instead; a built-in by name replaces it.
TEST_F(CliTest, ServeChecksTheModelsChatTemplateBeforeListening) {
  velocity::tools::SynthOptions o;
  o.arch = "llama";
  o.type = "Q8_0";
  o.output = path("broken-template.gguf");
  o.chat_template = "{% for m in messages %}{{ m.content }}";  // no endfor
  velocity::tools::synth(o);
  // (A second model with a device that does not exist makes serve exit even if the first passed.)
  auto config = [&](const std::string& name, const std::string& first_template) {
    std::ofstream(path(name)) << "[server]\nport = 0\n\n[[model]]\nname = \"first\"\npath = \"" << o.output
                              << "\"\ndevice = \"cpu\"\n" << first_template << "\n[[model]]\nname = \"far\"\npath = \""
                              << o.output << "\"\ndevice = \"cuda:77\"\nchat_template = \"chatml\"\n";
    return path(name);
  };
  Result r = run({"serve", "--config", config("own.toml", "")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "tokenizer.chat_template) does not parse")) << r.err;
  EXPECT_TRUE(contains(r.err, "--chat-template NAME")) << r.err;
  EXPECT_FALSE(contains(r.err, "far: device")) << r.err;
  EXPECT_FALSE(contains(r.err + r.out, "listening")) << r.err;
  // With a built-in named instead, the file's template is not used: the first model passes its
  // checks and the second one's device is what stops serve, still before the port opens.
  r = run({"serve", "--config", config("named.toml", "chat_template = \"chatml\"\n")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_FALSE(contains(r.err, "does not parse")) << r.err;
  EXPECT_TRUE(contains(r.err, "far: device cuda:77")) << r.err;
  EXPECT_FALSE(contains(r.err + r.out, "listening")) << r.err;
}

TEST_F(CliTest, ServeSecondSignalExitsAtOnce) {
  const std::string model = std::string(VELOCITY_SOURCE_DIR) + "/models/demo/demo.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << model << " is absent";
  const std::string log_path = path("serve.stderr");
  // --ctx above the demo model's trained 512: a warning before the port opens.
  std::vector<std::string> args = {VELOCITY_BINARY, "serve", "-m", model, "--port", "0", "-t", "1", "--ctx", "1024"};
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!std::freopen(log_path.c_str(), "w", stderr) || !std::freopen("/dev/null", "w", stdout)) ::_exit(127);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  struct Reaper {  // a failed assertion must not leave the server running
    pid_t pid;
    bool done = false;
    ~Reaper() {
      if (!done) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reaper{pid};
  auto exited = [&](std::chrono::milliseconds within, int* status) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    do {
      if (::waitpid(pid, status, WNOHANG) == pid) return reaper.done = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  };

  // Ready: the port from "listening on http://127.0.0.1:PORT", then the model's "ready" line.
  int port = 0;
  std::string log;
  int status = 0;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);;) {
    log = read_file(log_path);
    const size_t at = log.find("listening on http://127.0.0.1:");
    if (at != std::string::npos && log.find("' ready") != std::string::npos) {
      port = std::atoi(log.c_str() + at + 30);
      break;
    }
    ASSERT_FALSE(exited(std::chrono::milliseconds(50), &status)) << "velocity serve exited early:\n" << log;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "velocity serve did not get ready:\n" << log;
  }
  ASSERT_GT(port, 0) << log;
  const size_t warning = log.find("velocity: warning: model 'demo': a context of 1024 positions is more than the 512");
  EXPECT_NE(warning, std::string::npos) << log;
  EXPECT_LT(warning, log.find("listening on")) << log;
  // The start-up summary: device, context, slots, weights and KV cache (1024 x 1 slots).
  EXPECT_NE(log.find(", cpu, context 1024 x 1 slots, weights 10."), std::string::npos) << log;
  EXPECT_NE(log.find(" MiB, KV cache "), std::string::npos) << log;
  EXPECT_NE(log.find(" MiB (f16/f16))"), std::string::npos) << log;

  // A request whose body is still coming keeps the drain waiting for the whole grace period.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string partial = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              "Content-Length: 1000\r\n\r\n{\"model\": \"demo\", ";
  ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), (ssize_t)partial.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server reads the headers

  ::kill(pid, SIGTERM);
  for (int i = 0; i < 250 && read_file(log_path).find("draining") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(exited(std::chrono::milliseconds(300), &status)) << "the first signal should drain, not exit";
  const auto second = std::chrono::steady_clock::now();
  ::kill(pid, SIGTERM);
  const bool gone = exited(std::chrono::seconds(3), &status);
  ::close(fd);
  log = read_file(log_path);
  ASSERT_TRUE(gone) << "still running 3 s after the second signal:\n" << log;
  EXPECT_LT(std::chrono::steady_clock::now() - second, std::chrono::seconds(3));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << status;
  EXPECT_NE(log.find("velocity: second signal; exiting now"), std::string::npos) << log;
}

}  // namespace
