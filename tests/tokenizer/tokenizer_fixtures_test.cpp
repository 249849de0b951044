// llama.cpp's tokenizer test vectors (models/ggml-vocab-*.gguf.{inp,out}, produced with Hugging
// Face tokenizers). As llama.cpp's test-tokenizer-0: encode(text, add_special = false,
// parse_special = false) must give exactly the ids of the .out line.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tokenizer/hf_import.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace velocity::tokenizer {
namespace {

using testing::fixture_dir;
using testing::npm_tokenizer_json;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> read_cases(const std::filesystem::path& gguf_path) {
  const std::string inp = read_file(gguf_path.string() + ".inp");
  const std::string out = read_file(gguf_path.string() + ".out");
  std::vector<std::string> texts;
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < inp.size();) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(inp.substr(pos));
      break;
    }
    texts.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<Case> cases;
  std::istringstream lines(out);
  std::string line;
  for (size_t i = 0; std::getline(lines, line); ++i) {
    Case c;
    c.text = i < texts.size() ? texts[i] : "";
    std::istringstream ids(line);
    int32_t id;
    while (ids >> id) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(texts.size(), cases.size()) << gguf_path;
  return cases;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

void run_cases(const Tokenizer& tok, const std::filesystem::path& vectors) {
  const std::vector<Case> cases = read_cases(vectors);
  ASSERT_FALSE(cases.empty());
  size_t agreed = 0;
  for (const Case& c : cases) {
    const std::vector<int32_t> got = tok.encode(c.text, false, false);
    EXPECT_EQ(got, c.ids) << "text: \"" << c.text << "\"\n got: " << show(got) << "\nwant: " << show(c.ids);
    agreed += got == c.ids;
  }
  std::printf("%s: %zu / %zu cases agree\n", vectors.filename().c_str(), agreed, cases.size());
}

void run_gguf(const std::string& name) {
  const auto path = fixture_dir() / ("ggml-vocab-" + name + ".gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "fixture " << path << " is absent";
  const Tokenizer tok(Vocab::load(path.string()));
  run_cases(tok, path);
}

void run_npm(const std::string& vectors_name, const std::string& npm_name) {
  const auto path = fixture_dir() / ("ggml-vocab-" + vectors_name + ".gguf");
  if (!std::filesystem::exists(path.string() + ".inp")) GTEST_SKIP() << "fixture " << path << ".inp is absent";
  const auto json = npm_tokenizer_json(npm_name);
  if (!std::filesystem::exists(json)) {
    GTEST_SKIP() << json << " is absent (run scripts/deps.sh, or npm ci in tests/tokenizer/diff)";
  }
  const Tokenizer tok(hf_import(json.string()));
  run_cases(tok, path);
}

TEST(TokenizerFixtures, Gpt2) { run_gguf("gpt-2"); }
TEST(TokenizerFixtures, DeepseekLlm) { run_gguf("deepseek-llm"); }
TEST(TokenizerFixtures, LlamaSpm) { run_gguf("llama-spm"); }
TEST(TokenizerFixtures, Phi3) { run_gguf("phi-3"); }
TEST(TokenizerFixtures, LlamaBpeFromLlama3Json) { run_npm("llama-bpe", "llama3"); }
TEST(TokenizerFixtures, Qwen2FromQwen3Json) { run_npm("qwen2", "qwen3"); }

}  // namespace
}  // namespace velocity::tokenizer
