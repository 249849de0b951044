// A tokenizer imported from Hugging Face files survives the trip into GGUF keys and back: what
// the converter will write is what the loader reads, token for token.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "gguf/writer.h"
#include "tokenizer/hf_import.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace velocity::tokenizer {
namespace {

namespace fs = std::filesystem;

void expect_same_vocab(const Vocab& a, const Vocab& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.pre, b.pre);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.types, b.types);
  EXPECT_EQ(a.merges, b.merges);
  if (a.type == VocabType::Spm) {
    EXPECT_EQ(a.scores, b.scores);
  }
  EXPECT_EQ(a.bos, b.bos);
  EXPECT_EQ(a.eos, b.eos);
  EXPECT_EQ(a.unk, b.unk);
  EXPECT_EQ(a.pad, b.pad);
  EXPECT_EQ(a.eot, b.eot);
  EXPECT_EQ(a.eom, b.eom);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.add_eos, b.add_eos);
  EXPECT_EQ(a.ignore_merges, b.ignore_merges);
  EXPECT_EQ(a.normalize_nfc, b.normalize_nfc);
  EXPECT_EQ(a.chat_template, b.chat_template);
}

class HfGgufRoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(HfGgufRoundTrip, ImportWriteLoadGivesTheSameTokenizer) {
  const fs::path json = testing::npm_tokenizer_json(GetParam());
  const fs::path config = json.parent_path() / "tokenizer_config.json";
  if (!fs::exists(json)) GTEST_SKIP() << "npm vocabulary absent (npm ci in tests/tokenizer/diff): " << json;
  const Vocab imported = hf_import(json.string(), config.string());

  const fs::path gguf_path =
      fs::temp_directory_path() / (std::string("velocity-hf-roundtrip-") + GetParam() + "-" + std::to_string(::getpid()) + ".gguf");
  {
    gguf::Writer writer(gguf_path.string());
    writer.set("general.architecture", gguf::Value::string("llama"));
    for (auto& [key, value] : vocab_to_gguf_metadata(imported)) writer.set(key, value);
    writer.begin_data();
    writer.finish();
  }
  const Vocab loaded = Vocab::load(gguf_path.string());
  fs::remove(gguf_path);
  expect_same_vocab(imported, loaded);

  const Tokenizer a(imported), b(loaded);
  for (const char* text : {"Hello, world! 12345 tokens", "  leading spaces\n\n\ttabs", "日本語のテキスト 🚀👩‍👩‍👧",
                           "<|im_start|>user\nhi<|im_end|>", "<|begin_of_text|>x", "café naïve Ω Å"}) {
    EXPECT_EQ(a.encode(text, true, true), b.encode(text, true, true)) << text;
    EXPECT_EQ(a.encode(text, false, false), b.encode(text, false, false)) << text;
  }
}

INSTANTIATE_TEST_SUITE_P(NpmVocabularies, HfGgufRoundTrip, ::testing::Values("llama3", "qwen3", "gptoss"));

TEST(HfImport, ChatTemplateComesFromTokenizerConfig) {
  const fs::path json = testing::npm_tokenizer_json("qwen3");
  if (!fs::exists(json)) GTEST_SKIP() << "npm vocabulary absent: " << json;
  const Vocab v = hf_import(json.string(), (json.parent_path() / "tokenizer_config.json").string());
  EXPECT_NE(v.chat_template.find("<|im_start|>"), std::string::npos);
  const Vocab no_config = hf_import(json.string());
  EXPECT_TRUE(no_config.chat_template.empty());
}

}  // namespace
}  // namespace velocity::tokenizer
