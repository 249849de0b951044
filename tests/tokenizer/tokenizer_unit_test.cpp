// Unit tests on small vocabularies built in code: BPE merge order, SPM scores and byte fallback,
// special-token splitting, UTF-8 sanitizing, NFC, the stream decoder, and vocabulary validation.
#include <gtest/gtest.h>

#include <chrono>

#include "core/error.h"
#include "tokenizer/hf_import.h"
#include "tokenizer/nfc.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/stream_decode.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace velocity::tokenizer {
namespace {

// A byte-level BPE vocabulary: the 256 byte tokens, then merges building "ab", "abc", "Ġa".
Vocab tiny_bpe() {
  Vocab v;
  v.type = VocabType::Bpe;
  v.model = "gpt2";
  v.pre = "gpt-2";
  v.add_space_prefix = false;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_level().byte_to_text[b]);
  for (const char* t : {"ab", "abc", "Ġa", "bc", "<|end|>", "<tool>"}) v.tokens.push_back(t);
  v.merges = {{"a", "b"}, {"b", "c"}, {"ab", "c"}, {"Ġ", "a"}};
  v.scores.assign(v.tokens.size(), 0.0f);
  v.types.assign(v.tokens.size(), TokenType::Normal);
  v.types[260] = TokenType::Control;
  v.types[261] = TokenType::UserDefined;
  v.eos = 260;
  return v;
}

// A SentencePiece vocabulary with byte fallback.
Vocab tiny_spm() {
  Vocab v;
  v.type = VocabType::Spm;
  v.model = "llama";
  v.pre = "default";
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(fmt::format("<0x{:02X}>", b));
    v.types.push_back(TokenType::Byte);
  }
  const std::vector<std::pair<std::string, float>> pieces = {
      {"\xE2\x96\x81", -1}, {"h", -2}, {"e", -3}, {"l", -4}, {"o", -5}, {"he", -6}, {"ll", -7},
      {"hell", -8}, {"hello", -9}, {"\xE2\x96\x81hello", -10}, {"lo", -20}};
  for (const auto& [t, s] : pieces) {
    v.tokens.push_back(t);
    v.types.push_back(TokenType::Normal);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  for (size_t i = 0; i < pieces.size(); ++i) v.scores[259 + i] = pieces[i].second;
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  v.add_bos = true;
  v.add_space_prefix = true;
  return v;
}

TEST(BpeTiny, MergesByRank) {
  const Tokenizer tok(tiny_bpe());
  EXPECT_EQ(tok.encode("abc", false, false), (std::vector<int32_t>{257}));  // ab, then abc
  EXPECT_EQ(tok.encode(" a", false, false), (std::vector<int32_t>{258}));
  EXPECT_EQ(tok.encode("bc", false, false), (std::vector<int32_t>{259}));
  EXPECT_EQ(tok.decode(tok.encode("hello abc", false, false)), "hello abc");
}

TEST(BpeTiny, LongRepeatedInputIsFast) {
  const Tokenizer tok(tiny_bpe());
  const std::string text(1 << 20, 'a');
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text, false, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ids.size(), text.size());
  EXPECT_LT(seconds, 5.0);
  const std::string abc = [] {
    std::string s;
    for (int i = 0; i < (1 << 18); ++i) s += "abc";
    return s;
  }();
  EXPECT_EQ(tok.encode(abc, false, false).size(), size_t{1} << 18);
}

TEST(TokenizerSpecial, ParseSpecialControlsControlTokensOnly) {
  const Tokenizer tok(tiny_bpe());
  EXPECT_EQ(tok.encode("a<|end|>", false, true), (std::vector<int32_t>{'a', 260}));
  EXPECT_GT(tok.encode("a<|end|>", false, false).size(), 2u);
  // User-defined tokens match with or without parse_special.
  EXPECT_EQ(tok.encode("<tool>", false, false), (std::vector<int32_t>{261}));
  EXPECT_EQ(tok.token_to_piece(260), "<|end|>");
}

void add_tokens(Vocab& v, std::initializer_list<const char*> texts) {
  for (const char* t : texts) {
    v.tokens.push_back(t);
    v.scores.push_back(0.0f);
    v.types.push_back(TokenType::Control);
  }
}

