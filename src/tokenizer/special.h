// Splitting text on special and added tokens before the model runs.
//
// As Hugging Face's added-token matcher: the leftmost occurrence of any candidate token wins,
// the longest one when several start there. Candidates: user-defined (added, non-special) tokens
// always; control and unknown tokens only with parse_special (llama.cpp's rule; Hugging Face
// matches special added tokens always, which is parse_special = true).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace velocity::tokenizer {

struct Fragment {
  int32_t token = kNoToken;  // a matched token, or kNoToken for raw text
  std::string_view text;     // the raw text (or the token's text in the input)
};

class SpecialSplitter {
 public:
  explicit SpecialSplitter(const Vocab& vocab);

  void split(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;
  bool empty() const { return all_.empty(); }

 private:
  struct Candidates {
    // Token ids by first byte, longest text first.
    std::array<std::vector<int32_t>, 256> by_first_byte;
    bool empty() const;
  };
  int32_t match_at(const Candidates& c, std::string_view text, size_t pos) const;

  const Vocab& vocab_;
  Candidates all_;            // control + unknown + user-defined
  Candidates user_defined_;   // user-defined only
};

}  // namespace velocity::tokenizer
