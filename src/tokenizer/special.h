// Splitting text on special and added tokens before the model runs.
//
// As Hugging Face's added-token matcher: the leftmost occurrence of any candidate token wins,
// the longest one when several start there. Candidates: user-defined (added, non-special) tokens
// always; control and unknown tokens only with parse_special (llama.cpp's rule; Hugging Face
// matches special added tokens always, which is parse_special = true), and then not where they
// would overlap a plain range (text that must stay text, e.g. a chat message's content).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace velocity::tokenizer {

struct Fragment {
  int32_t token = kNoToken;  // a matched token, or kNoToken for raw text
  std::string_view text;     // the raw text (or the token's text in the input)
};

// Bytes [begin, end) of a text.
struct TextRange {
  size_t begin = 0, end = 0;
};

class SpecialSplitter {
 public:
  explicit SpecialSplitter(const Vocab& vocab);

  // `plain`: byte ranges of `text`, sorted, disjoint and non-empty, where no control or unknown
  // token is matched (one that would overlap them is left as text), as with parse_special = false.
  void split(std::string_view text, bool parse_special, std::span<const TextRange> plain,
             std::vector<Fragment>& out) const;
  // Appends where the text of a control or unknown token occurs in `text`: every occurrence, at
  // every position (overlapping ones merged into one range), in order. Returns the id of the
  // first token found, or kNoToken.
  int32_t find_control_texts(std::string_view text, std::vector<TextRange>& out) const;
  bool empty() const { return nodes_.size() == 1; }

 private:
  // A byte trie of the candidates' texts: the tokens that start at a position are found in as
  // many steps as the longest of them has bytes, whatever their number (Llama 3 has 256 control
  // tokens beginning "<|"; a list per first byte made text full of "<|" cost ~1.7 s a MiB).
  struct Node {
    std::vector<std::pair<uint8_t, uint32_t>> children;  // next byte -> node
    int32_t control = kNoToken;       // lowest id of a control / unknown token with this text
    int32_t user_defined = kNoToken;  // lowest id of a user-defined token with this text
  };
  const Node* child(const Node& node, uint8_t byte) const;
  // The longest token at text[pos] that may match there: user-defined ones always; control and
  // unknown ones with parse_special and when they end by `plain_from` (the first plain byte at
  // or after pos; npos for none). The lowest id among tokens of the same text.
  int32_t match_at(std::string_view text, size_t pos, bool parse_special, size_t plain_from) const;

  const Vocab& vocab_;
  std::vector<Node> nodes_;                      // [0] is the root
  std::array<bool, 256> starts_any_{};           // first bytes of any candidate
  std::array<bool, 256> starts_user_defined_{};  // first bytes of user-defined candidates
};

}  // namespace velocity::tokenizer
