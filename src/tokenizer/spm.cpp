#include "tokenizer/spm.h"

#include <algorithm>

#include "core/error.h"

namespace velocity::tokenizer {

SpmModel::SpmModel(const Vocab& vocab, const TokenMap& token_ids) : vocab_(vocab), token_ids_(token_ids) {
  for (int b = 0; b < 256; ++b) {
    const std::string hex = fmt::format("<0x{:02X}>", b);
    auto it = token_ids.find(hex);
    if (it == token_ids.end()) it = token_ids.find(std::string(1, static_cast<char>(b)));
    byte_token_[b] = it != token_ids.end() ? it->second : vocab.unk;
  }
}

std::string spm_escape_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') {
      out += "\xE2\x96\x81";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t offset;  // into the text
  uint32_t length;  // bytes; 0 once merged into its left neighbour
};

struct Candidate {
  float score;
  int32_t left;
  int32_t right;
  uint32_t length;  // combined length when queued (a changed side makes it stale)
  // Max-heap on score, ties to the leftmost pair.
  bool operator<(const Candidate& o) const { return score != o.score ? score < o.score : left > o.left; }
};

}  // namespace

void SpmModel::encode(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  if (text.size() >= UINT32_MAX) fail("SPM input of {} bytes is too long", text.size());
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (size_t pos = 0; pos < text.size();) {
    const uint8_t b = static_cast<uint8_t>(text[pos]);
    size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    len = std::min(len, text.size() - pos);
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, pos + len < text.size() ? index + 1 : -1, static_cast<uint32_t>(pos),
                       static_cast<uint32_t>(len)});
    pos += len;
  }
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    const auto it = token_ids_.find(text.substr(l.offset, l.length + r.length));
    if (it == token_ids_.end()) return;
    heap.push_back({vocab_.scores[it->second], left, right, l.length + r.length});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != c.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const std::string_view piece = text.substr(s.offset, s.length);
    const auto it = token_ids_.find(piece);
    if (it != token_ids_.end()) {
      out.push_back(it->second);
      continue;
    }
    // Only single characters can miss the vocabulary (merges always form tokens).
    for (char ch : piece) {
      const int32_t id = byte_token_[static_cast<uint8_t>(ch)];
      if (id != kNoToken) out.push_back(id);
    }
  }
}

}  // namespace velocity::tokenizer
