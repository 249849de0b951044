// Regex pre-tokenizers of byte-level BPE vocabularies, chosen by `tokenizer.ggml.pre`.
//
// Each pre-tokenizer is a list of regexes applied in turn, as Hugging Face's
// Sequence[Split(pattern, behavior = Isolated), ...]: every match and every gap between matches
// becomes a piece, and the next regex splits each piece again. The patterns are the ones of the
// models' tokenizer.json files; Hugging Face runs them with Oniguruma, we run them with PCRE2
// (UTF + UCP, JIT). The one difference that matters, \s (Oniguruma: the Unicode White_Space
// property, which includes U+0085; PCRE2: only separators and \t-\r), is removed by rewriting \s
// and \S into explicit White_Space classes before compiling.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace velocity::tokenizer {

// True for a `tokenizer.ggml.pre` name this module can split for.
bool pre_tokenizer_known(std::string_view pre);
// "gpt-2, llama-bpe, ..." for error messages.
std::string known_pre_tokenizers();
// The Hugging Face regexes (in order) of a known pre-tokenizer; empty when unknown.
const std::vector<std::string>& pre_tokenizer_patterns(std::string_view pre);
// The pre name whose patterns are exactly `patterns`, or "" (used by hf_import).
std::string pre_tokenizer_for_patterns(const std::vector<std::string>& patterns);
// Rewrites a Hugging Face (Oniguruma) pattern into an equivalent PCRE2 pattern.
std::string oniguruma_to_pcre2(std::string_view pattern);

class PreTokenizer {
 public:
  // Compiles the patterns of `pre` once; throws velocity::Error for an unknown name.
  explicit PreTokenizer(std::string_view pre);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Splits valid UTF-8 `text` into pieces (views into `text`), appended to `pieces` in order.
  // Thread-safe: match state lives in per-thread scratch.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Regex;
  std::vector<std::unique_ptr<Regex>> stages_;
};

}  // namespace velocity::tokenizer