// Fill in the middle (issue 16): the markers found by their known pieces unless the metadata
// names them, all three or none, and the prompt in prefix-suffix-middle order with control-token
// text in the code left as text.
TEST(TokenizerFim, MarkersAndPromptOrder) {
  Vocab v = tiny_bpe();
  v.find_fim_tokens();
  EXPECT_FALSE(v.has_fim());
  add_tokens(v, {"<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"});  // 262, 263, 264
  v.find_fim_tokens();
  ASSERT_TRUE(v.has_fim());
  EXPECT_EQ(v.fim_pre, 262);
  EXPECT_EQ(v.fim_suf, 264);
  EXPECT_EQ(v.fim_mid, 263);
  {
    const Tokenizer tok(v);
    std::vector<int32_t> want = {262};
    for (int32_t id : tok.encode("abc", false, false)) want.push_back(id);
    want.push_back(264);
    const auto suffix = tok.encode(" a<|end|>", false, false);
    EXPECT_GT(suffix.size(), 2u);  // "<|end|>" as text, not control token 260
    want.insert(want.end(), suffix.begin(), suffix.end());
    want.push_back(263);
    EXPECT_EQ(tok.encode_fim("abc", " a<|end|>"), want);
  }

  Vocab meta = v;  // ids from the metadata win over the pieces
  meta.fim_pre = 'p', meta.fim_suf = 's', meta.fim_mid = 'm';
  meta.find_fim_tokens();
  EXPECT_EQ(meta.fim_pre, 'p');
  EXPECT_EQ(meta.fim_mid, 'm');

  Vocab partial = tiny_bpe();  // two of StarCoder's three pieces
  add_tokens(partial, {"<fim_prefix>", "<fim_suffix>"});
  partial.fim_pre = 262;  // and a partial set in the metadata
  partial.find_fim_tokens();
  EXPECT_FALSE(partial.has_fim());
  EXPECT_EQ(partial.fim_pre, kNoToken);
  const Tokenizer none(partial);
  EXPECT_THROW(none.encode_fim("a", "b"), Error);

  Vocab spm = tiny_spm();  // a vocabulary that adds BOS puts it first
  add_tokens(spm, {"<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"});
  spm.find_fim_tokens();
  ASSERT_TRUE(spm.has_fim());
  const Tokenizer tok(spm);
  const auto ids = tok.encode_fim("hello", "lo");
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(ids[0], spm.bos);
  EXPECT_EQ(ids[1], spm.fim_pre);
  EXPECT_EQ(ids.back(), spm.fim_mid);
}

// /infill's prompt, in the layout of llama.cpp's server (format_infill): extra context first
// (repository marker, a file separator and name per chunk, a last separator), BOS, then prefix
// and cursor text tokenized apart, suffix, middle; without a file separator, chunks go behind
// "\n\n--- snippet ---\n\n".
TEST(TokenizerFim, InfillLayoutOfLlamaCppsServer) {
  Vocab v = tiny_bpe();
  add_tokens(v, {"<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|repo_name|>", "<|file_sep|>"});
  v.find_fim_tokens();
  ASSERT_TRUE(v.has_fim());
  EXPECT_EQ(v.fim_rep, 265);
  EXPECT_EQ(v.fim_sep, 266);
  const std::vector<Tokenizer::InfillChunk> extra = {{"a.py", "x = 1"}, {"", "y"}};
  {
    const Tokenizer tok(v);
    std::vector<int32_t> want;
    auto text = [&](const char* t) {
      for (int32_t id : tok.encode(t, false, false)) want.push_back(id);
    };
    want.push_back(265);
    text("myproject\n");
    want.push_back(266);
    text("a.py\n");
    text("x = 1");
    want.push_back(266);
    text("tmp\n");  // a chunk without a file name
    text("y");
    want.push_back(266);
    text("filename\n");
    want.push_back(v.fim_pre);
    text("def f(");
    text("a");
    want.push_back(v.fim_suf);
    text("):");
    want.push_back(v.fim_mid);
    EXPECT_EQ(tok.encode_infill("def f(", "a", "):", extra), want);
  }
  Vocab plain = v;  // no repository-level markers: snippets
  plain.fim_rep = plain.fim_sep = kNoToken;
  const Tokenizer tok(plain);
  std::vector<int32_t> want;
  auto text = [&](const char* t) {
    for (int32_t id : tok.encode(t, false, false)) want.push_back(id);
  };
  text("\n\n--- snippet ---\n\n");
  text("x = 1");
  text("\n\n--- snippet ---\n\n");
  text("y");
  want.push_back(plain.fim_pre);
  text("p");
  want.push_back(plain.fim_suf);
  want.push_back(plain.fim_mid);
  EXPECT_EQ(tok.encode_infill("p", "", "", extra), want);
}

