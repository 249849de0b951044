#include "tokenizer/tokenizer.h"

#include <algorithm>
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

int32_t Tokenizer::find_control_texts(std::string_view text, std::vector<TextRange>& out) const {
  return special_->find_control_texts(text, out);
}

bool Tokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return false;
  const TokenType t = vocab_.types[id];
  return t == TokenType::Control || t == TokenType::Unknown;
}

// Polls a cancel flag once per kBytes of input tokenized: one relaxed load per 4 KiB is free next
// to tokenizing them, and a long prompt stops soon after the flag is set.
struct Tokenizer::CancelPoll {
  static constexpr size_t kBytes = 4096;
  const std::atomic<bool>* flag = nullptr;
  size_t since_check = 0;

  void add(size_t n_bytes) {
    since_check += n_bytes;
    if (since_check < kBytes) return;
    since_check = 0;
    check();
  }
  void check() const {
    if (flag && flag->load(std::memory_order_relaxed)) throw Cancelled("tokenization was cancelled");
  }
};

void Tokenizer::encode_text(std::string_view text, bool after_special, CancelPoll& poll,
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
    for (std::string_view piece : pieces) {
      poll.add(piece.size());
      bpe_->encode_word(piece, out);
    }
    return;
  }
  // One SentencePiece fragment is encoded whole (its merges span it), so polls fall between
  // fragments.
  poll.add(text.size());
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
  EncodeOptions options;
  options.add_special = add_special;
  options.parse_special = parse_special;
  return encode(text, options);
}

namespace {

// Ranges sorted, clamped to `size`, empty ones dropped, overlapping or touching ones merged.
std::vector<TextRange> normalize_ranges(std::vector<TextRange> ranges, size_t size) {
  for (TextRange& r : ranges) {
    r.end = std::min(r.end, size);
    r.begin = std::min(r.begin, r.end);
  }
  std::erase_if(ranges, [](const TextRange& r) { return r.begin == r.end; });
  std::sort(ranges.begin(), ranges.end(), [](const TextRange& a, const TextRange& b) { return a.begin < b.begin; });
  std::vector<TextRange> merged;
  for (const TextRange& r : ranges) {
    if (!merged.empty() && r.begin <= merged.back().end) merged.back().end = std::max(merged.back().end, r.end);
    else merged.push_back(r);
  }
  return merged;
}

// utf8_sanitize(text), with `ranges` (normalized, over `text`) moved to the bytes their input
// became. A boundary inside a replaced subpart or inside a code point widens its range to the
// whole of it, so the range still covers every byte that came from it.
std::string sanitize_with_ranges(std::string_view text, std::vector<TextRange>& ranges) {
  if (ranges.empty() || utf8_is_valid(text)) return utf8_sanitize(text);
  std::string out;
  out.reserve(text.size() + 8);
  std::vector<TextRange> moved = ranges;
  size_t next_begin = 0, next_end = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t bad = 0;
    const size_t n = utf8_valid_length(text, pos, &bad);
    const size_t unit = n > 0 ? n : bad;  // input bytes of this code point or invalid subpart
    const size_t out_begin = out.size();
    if (n > 0) out.append(text.substr(pos, n));
    else append_utf8(out, kReplacementChar);
    // Boundaries at or inside this unit: a begin moves to its start, an end to its end.
    for (; next_begin < ranges.size() && ranges[next_begin].begin < pos + unit; ++next_begin)
      moved[next_begin].begin = out_begin;
    for (; next_end < ranges.size() && ranges[next_end].end <= pos + unit; ++next_end)
      moved[next_end].end = out.size();
    pos += unit;
  }
  ranges = normalize_ranges(std::move(moved), out.size());
  return out;
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  CancelPoll poll{options.cancel};
  poll.check();
  std::vector<TextRange> plain;
  if (options.parse_special && !options.plain.empty())
    plain = normalize_ranges(std::vector<TextRange>(options.plain.begin(), options.plain.end()), text.size());
  const std::string valid = sanitize_with_ranges(text, plain);
  std::vector<int32_t> out;
  if (options.add_special && vocab_.add_bos) out.push_back(vocab_.bos);
  thread_local std::vector<Fragment> fragments;
  fragments.clear();
  special_->split(valid, options.parse_special, plain, fragments);
  // Fragments view `valid`; a nested encode on this thread would clobber the thread_local, so
  // take a copy of the (small) fragment list.
  const std::vector<Fragment> frags = fragments;
  bool after_special = true;
  for (const Fragment& f : frags) {
    if (f.token != kNoToken) {
      out.push_back(f.token);
      after_special = true;
    } else {
      encode_text(f.text, after_special, poll, out);
      after_special = false;
    }
  }
  if (options.add_special && vocab_.add_eos) out.push_back(vocab_.eos);
  return out;
}

