// Streaming detokenizer for generation: push one token id at a time, get back only complete
// UTF-8 characters. A token that ends inside a multi-byte character (byte-level BPE splits
// emoji and CJK across tokens; SPM emits <0xXX> bytes) is held until the character completes.
// Bytes that can never form a character become U+FFFD as soon as that is certain; flush() turns a
// still-incomplete tail into U+FFFD, so the concatenated output equals Tokenizer::decode of all
// the ids (Hugging Face's lossy decode). Never throws on token content.
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace velocity::tokenizer {

class StreamDecoder {
 public:
  // at_text_start: the first token pushed begins the text, so SentencePiece's added space prefix
  // is removed from it (as decode() does). Pass false when the tokens continue a prompt: a
  // generated " Paris" must keep its space.
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false, bool at_text_start = true)
      : tokenizer_(tokenizer), skip_special_(skip_special), first_(at_text_start) {}

  // Text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held, invalid bytes as U+FFFD; then resets for a new sequence.
  std::string flush();
  // Bytes held back waiting for the rest of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  bool first_;
  std::string pending_;
};

}  // namespace velocity::tokenizer