// Long inputs are cut as llama.cpp's server cuts them: the prefix keeps its last 3/4 n_batch
// tokens, the suffix its first n_batch/4 - 2 - |cursor|, the extra context its last
// n_ctx - n_batch - 2 n_predict.
TEST(TokenizerFim, InfillCutsLongInputsLikeLlamaCpp) {
  Vocab v = tiny_bpe();
  add_tokens(v, {"<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|repo_name|>", "<|file_sep|>"});
  v.find_fim_tokens();
  const Tokenizer tok(v);
  const std::string prefix = "abcdefghijklmnopqrstuvwxyz abcdefghijklmnopqrstuvwxyz", suffix = "zyxwvutsrqponm lkjihg";
  const std::vector<Tokenizer::InfillChunk> extra = {{"f.txt", "the quick brown fox jumps over the lazy dog"}};
  const auto all = tok.encode_infill(prefix, "q", suffix, extra);
  const auto pre = tok.encode(prefix, false, false), cur = tok.encode("q", false, false), suf = tok.encode(suffix, false, false);
  ASSERT_GT(pre.size(), 12u);
  ASSERT_GT(suf.size(), 1u);
  const size_t n_extra = all.size() - pre.size() - cur.size() - suf.size() - 3;  // 3 markers, no BOS
  ASSERT_GT(n_extra, 16u);
  Tokenizer::InfillLimits limits;
  limits.n_batch = 16, limits.n_ctx = 40, limits.n_predict = 4;
  std::vector<int32_t> want(all.begin() + static_cast<std::ptrdiff_t>(n_extra - 16), all.begin() + static_cast<std::ptrdiff_t>(n_extra));
  want.push_back(v.fim_pre);
  want.insert(want.end(), pre.end() - 12, pre.end());  // 3 * (16 / 4)
  want.insert(want.end(), cur.begin(), cur.end());
  want.push_back(v.fim_suf);
  want.insert(want.end(), suf.begin(), suf.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(suf.size(), 4 - 2 - cur.size())));
  want.push_back(v.fim_mid);
  EXPECT_EQ(tok.encode_infill(prefix, "q", suffix, extra, limits), want);
  limits.n_ctx = 10;  // no room for any extra context
  const auto cut = tok.encode_infill(prefix, "q", suffix, extra, limits);
  EXPECT_EQ(cut.front(), v.fim_pre);
}