std::vector<int32_t> Tokenizer::encode_fim(std::string_view prefix, std::string_view suffix,
                                           const std::atomic<bool>* cancel) const {
  if (!vocab_.has_fim()) fail("the vocabulary has no fill-in-the-middle markers");
  EncodeOptions options;
  options.add_special = false;
  options.parse_special = false;
  options.cancel = cancel;
  std::vector<int32_t> out;
  if (vocab_.add_bos) out.push_back(vocab_.bos);
  out.push_back(vocab_.fim_pre);
  for (int32_t id : encode(prefix, options)) out.push_back(id);
  out.push_back(vocab_.fim_suf);
  for (int32_t id : encode(suffix, options)) out.push_back(id);
  out.push_back(vocab_.fim_mid);
  return out;
}

std::vector<int32_t> Tokenizer::encode_infill(std::string_view prefix, std::string_view cursor,
                                              std::string_view suffix, std::span<const InfillChunk> extra,
                                              const InfillLimits& limits, const std::atomic<bool>* cancel) const {
  if (!vocab_.has_fim()) fail("the vocabulary has no fill-in-the-middle markers");
  EncodeOptions options;
  options.add_special = false;
  options.parse_special = false;
  options.cancel = cancel;
  auto append = [&](std::vector<int32_t>& out, std::string_view t) {
    for (int32_t id : encode(t, options)) out.push_back(id);
  };
  std::vector<int32_t> ex;  // the extra context
  const bool sep = vocab_.fim_sep != kNoToken;
  if (vocab_.fim_rep != kNoToken) {
    ex.push_back(vocab_.fim_rep);
    append(ex, "myproject\n");
  }
  for (const InfillChunk& chunk : extra) {
    if (sep) {
      ex.push_back(vocab_.fim_sep);
      append(ex, (chunk.filename.empty() ? std::string("tmp") : chunk.filename) + "\n");
    } else {
      append(ex, "\n\n--- snippet ---\n\n");
    }
    append(ex, chunk.text);
  }
  if (sep) {
    ex.push_back(vocab_.fim_sep);
    append(ex, "filename\n");
  }
  std::vector<int32_t> pre, cur, suf;
  append(pre, prefix);
  append(cur, cursor);
  append(suf, suffix);
  if (limits.n_batch > 0) {
    const int64_t nb = limits.n_batch;
    const size_t pre_take = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(pre.size()), 3 * (nb / 4)));
    const size_t suf_take = static_cast<size_t>(std::min<int64_t>(
        static_cast<int64_t>(suf.size()), std::max<int64_t>(0, nb / 4 - (2 + static_cast<int64_t>(cur.size())))));
    const int64_t ex_room = limits.n_ctx - nb - 2 * std::max<int64_t>(0, limits.n_predict);
    const size_t ex_take =
        static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(ex.size()), std::max<int64_t>(0, ex_room)));
    pre.erase(pre.begin(), pre.end() - static_cast<std::ptrdiff_t>(pre_take));
    suf.resize(suf_take);
    ex.erase(ex.begin(), ex.end() - static_cast<std::ptrdiff_t>(ex_take));
  }
  std::vector<int32_t> out = std::move(ex);
  if (vocab_.add_bos) out.push_back(vocab_.bos);
  out.push_back(vocab_.fim_pre);
  out.insert(out.end(), pre.begin(), pre.end());
  out.insert(out.end(), cur.begin(), cur.end());
  out.push_back(vocab_.fim_suf);
  out.insert(out.end(), suf.begin(), suf.end());
  out.push_back(vocab_.fim_mid);
  return out;
}

std::vector<int32_t> Tokenizer::encode_infill(std::string_view prefix, std::string_view cursor,
                                              std::string_view suffix, std::span<const InfillChunk> extra) const {
  return encode_infill(prefix, cursor, suffix, extra, InfillLimits{});
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
