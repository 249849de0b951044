// The real `velocity` binary (VELOCITY_BINARY): exit codes and messages a user sees.
//   0 success, 1 velocity::Error ("velocity: error: <what>" on stderr), 2 bad command line.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

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

  Result run(const std::vector<std::string>& args) {
    std::string command = shell_quote(VELOCITY_BINARY);
    // (appends one piece at a time: g++ 12 -Wrestrict misfires on `" >" + std::string`)
    for (const auto& a : args) command.append(" ").append(shell_quote(a));
    const fs::path out = dir_ / "stdout.txt";
    const fs::path err = dir_ / "stderr.txt";
    command.append(" >").append(shell_quote(out.string())).append(" 2>").append(shell_quote(err.string()));
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

}  // namespace