TEST(TokenizerUtf8, InvalidInputBecomesReplacementCharacter) {
  EXPECT_EQ(utf8_sanitize("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  // Maximal subparts: E1 80 is one U+FFFD, then 41.
  EXPECT_EQ(utf8_sanitize("\xE1\x80\x41"), "\xEF\xBF\xBD\x41");
  EXPECT_EQ(utf8_sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8_sanitize("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  const Tokenizer tok(tiny_bpe());
  EXPECT_EQ(tok.encode("\xFF", false, false), tok.encode("\xEF\xBF\xBD", false, false));
}

TEST(TokenizerNfc, ComposesAndReorders) {
  EXPECT_TRUE(nfc_is_quick_yes("plain ascii and caf\xC3\xA9"));
  EXPECT_EQ(nfc_normalize("e\xCC\x81"), "\xC3\xA9");                  // e + acute -> é
  EXPECT_EQ(nfc_normalize("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul L+V -> 가
  EXPECT_EQ(nfc_normalize("\xE2\x84\xA6"), "\xCE\xA9");                  // Ohm -> Omega
  // a + dot below (220) + ring above (230) and the reverse order normalize the same.
  EXPECT_EQ(nfc_normalize("a\xCC\x8A\xCC\xA3"), nfc_normalize("a\xCC\xA3\xCC\x8A"));
}

TEST(SpmTiny, ScoresSpacePrefixAndByteFallback) {
  const Tokenizer tok(tiny_spm());
  const int32_t base = 259;
  EXPECT_EQ(tok.encode("hello", true, false), (std::vector<int32_t>{1, base + 9}));
  // Unknown characters fall back to their UTF-8 bytes.
  const auto ids = tok.encode("\xC3\xA9", false, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{base, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok.decode(tok.encode("hello hello", true, false), true), "hello hello");
  EXPECT_EQ(tok.decode(ids), "\xC3\xA9");
}

// Regression: a Byte token that is not "<0x" + two hex digits + ">" (a malformed file) made
// token_to_piece throw std::invalid_argument from std::stoi; it now shows its text.
TEST(SpmDecode, MalformedByteTokenShowsItsText) {
  Vocab v = tiny_spm();
  v.tokens[3 + 0x41] = "<0xZZ>";
  const Tokenizer tok(std::move(v));
  EXPECT_EQ(tok.token_to_piece(3 + 0x41), "<0xZZ>");
  EXPECT_EQ(tok.token_to_piece(3 + 0x42), "B");
}

TEST(StreamDecode, HoldsPartialCharacters) {
  const Tokenizer tok(tiny_spm());
  StreamDecoder dec(tok);
  EXPECT_EQ(dec.push(3 + 0xF0), "");
  EXPECT_EQ(dec.push(3 + 0x9F), "");
  EXPECT_EQ(dec.push(3 + 0xA6), "");
  EXPECT_EQ(dec.pending_bytes(), 3u);
  EXPECT_EQ(dec.push(3 + 0x99), "\xF0\x9F\xA6\x99");
  // An invalid byte is replaced at once; an incomplete tail at flush.
  EXPECT_EQ(dec.push(3 + 0xFF), "\xEF\xBF\xBD");
  EXPECT_EQ(dec.push(3 + 0xE2), "");
  EXPECT_EQ(dec.push(3 + 'a'), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(dec.push(3 + 0xE2), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
}

// Generated text continues a prompt: its first token keeps SentencePiece's space; at the start
// of a text the space prefix goes, as in decode().
TEST(StreamDecode, ContinuationKeepsLeadingSpace) {
  const Tokenizer tok(tiny_spm());
  const int32_t space_hello = 259 + 9;  // "\u2581hello"
  StreamDecoder start(tok);
  EXPECT_EQ(start.push(space_hello), "hello");
  StreamDecoder cont(tok, false, /*at_text_start=*/false);
  EXPECT_EQ(cont.push(space_hello), " hello");
  EXPECT_EQ(cont.push(space_hello), " hello");
}

TEST(StreamDecode, MatchesDecodeOnRandomIds) {
  const Tokenizer tok(tiny_spm());
  uint64_t state = 12345;
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 20; ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      ids.push_back(static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(tok.n_vocab())));
    }
    StreamDecoder dec(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.push(id);
    streamed += dec.flush();
    EXPECT_EQ(streamed, tok.decode(ids));
  }
}

TEST(VocabValidate, ClearErrors) {
  Vocab v = tiny_bpe();
  v.pre = "no-such-pre";
  try {
    v.validate("x.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos) << e.what();
  }
  v = tiny_bpe();
  v.eos = 100000;
  EXPECT_THROW(v.validate("x.gguf"), Error);
  v = tiny_bpe();
  v.scores.pop_back();
  EXPECT_THROW(v.validate("x.gguf"), Error);
  v = tiny_bpe();
  v.add_bos = true;
  EXPECT_THROW(v.validate("x.gguf"), Error);
}

TEST(HfImport, MergeFormsAndErrors) {
  const std::string base = R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":MERGES},
    "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},
    "added_tokens":[{"id":3,"content":"<s>","special":true}]})";
  for (const std::string merges : {R"(["a b"])", R"([["a","b"]])"}) {
    std::string json = base;
    json.replace(json.find("MERGES"), 6, merges);
    const Vocab v = hf_import_json(json, "", "t.json");
    EXPECT_EQ(v.pre, "gpt-2");
    ASSERT_EQ(v.merges.size(), 1u);
    EXPECT_EQ(v.merges[0].second, "b");
    EXPECT_EQ(v.types[3], TokenType::Control);
  }
  EXPECT_THROW(hf_import_json("{", "", "t.json"), Error);
  EXPECT_THROW(hf_import_json(R"({"model":{"type":"WordPiece"}})", "", "t.json"), Error);
}

// Regression: SentencePiece-style tokenizer.json pieces were scored -id, but HF merges by rank,
// and Llama 2 ranks its whitespace runs ("▁▁", id 259) after every other merge.
TEST(HfImport, SpmScoresFollowMergeRankNotId) {
  const std::string json = R"({"model":{"type":"BPE","byte_fallback":true,"unk_token":"<unk>",
    "vocab":{"<unk>":0,"<s>":1,"</s>":2,"▁":3,"a":4,"▁▁":5,"▁a":6},"merges":["▁ a","▁ ▁"]},
    "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},
      {"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
    "added_tokens":[{"id":0,"content":"<unk>","special":true},{"id":1,"content":"<s>","special":true},
      {"id":2,"content":"</s>","special":true}]})";
  const Vocab v = hf_import_json(json, "", "t.json");
  ASSERT_EQ(v.type, VocabType::Spm);
  EXPECT_GT(v.scores[6], v.scores[5]);  // "▁a" (rank 0) before "▁▁" (rank 1)
  const Tokenizer tok(v);
  // " a" -> "▁▁a": HF merges "▁ a" first, giving [▁, ▁a]; by id it would be [▁▁, a].
  EXPECT_EQ(tok.encode(" a", false, false), (std::vector<int32_t>{3, 6}));
}

TEST(HfImport, PatternRewriteUsesWhiteSpaceProperty) {
  const PreTokenizer pre("llama-bpe");
  std::vector<std::string_view> pieces;
  // U+0085 (NEL) is White_Space: Oniguruma's \s matches it, plain PCRE2 \s does not.
  pre.split("a\xC2\x85\xC2\x85" "b", pieces);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[1], "\xC2\x85");
}

}  // namespace
}  // namespace velocity::tokenizer
