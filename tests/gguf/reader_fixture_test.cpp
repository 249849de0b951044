// The reader on GGUF files written by the ecosystem (llama.cpp's vocab-only test models in
// ../shared/fixtures/tokenizer); skipped when the fixtures are absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "gguf/file.h"

namespace velocity::gguf {
namespace {

std::vector<std::string> fixture_files() {
  const std::filesystem::path dir = std::filesystem::path(VELOCITY_SOURCE_DIR "/../shared/fixtures") / "tokenizer";
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".gguf") out.push_back(entry.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ReaderFixtures, EcosystemTokenizerFiles) {
  const auto files = fixture_files();
  if (files.empty()) GTEST_SKIP() << "no *.gguf in " VELOCITY_SOURCE_DIR "/../shared/fixtures/tokenizer";
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    const File f = File::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_FALSE(f.architecture().empty());
    EXPECT_NE(f.find("general.name"), nullptr);
    ASSERT_NE(f.find("tokenizer.ggml.model"), nullptr);
    EXPECT_FALSE(f.at("tokenizer.ggml.model").as_string().empty());
    const auto& tokens = f.at("tokenizer.ggml.tokens").strings();
    EXPECT_GT(tokens.size(), 1000u);
    if (const Value* scores = f.find("tokenizer.ggml.scores")) {
      EXPECT_EQ(scores->array_size(), tokens.size());
    }
    if (const Value* types = f.find("tokenizer.ggml.token_type")) {
      EXPECT_EQ(types->array_size(), tokens.size());
    }
    if (const Value* merges = f.find("tokenizer.ggml.merges")) {
      EXPECT_GT(merges->strings().size(), 0u);
    }
    // Vocab-only files: metadata only.
    EXPECT_TRUE(f.tensors().empty());
  }
}

}  // namespace
}  // namespace velocity::gguf
