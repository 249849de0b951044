#include "tokenizer/tokenizer.h"

#include <charconv>
#include <system_error>

#include "core/error.h"
#include "tokenizer/nfc.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/special.h"
#include "tokenizer/spm.h"
#include "tokenizer/utf8.h"

namespace velocity::tokenizer {

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  vocab_.validate("tokenizer");
  token_ids_.reserve(vocab_.size());
  for (size_t id = 0; id < vocab_.size(); ++id) {
    // The first id wins for duplicated texts (as llama.cpp's token_to_id map).
    token_ids_.try_emplace(vocab_.tokens[id], static_cast<int32_t>(id));
  }
  if (vocab_.type == VocabType::Bpe) {
    pre_ = std::make_unique<PreTokenizer>(vocab_.pre);
    bpe_ = std::make_unique<BpeModel>(vocab_, token_ids_);
  } else {
    spm_ = std::make_unique<SpmModel>(vocab_, token_ids_);
  }
  special_ = std::make_unique<SpecialSplitter>(vocab_);
}

Tokenizer::~Tokenizer() = default;

int32_t Tokenizer::token_id(std::string_view text) const {
  const auto it = token_ids_.find(text);
  return it == token_ids_.end() ? kNoToken : it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return false;
  const TokenType t = vocab_.types[id];
  return t == TokenType::Control || t == TokenType::Unknown;
}

void Tokenizer::encode_text(std::string_view text, bool /*first_fragment*/, bool after_special,
                            std::vector<int32_t>& out) const {
  std::string normalized;
  if (vocab_.normalize_nfc && !nfc_is_quick_yes(text)) {
    normalized = nfc_normalize(text);
    text = normalized;
  }
  if (bpe_) {
    thread_local std::vector<std::string_view> pieces;
    pieces.clear();
    pre_->split(text, pieces);
    for (std::string_view piece : pieces) bpe_->encode_word(piece, out);
    return;
  }
  // SentencePiece: llama.cpp prefixes a space to text at the start and after every special token.
  std::string escaped;
  if (vocab_.add_space_prefix && after_special) {
    escaped = spm_escape_spaces(std::string(" ").append(text));
  } else {
    escaped = spm_escape_spaces(text);
  }
  spm_->encode(escaped, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  const std::string valid = utf8_sanitize(text);
  if (add_special && vocab_.add_bos) out.push_back(vocab_.bos);
  thread_local std::vector<Fragment> fragments;
  fragments.clear();
  special_->split(valid, parse_special, fragments);
  // Fragments view `valid`; a nested encode on this thread would clobber the thread_local, so
  // take a copy of the (small) fragment list.
  const std::vector<Fragment> frags = fragments;
  bool after_special = true;
  for (const Fragment& f : frags) {
    if (f.token != kNoToken) {
      out.push_back(f.token);
      after_special = true;
    } else {
      encode_text(f.text, false, after_special, out);
      after_special = false;
    }
  }
  if (add_special && vocab_.add_eos) out.push_back(vocab_.eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  const std::string& text = vocab_.tokens[id];
  const TokenType type = vocab_.types[id];
  if (type == TokenType::Control || type == TokenType::UserDefined || type == TokenType::Unknown) return text;
  if (vocab_.type == VocabType::Spm) {
    if (type == TokenType::Byte && text.size() == 6 && text.starts_with("<0x") && text.back() == '>') {
      // A malformed byte token ("<0xZZ>", from a bad file) falls through to its text.
      unsigned value = 0;
      const auto [end, ec] = std::from_chars(text.data() + 3, text.data() + 5, value, 16);
      if (ec == std::errc() && end == text.data() + 5) return std::string(1, static_cast<char>(value));
    }
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
        out += ' ';
        i += 2;
      } else {
        out += text[i];
      }
    }
    return out;
  }
  // Byte-level: every code point of the token stands for one byte; a code point outside the
  // alphabet (possible only in a malformed vocabulary) is kept as its UTF-8.
  const ByteLevel& bl = byte_level();
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = utf8_valid_length(text, pos);
    if (n == 0) {
      out += text[pos++];
      continue;
    }
    size_t p = pos;
    const char32_t cp = utf8_next(text, p);
    if (cp < bl.cp_to_byte.size() && bl.cp_to_byte[cp] >= 0) {
      out += static_cast<char>(bl.cp_to_byte[cp]);
    } else {
      out.append(text, pos, n);
    }
    pos += n;
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    std::string piece = token_to_piece(id);
    if (first && !piece.empty()) {
      if (vocab_.type == VocabType::Spm && vocab_.add_space_prefix && piece[0] == ' ') piece.erase(0, 1);
      first = false;
    }
    out += piece;
  }
  return utf8_sanitize(out);
}

}  // namespace velocity::tokenizer
