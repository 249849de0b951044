#include "tokenizer/bpe.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace velocity::tokenizer {

BpeModel::BpeModel(const Vocab& vocab, const TokenMap& token_ids)
    : token_ids_(token_ids), ignore_merges_(vocab.ignore_merges) {
  const ByteLevel& bl = byte_level();
  for (int b = 0; b < 256; ++b) {
    const auto it = token_ids.find(bl.byte_to_text[b]);
    byte_token_[b] = it == token_ids.end() ? kNoToken : it->second;
  }
  merges_.reserve(vocab.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const auto& [left, right] = vocab.merges[rank];
    const auto l = token_ids.find(left), r = token_ids.find(right);
    joined.assign(left).append(right);
    const auto m = token_ids.find(joined);
    if (l == token_ids.end() || r == token_ids.end() || m == token_ids.end()) continue;
    // The first (lowest-rank) occurrence of a pair wins, as in a rank map built in file order.
    merges_.try_emplace(key(l->second, r->second), Merge{static_cast<int32_t>(rank), m->second});
  }
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
};

struct Candidate {
  int32_t rank;
  int32_t left;   // symbol index
  int32_t right;  // symbol index
  int32_t left_id;
  int32_t right_id;
  int32_t result;
  // Min-heap on (rank, left position) through std::push_heap's max-heap.
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
};

struct WordScratch {
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::string encoded;
};

}  // namespace

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  const auto* bytes = reinterpret_cast<const uint8_t*>(word.data());
  if (word.size() == 1) {
    if (byte_token_[bytes[0]] != kNoToken) out.push_back(byte_token_[bytes[0]]);
    return;
  }
  thread_local WordScratch scratch;
  if (ignore_merges_) {
    std::string& encoded = scratch.encoded;
    encoded.clear();
    const ByteLevel& bl = byte_level();
    for (size_t i = 0; i < word.size(); ++i) encoded += bl.byte_to_text[bytes[i]];
    const auto it = token_ids_.find(encoded);
    if (it != token_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<Symbol>& symbols = scratch.symbols;
  std::vector<Candidate>& heap = scratch.heap;
  symbols.clear();
  heap.clear();
  const int32_t n = static_cast<int32_t>(word.size());
  symbols.reserve(word.size());
  for (int32_t i = 0; i < n; ++i) symbols.push_back({byte_token_[bytes[i]], i - 1, i + 1 < n ? i + 1 : -1});

  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t l = symbols[left].id, r = symbols[right].id;
    if (l < 0 || r < 0) return;
    const Merge* m = find_merge(l, r);
    if (!m) return;
    heap.push_back({m->rank, left, right, l, r, m->result});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_add(i, i + 1);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[c.left];
    // Stale when either side has changed since the candidate was queued.
    if (left.id != c.left_id || left.next != c.right || symbols[c.right].id != c.right_id) continue;
    Symbol& right = symbols[c.right];
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = kNoToken - 1;  // dead
    right.prev = right.next = -1;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) out.push_back(symbols[i].id);
  }
}

}  // namespace velocity::tokenizer
