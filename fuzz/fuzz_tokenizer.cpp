// libFuzzer target: encode / decode / stream-decode of arbitrary bytes on small vocabularies
// built in code (byte-level BPE with merges and special tokens; SentencePiece with byte
// fallback). First input byte: option bits; the rest: the text. Checks, besides no crash:
//   decode(encode(text)) == text with invalid UTF-8 replaced by U+FFFD (both vocabularies can
//   spell every byte), and the stream decoder's output equals decode().
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tokenizer/stream_decode.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using namespace velocity::tokenizer;

namespace {

Vocab make_bpe(const char* pre) {
  Vocab v;
  v.type = VocabType::Bpe;
  v.model = "gpt2";
  v.pre = pre;
  v.add_space_prefix = false;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_level().byte_to_text[b]);
  const char* extra[] = {"Ġt", "he", "Ġthe", "in", "Ġa", "er", "an", "ĠĠ", "ĠĠĠĠ", "ĊĊ", "Ġ1", "12", "123", "ab", "abab"};
  for (const char* t : extra) v.tokens.push_back(t);
  v.merges = {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"}, {"Ġ", "a"}, {"e", "r"}, {"a", "n"},
              {"Ġ", "Ġ"}, {"ĠĠ", "ĠĠ"}, {"Ċ", "Ċ"}, {"Ġ", "1"}, {"1", "2"}, {"12", "3"}, {"a", "b"}, {"ab", "ab"}};
  for (const char* t : {"<|end|>", "<|im_start|>", "<tool>"}) v.tokens.push_back(t);
  v.scores.assign(v.tokens.size(), 0.0f);
  v.types.assign(v.tokens.size(), TokenType::Normal);
  const size_t n = v.tokens.size();
  v.types[n - 3] = TokenType::Control;
  v.types[n - 2] = TokenType::Control;
  v.types[n - 1] = TokenType::UserDefined;
  v.eos = static_cast<int32_t>(n - 3);
  v.bos = static_cast<int32_t>(n - 2);
  v.add_bos = true;
  v.ignore_merges = std::string(pre) == "llama-bpe";
  v.normalize_nfc = std::string(pre) == "qwen2";
  return v;
}

Vocab make_spm() {
  Vocab v;
  v.type = VocabType::Spm;
  v.model = "llama";
  v.pre = "default";
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    v.tokens.push_back(buf);
    v.types.push_back(TokenType::Byte);
  }
  const char* pieces[] = {"\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "a", "\xE2\x96\x81" "ab", "\xE4\xB8\xAD", "x", "xx", "xxxx"};
  for (const char* p : pieces) {
    v.tokens.push_back(p);
    v.types.push_back(TokenType::Normal);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  for (size_t i = 259; i < v.tokens.size(); ++i) v.scores[i] = -static_cast<float>(i);
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  v.add_bos = true;
  return v;
}

void check(bool ok) {
  if (!ok) std::abort();
}

void exercise(const Tokenizer& tok, const std::string& text, bool add_special, bool parse_special) {
  const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
  for (int32_t id : ids) check(id >= 0 && id < tok.n_vocab());
  const std::string decoded = tok.decode(ids, /*skip_special=*/true);
  if (!parse_special && !add_special && !tok.vocab().normalize_nfc) {
    std::string expected = utf8_sanitize(text);
    if (tok.vocab().type == VocabType::Spm) {  // a literal ▁ in the text decodes as a space
      for (size_t pos; (pos = expected.find("\xE2\x96\x81")) != std::string::npos;) expected.replace(pos, 3, " ");
    }
    check(decoded == expected);
  }
  StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.flush();
  check(streamed == tok.decode(ids));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizer gpt2(make_bpe("gpt-2"));
  static const Tokenizer llama3(make_bpe("llama-bpe"));
  static const Tokenizer qwen2(make_bpe("qwen2"));
  static const Tokenizer o200k(make_bpe("gpt-4o"));
  static const Tokenizer deepseek(make_bpe("deepseek-llm"));
  static const Tokenizer deepseek3(make_bpe("deepseek-v3"));
  static const Tokenizer spm(make_spm());
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool add_special = flags & 1, parse_special = flags & 2;
  const Tokenizer* all[] = {&gpt2, &llama3, &qwen2, &o200k, &deepseek, &deepseek3, &spm};
  exercise(*all[(flags >> 2) % 7], text, add_special, parse_special);
  // Random ids through decode and the stream decoder.
  const Tokenizer& tok = *all[(flags >> 5) % 7];
  std::vector<int32_t> ids;
  for (size_t i = 1; i + 1 < size; i += 2) ids.push_back((data[i] | (data[i + 1] << 8)) % (tok.n_vocab() + 2) - 1);
  StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.flush();
  check(streamed == tok.decode(ids));
  return 0;
}
