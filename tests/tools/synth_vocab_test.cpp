// Synthetic BPE vocabularies: GPT-2 byte tokens, valid merges, the families' special tokens at
// their real ids, padding, speed at 200k tokens.
#include "tools/synth_vocab.h"

#include <gtest/gtest.h>

#include <chrono>
#include <unordered_set>

#include "core/error.h"
#include "tools/synth_arch.h"

namespace velocity::tools::synthetic {
namespace {

void expect_valid_bpe(const Vocab& v) {
  std::unordered_set<std::string> set(v.tokens.begin(), v.tokens.end());
  ASSERT_EQ(set.size(), v.tokens.size()) << "duplicate tokens";
  for (const auto& m : v.merges) {
    const size_t sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos);
    const std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    ASSERT_TRUE(set.count(a) && set.count(b) && set.count(a + b)) << m;
  }
}

TEST(SynthVocab, ByteTokensAreGpt2s) {
  const auto& b = byte_tokens();
  ASSERT_EQ(b.size(), 256u);
  EXPECT_EQ(b[0], "!");
  EXPECT_EQ(b[93], "~");
  EXPECT_EQ(b[188], "\xC4\x80");  // U+0100 = byte 0x00
  EXPECT_EQ(b[220], "\xC4\xA0");  // U+0120 'Ġ' = space, GPT-2 id 220
  EXPECT_EQ(std::unordered_set<std::string>(b.begin(), b.end()).size(), 256u);
}

TEST(SynthVocab, Llama3SpecialsAtTheirIds) {
  const auto config = preset_config("llama", "llama3-8b");
  const Vocab v = build_vocab(config.vocab, 1);
  ASSERT_EQ(v.tokens.size(), 128256u);
  EXPECT_EQ(v.merges.size(), 128000u - 256u);
  EXPECT_EQ(v.tokens[128000], "<|begin_of_text|>");
  EXPECT_EQ(v.tokens[128009], "<|eot_id|>");
  EXPECT_EQ(v.tokens[128255], "<|reserved_special_token_247|>");
  EXPECT_EQ(v.bos_id, 128000);
  EXPECT_EQ(v.eos_id, 128009);
  EXPECT_EQ(v.types[128000], kTokenControl);
  EXPECT_EQ(v.types[1000], kTokenNormal);
  expect_valid_bpe(v);
}

TEST(SynthVocab, QwenAndDeepSeekLayouts) {
  {
    const Vocab v = build_vocab(preset_config("qwen3moe", "qwen3-30b-a3b").vocab, 1);
    ASSERT_EQ(v.tokens.size(), 151936u);
    EXPECT_EQ(v.tokens[151643], "<|endoftext|>");
    EXPECT_EQ(v.tokens[151645], "<|im_end|>");
    EXPECT_EQ(v.tokens[151667], "<think>");
    EXPECT_EQ(v.types[151667], kTokenUserDefined);
    EXPECT_EQ(v.tokens[151669], "[PAD151669]");
    EXPECT_EQ(v.types[151935], kTokenUnused);
    EXPECT_EQ(v.eos_id, 151645);
    EXPECT_EQ(v.bos_id, 151643);
    EXPECT_EQ(v.padding_id, 151643);
  }
  {
    const Vocab v = build_vocab(preset_config("deepseek2", "deepseek-r1").vocab, 1);
    ASSERT_EQ(v.tokens.size(), 129280u);
    EXPECT_EQ(v.bos_id, 0);
    EXPECT_EQ(v.eos_id, 1);
    EXPECT_EQ(v.tokens[3], "!");
    EXPECT_EQ(v.tokens[128000], "<｜place▁holder▁no▁0｜>");
    EXPECT_EQ(v.tokens[128798], "<think>");
    EXPECT_EQ(v.tokens[128803], "<｜User｜>");
    EXPECT_EQ(v.tokens[128814], "<｜tool▁sep｜>");
    EXPECT_EQ(v.tokens[128815], "[PAD128815]");
    expect_valid_bpe(v);
  }
}

TEST(SynthVocab, GptOss200kIsFastAndValid) {
  const auto config = preset_config("gpt-oss", "gpt-oss-20b");
  const auto start = std::chrono::steady_clock::now();
  const Vocab v = build_vocab(config.vocab, 3);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 1.0);
  ASSERT_EQ(v.tokens.size(), 201088u);
  EXPECT_EQ(v.tokens[199998], "<|startoftext|>");
  EXPECT_EQ(v.tokens[200002], "<|return|>");
  EXPECT_EQ(v.tokens[200005], "<|channel|>");
  EXPECT_EQ(v.tokens[200018], "<|endofprompt|>");
  EXPECT_EQ(v.tokens[201087], "<|reserved_201087|>");
  EXPECT_EQ(v.eos_id, 200002);
  EXPECT_EQ(v.bos_id, 199998);
  expect_valid_bpe(v);
  // Merged tokens stay short, as in a real vocabulary.
  size_t bytes = 0;
  for (int i = 256; i < 199998; ++i) bytes += v.tokens[static_cast<size_t>(i)].size();
  EXPECT_LT(static_cast<double>(bytes) / (199998 - 256), 12.0);
}

TEST(SynthVocab, SeedChangesTheMergesOnly) {
  const auto spec = preset_config("qwen3", "tiny").vocab;
  const Vocab a = build_vocab(spec, 1), b = build_vocab(spec, 1), c = build_vocab(spec, 2);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_NE(a.merges, c.merges);
  EXPECT_EQ(a.tokens.size(), c.tokens.size());
  EXPECT_EQ(a.eos_id, c.eos_id);
}

TEST(SynthVocab, RejectsSpecsThatDoNotAddUp) {
  VocabSpec s;
  s.n_vocab = 300;
  s.n_bpe = 200;
  EXPECT_THROW(build_vocab(s, 1), Error);
  s.n_bpe = 299;
  s.tail = {{"<a>", kTokenControl}, {"<b>", kTokenControl}};
  EXPECT_THROW(build_vocab(s, 1), Error);
  s.n_bpe = 298;
  s.eos = "<c>";
  EXPECT_THROW(build_vocab(s, 1), Error);
  s.eos = "<b>";
  EXPECT_EQ(build_vocab(s, 1).eos_id, 299);
}

}  // namespace
}  // namespace velocity::tools::synthetic
