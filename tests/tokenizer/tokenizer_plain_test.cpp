// EncodeOptions::plain: with parse_special, control and unknown tokens are not matched where they
// would overlap a plain range (a chat message's content), and that text is tokenized with its
// neighbours exactly as parse_special = false would; user-defined tokens match everywhere.
// Also cancellation of encode.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace velocity::tokenizer {
namespace {

constexpr int32_t kEnd = 260, kTool = 261, kStart = 262, kUnk = 263;

// Byte-level BPE: the 256 byte tokens, merges building "ab", "abc", "Ġa", then a control token
// "<|end|>", a user-defined "<tool>", a control "<|start|>" and an unknown "<unk>".
Vocab bpe_with_controls() {
  Vocab v;
  v.type = VocabType::Bpe;
  v.model = "gpt2";
  v.pre = "gpt-2";
  v.add_space_prefix = false;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_level().byte_to_text[b]);
  for (const char* t : {"ab", "abc", "Ġa", "bc"}) v.tokens.push_back(t);
  for (const char* t : {"<|end|>", "<tool>", "<|start|>", "<unk>"}) v.tokens.push_back(t);
  v.merges = {{"a", "b"}, {"b", "c"}, {"ab", "c"}, {"Ġ", "a"}};
  v.scores.assign(v.tokens.size(), 0.0f);
  v.types.assign(v.tokens.size(), TokenType::Normal);
  v.types[kEnd] = TokenType::Control;
  v.types[kTool] = TokenType::UserDefined;
  v.types[kStart] = TokenType::Control;
  v.types[kUnk] = TokenType::Unknown;
  v.eos = kEnd;
  v.unk = kUnk;
  return v;
}

// SentencePiece with byte fallback, BOS added, and a control token "<|end|>" (id 3).
Vocab spm_with_controls() {
  Vocab v;
  v.type = VocabType::Spm;
  v.model = "llama";
  v.pre = "default";
  v.tokens = {"<unk>", "<s>", "</s>", "<|end|>"};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Control};
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(fmt::format("<0x{:02X}>", b));
    v.types.push_back(TokenType::Byte);
  }
  const std::vector<std::pair<std::string, float>> pieces = {
      {"\xE2\x96\x81", -1}, {"h", -2}, {"e", -3}, {"l", -4}, {"o", -5}, {"he", -6}, {"ll", -7},
      {"hell", -8}, {"hello", -9}, {"\xE2\x96\x81hello", -10}, {"|", -11}, {"<", -12}, {">", -13}};
  v.scores.assign(v.tokens.size(), 0.0f);
  for (const auto& [t, s] : pieces) {
    v.tokens.push_back(t);
    v.types.push_back(TokenType::Normal);
    v.scores.push_back(s);
  }
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  v.add_bos = true;
  v.add_space_prefix = true;
  return v;
}

