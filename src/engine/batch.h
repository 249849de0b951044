// One forward step's input: any mix of prefill and decode tokens over any set of sequences.
//
// Token i is token `tokens[i]` at position `positions[i]` of sequence (KV slot) `seq_ids[i]`.
// A step writes every token's K/V at (seq, position) and each token attends to positions
// [0, position] of its own sequence: tokens of one sequence must appear in increasing position
// order, and the positions before a sequence's first token in the batch must already be in the
// cache (written by earlier steps). Logits are returned for the tokens with `logits[i] != 0`, in
// batch order.
#pragma once

#include <cstdint>
#include <vector>

namespace velocity::engine {

struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> seq_ids;
  std::vector<uint8_t> logits;

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_logits() const {
    int64_t n = 0;
    for (uint8_t l : logits) n += l != 0;
    return n;
  }
  void clear() {
    tokens.clear();
    positions.clear();
    seq_ids.clear();
    logits.clear();
  }
  void add(int32_t token, int32_t position, int32_t seq_id, bool want_logits) {
    tokens.push_back(token);
    positions.push_back(position);
    seq_ids.push_back(seq_id);
    logits.push_back(want_logits ? 1 : 0);
  }
};

}  // namespace velocity::engine
