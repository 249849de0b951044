// One forward step's input: any mix of prefill and decode tokens over any set of sequences.
//
// Token i is token `tokens[i]` at position `positions[i]` of sequence (KV slot) `seq_ids[i]`.
// A step writes every token's K/V at (seq, position) and each token attends to positions
// [0, position] of its own sequence: tokens of one sequence must appear in increasing position
// order, and the positions before a sequence's first token in the batch must already be in the
// cache (written by earlier steps). `outputs[i]` says what the step returns for token i: nothing,
// its logits, or only its most likely next token (the argmax, computed where the logits are, so
// a GPU need not copy a vocabulary of floats per row to the host). Output rows are the tokens
// with an output, in batch order.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace velocity::engine {

enum class Output : uint8_t {
  None = 0,
  Logits = 1,  // the row of n_vocab logits
  Token = 2,   // only the argmax (lowest id among ties)
};

struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> seq_ids;
  std::vector<Output> outputs;
  // The first n_decode tokens are decode tokens: each is its sequence's only token in the batch,
  // the one sampled from the previous step. A GPU runs them through its small-batch kernels and
  // the rest (prompt tokens) through its tensor-core ones; each kind computes a token's result
  // the same way whatever else shares the step, so greedy outputs do not depend on batching.
  // 0 (the default) treats every token as a prompt token, which is always correct.
  int64_t n_decode = 0;

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_outputs() const {
    int64_t n = 0;
    for (Output o : outputs) n += o != Output::None;
    return n;
  }
  void clear() {
    tokens.clear();
    positions.clear();
    seq_ids.clear();
    outputs.clear();
    n_decode = 0;
  }
  void add(int32_t token, int32_t position, int32_t seq_id, Output output) {
    tokens.push_back(token);
    positions.push_back(position);
    seq_ids.push_back(seq_id);
    outputs.push_back(output);
  }
  void add(int32_t token, int32_t position, int32_t seq_id, bool want_logits) {
    add(token, position, seq_id, want_logits ? Output::Logits : Output::None);
  }
};

// What a step returns, in host memory, valid until the next step.
struct StepOutput {
  int64_t n_rows = 0;               // output rows
  int64_t n_vocab = 0;
  const float* logits = nullptr;    // [n_rows, n_vocab]; row j is valid when its output was Logits
  const int32_t* tokens = nullptr;  // [n_rows]; tokens[j] is valid when row j's output was Token
  std::span<const float> row(int64_t j) const {
    return {logits + j * n_vocab, static_cast<size_t>(n_vocab)};
  }
};

}  // namespace velocity::engine