std::vector<int32_t> encode_plain(const Tokenizer& tok, std::string_view text, std::vector<TextRange> plain,
                                  bool parse_special = true, bool add_special = false) {
  EncodeOptions o;
  o.add_special = add_special;
  o.parse_special = parse_special;
  o.plain = plain;
  return tok.encode(text, o);
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(PlainRanges, NoRangesIsTodaysEncode) {
  const Tokenizer bpe(bpe_with_controls());
  const Tokenizer spm(spm_with_controls());
  for (const char* text : {"a<|end|>b", "<|start|>abc<|end|>", "<tool> ab <|end|>", "", "<unk>x", "hello<|end|>hello"}) {
    for (bool parse : {false, true}) {
      for (bool add : {false, true}) {
        EXPECT_EQ(encode_plain(bpe, text, {}, parse, add), bpe.encode(text, add, parse)) << text;
        EXPECT_EQ(encode_plain(spm, text, {}, parse, add), spm.encode(text, add, parse)) << text;
        // Empty ranges change nothing either.
        EXPECT_EQ(encode_plain(bpe, text, {{1, 1}, {0, 0}}, parse, add), bpe.encode(text, add, parse)) << text;
      }
    }
  }
  // And with parse_special = false the ranges do not matter.
  EXPECT_EQ(encode_plain(bpe, "a<|end|>b", {{0, 9}}, false), bpe.encode("a<|end|>b", false, false));
}

TEST(PlainRanges, ControlTokenInsideARangeIsText) {
  const Tokenizer tok(bpe_with_controls());
  const std::string text = "ab<|end|>abc";
  ASSERT_NE(tok.encode(text, false, false), tok.encode(text, false, true));  // the token matters
  EXPECT_EQ(encode_plain(tok, text, {{2, 9}}), tok.encode(text, false, false));
  EXPECT_EQ(encode_plain(tok, text, {{0, text.size()}}), tok.encode(text, false, false));
  // Overlapping a single byte of it is enough.
  EXPECT_EQ(encode_plain(tok, text, {{5, 6}}), tok.encode(text, false, false));
  // An unknown token's text too.
  EXPECT_EQ(encode_plain(tok, "x<unk>", {{1, 6}}), tok.encode("x<unk>", false, false));
}

TEST(PlainRanges, OnlyOverlappedTokensBecomeText) {
  const Tokenizer tok(bpe_with_controls());
  // "<|start|>" [0,9)  "x" [9,10)  "<|end|>" [10,17)  "y" [17,18)  "<|end|>" [18,25)
  const std::string text = "<|start|>x<|end|>y<|end|>";
  const auto protected_first_end = concat(concat({kStart}, tok.encode("x<|end|>y", false, false)), {kEnd});
  EXPECT_EQ(encode_plain(tok, text, {{10, 17}}), protected_first_end);
  EXPECT_EQ(encode_plain(tok, text, {{12, 13}}), protected_first_end);
  EXPECT_EQ(encode_plain(tok, text, {{9, 11}}), protected_first_end);
  // Touching is not overlapping: "x" alone changes nothing.
  EXPECT_EQ(encode_plain(tok, text, {{9, 10}}), tok.encode(text, false, true));
  // Ranges in any order, overlapping, or past the end are fine.
  EXPECT_EQ(encode_plain(tok, text, {{18, 100}, {12, 13}, {11, 14}}),
            concat({kStart}, tok.encode("x<|end|>y<|end|>", false, false)));
}

TEST(PlainRanges, UserDefinedTokensMatchEverywhere) {
  const Tokenizer tok(bpe_with_controls());
  const std::string text = "a<tool>b<|end|>";
  const auto ids = encode_plain(tok, text, {{0, text.size()}});
  EXPECT_EQ(ids, tok.encode(text, false, false));
  EXPECT_NE(std::find(ids.begin(), ids.end(), kTool), ids.end());
  EXPECT_EQ(std::find(ids.begin(), ids.end(), kEnd), ids.end());
}

TEST(PlainRanges, SentencePieceSeesTheSameFragments) {
  const Tokenizer tok(spm_with_controls());
  const std::string text = "hello<|end|>hello";
  const auto special = tok.encode(text, true, true);
  ASSERT_NE(std::find(special.begin(), special.end(), 3), special.end());
  // One fragment, as without parse_special: no second space prefix after the (unmatched) token.
  EXPECT_EQ(encode_plain(tok, text, {{5, 12}}, true, true), tok.encode(text, true, false));
  EXPECT_EQ(encode_plain(tok, "<|end|>hello<|end|>", {{0, 7}}, true, true),
            concat(tok.encode("<|end|>hello", true, false), {3}));
}

TEST(PlainRanges, InvalidUtf8MovesTheRanges) {
  const Tokenizer tok(bpe_with_controls());
  // Sanitizing makes \xFF and \xC3 three bytes each (U+FFFD): the ranges follow their bytes.
  const std::string text = "\xFF<|end|>\xC3" "ab<|end|>";
  const std::string valid = utf8_sanitize(text);
  EXPECT_EQ(encode_plain(tok, text, {{1, 8}}), concat(tok.encode(valid.substr(0, 15), false, false), {kEnd}));
  EXPECT_EQ(encode_plain(tok, text, {{11, 18}}), concat(concat(tok.encode("\xEF\xBF\xBD", false, false), {kEnd}),
                                                         tok.encode("\xEF\xBF\xBD" "ab<|end|>", false, false)));
  // A boundary inside an invalid subpart (E1 80 is one) widens the range to all of it: [1, 2)
  // covers only the replacement character, [1, 3) the '<' too.
  const std::string subpart = "\xE1\x80<|end|>";
  EXPECT_EQ(encode_plain(tok, subpart, {{1, 2}}), tok.encode(subpart, false, true));
  EXPECT_EQ(encode_plain(tok, subpart, {{1, 3}}), tok.encode(subpart, false, false));
}

TEST(PlainRanges, RealVocabularies) {
  const auto dir = testing::fixture_dir();
  const std::filesystem::path phi3 = dir / "ggml-vocab-phi-3.gguf", deepseek = dir / "ggml-vocab-deepseek-llm.gguf";
  if (!std::filesystem::exists(phi3) || !std::filesystem::exists(deepseek)) GTEST_SKIP() << "fixture vocabularies absent: " << dir;
  struct Case {
    std::filesystem::path path;
    std::string control;  // a control token of the vocabulary
  };
  for (const Case& c : {Case{phi3, "<|end|>"}, Case{deepseek, "<｜end▁of▁sentence｜>"}}) {
    const Tokenizer tok(Vocab::load(c.path.string()));
    const int32_t control = tok.token_id(c.control);
    ASSERT_TRUE(tok.is_special(control)) << c.path;
    const std::string text = "Hello " + c.control + " world" + c.control + "\nagain";
    const size_t first = text.find(c.control), second = text.rfind(c.control);
    EXPECT_EQ(encode_plain(tok, text, {}, true, true), tok.encode(text, true, true)) << c.path;
    EXPECT_EQ(encode_plain(tok, text, {{0, text.size()}}, true, true), tok.encode(text, true, false)) << c.path;
    // Protecting the first: it is text with everything up to the second, which stays a control token.
    const auto ids = encode_plain(tok, text, {{first, first + c.control.size()}}, true, false);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), control), 1) << c.path;
    EXPECT_EQ(ids, concat(concat(tok.encode(text.substr(0, second), false, false), {control}),
                          tok.encode(text.substr(second + c.control.size()), false, true)))
        << c.path;
  }
}

TEST(EncodeCancel, SetFlagThrowsCancelled) {
  const Tokenizer bpe(bpe_with_controls());
  const Tokenizer spm(spm_with_controls());
  for (const Tokenizer* tok : {&bpe, &spm}) {
    std::atomic<bool> cancel{true};
    EncodeOptions o;
    o.cancel = &cancel;
    EXPECT_THROW(tok->encode("hello", o), Cancelled);
    EXPECT_THROW(tok->encode(std::string(1 << 20, 'a'), o), Cancelled);
    cancel = false;
    EXPECT_EQ(tok->encode("hello", o), tok->encode("hello", true, false));
  }
}

}  // namespace
}  // namespace velocity::tokenizer
