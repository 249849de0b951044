// SentencePiece BPE as llama.cpp's llm_tokenizer_spm runs it on a `tokenizer.ggml.model = llama`
// vocabulary: the text (spaces already escaped to ▁) starts as one symbol per UTF-8 character;
// the adjacent pair whose concatenation is a token with the highest score is merged (ties: the
// leftmost) until no pair forms a token; a final symbol that is not a token is emitted as its
// bytes, <0xXX> byte-fallback tokens (or the byte's own one-character token, or UNK).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/vocab.h"

namespace velocity::tokenizer {

class SpmModel {
 public:
  SpmModel(const Vocab& vocab, const TokenMap& token_ids);

  // Appends the ids of `text` (valid UTF-8, spaces already replaced by ▁).
  void encode(std::string_view text, std::vector<int32_t>& out) const;

 private:
  const Vocab& vocab_;
  const TokenMap& token_ids_;
  std::array<int32_t, 256> byte_token_{};  // <0xXX> (else the byte as text, else UNK, else none)
};

// Replaces every ' ' by U+2581 (▁), SentencePiece's visible space.
std::string spm_escape_spaces(std::string_view text);

}  // namespace velocity::tokenizer
