#include "tokenizer/stream_decode.h"

#include "tokenizer/utf8.h"

namespace velocity::tokenizer {

namespace {

// True when bytes [pos, end) are a proper prefix of some valid UTF-8 sequence (more bytes
// could complete it).
bool incomplete_prefix(std::string_view s, size_t pos) {
  size_t subpart = 0;
  if (utf8_valid_length(s, pos, &subpart) != 0) return false;
  // The maximal subpart reaching the end of the buffer means every byte so far was acceptable.
  return pos + subpart == s.size() && static_cast<uint8_t>(s[pos]) >= 0xC2 && static_cast<uint8_t>(s[pos]) <= 0xF4;
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  std::string piece = tokenizer_.token_to_piece(id);
  const Vocab& vocab = tokenizer_.vocab();
  if (first_ && !piece.empty()) {
    if (vocab.type == VocabType::Spm && vocab.add_space_prefix && piece[0] == ' ') piece.erase(0, 1);
    first_ = false;
  }
  pending_ += piece;
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    size_t subpart = 0;
    const size_t n = utf8_valid_length(pending_, pos, &subpart);
    if (n > 0) {
      out.append(pending_, pos, n);
      pos += n;
    } else if (incomplete_prefix(pending_, pos)) {
      break;  // wait for the rest of this character
    } else {
      append_utf8(out, kReplacementChar);
      pos += subpart;
    }
  }
  pending_.erase(0, pos);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace velocity::tokenizer
