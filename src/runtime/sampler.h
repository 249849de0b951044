// The sampler chain of one sequence: logits [n_vocab] -> one token id.
//
// Order of operations (llama.cpp's default chain, restricted to what we offer):
//   1. logit bias            logit[t] += bias (a -inf bias bans t)
//   2. penalties             repeat penalty over the last `repeat_last_n` accepted tokens, then
//                            presence / frequency penalties over every accepted token
//   3. temperature == 0      greedy: argmax, ties to the lowest id; no random number is drawn
//      temperature  > 0      top-k -> top-p -> min-p -> temperature -> softmax -> one draw
// Top-p and min-p measure probabilities at temperature 1 (as llama.cpp does: temperature comes
// after them), so the set they keep does not depend on the temperature.
//
// Randomness: xoshiro256** (Blackman & Vigna) seeded by four outputs of splitmix64(seed); one
// draw per non-greedy sample() is u = (next() >> 11) * 2^-53, a double in [0, 1). The walk over
// the kept candidates is in double and in a fixed order (sorted by logit descending, ties to the
// lower id, whenever a filter sorted them; by id otherwise), so a seed gives the same tokens on
// every platform and standard library.
//
// Cost per token: O(n_vocab) to copy and scan the logits, plus
//   top-k:  nth_element + sort of the k survivors, O(n_vocab + k log k);
//   top-p without top-k: a growing partial sort (the first 128, 256, ... sorted until the
//   prefix holds mass p), O(n_vocab log(m / 128)) for a nucleus of m tokens; a flat
//   distribution degrades to a full sort, O(n_vocab log n_vocab).
// Buffers are allocated once in the constructor; sample() and accept() never allocate.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace velocity::runtime {

struct LogitBias {
  int32_t token = 0;  // token id, in [0, n_vocab)
  float bias = 0;     // added to the token's logit; -inf bans the token; +inf and NaN are errors
};

struct SamplingParams {
  float temperature = 1.0f;           // >= 0; 0 = greedy (argmax, ties to the lowest id)
  int32_t top_k = 0;                  // keep the k highest logits; 0 = off; >= n_vocab keeps all
  float top_p = 1.0f;                 // in (0, 1]: keep the smallest prefix of the sorted distribution
                                      // whose mass is >= top_p; 1 = off
  float min_p = 0.0f;                 // in [0, 1]: keep tokens with p >= min_p * p_max; 0 = off
  float repeat_penalty = 1.0f;        // > 0; llama.cpp semantics: for each distinct token among the
                                      // last repeat_last_n accepted, a positive logit is divided by it
                                      // and a negative one multiplied; 1 = off
  int32_t repeat_last_n = 64;         // >= 0: window of the repeat penalty in tokens; 0 = off
  float presence_penalty = 0.0f;      // finite; OpenAI semantics: logit -= presence_penalty once
                                      // for every token accepted at least once; 0 = off
  float frequency_penalty = 0.0f;     // finite; OpenAI semantics: logit -= frequency_penalty * count
                                      // where count = times the token was accepted; 0 = off
  std::vector<LogitBias> logit_bias;  // applied first; repeated tokens add up
  uint64_t seed = 0;                  // seeds the PRNG; same seed and inputs -> same tokens
};

class Sampler {
 public:
  // Throws velocity::Error naming the offending field when `params` or `n_vocab` is invalid.
  Sampler(SamplingParams params, int32_t n_vocab);

  // Picks a token from `logits` [n_vocab]. Does not record it: call accept() with the token
  // that is actually appended to the sequence. Throws velocity::Error on a wrong length, a NaN
  // or +inf logit (naming its position), or when every token is banned (-inf).
  int32_t sample(std::span<const float> logits);

  // Records `token` in the history that the penalties look at.
  void accept(int32_t token);

  // Back to the state right after construction: empty history, PRNG reseeded from `seed`.
  void reset();

  // Applies steps 1 and 2 (logit bias, penalties) to `logits` [n_vocab] in place; sample() uses
  // exactly this. Public so that callers (logprobs) and tests can see the adjusted logits.
  void apply_bias_and_penalties(std::span<float> logits) const;

  const SamplingParams& params() const { return params_; }
  int32_t n_vocab() const { return n_vocab_; }

  // True when sample() is the argmax of the raw logits (greedy with no logit bias and no
  // penalties): the model can then compute the token where the logits are (engine::Output::Token)
  // instead of copying them out.
  bool is_argmax() const;

 private:
  struct Candidate {
    float logit;
    int32_t id;
  };

  double next_uniform();  // [0, 1), 53 random bits
  uint64_t next_u64();    // xoshiro256**

  // Steps of the non-greedy chain over candidates_[0, n_candidates_).
  void apply_top_k();
  void apply_top_p();
  void apply_min_p();
  int32_t draw();

  SamplingParams params_;
  int32_t n_vocab_ = 0;

  // History for the penalties.
  std::vector<int32_t> recent_;               // ring buffer of the last repeat_last_n accepted tokens
  size_t recent_next_ = 0;                    // slot the next accepted token goes to
  size_t recent_size_ = 0;                    // filled slots, <= recent_.size()
  std::vector<int32_t> counts_;               // [n_vocab] times each token was accepted
  std::vector<int32_t> seen_;                 // distinct accepted tokens, capacity n_vocab
  mutable std::vector<uint8_t> repeat_done_;  // [n_vocab] scratch: token already penalised

  // Per-token scratch.
  std::vector<float> work_;            // [n_vocab] adjusted logits
  std::vector<Candidate> candidates_;  // [n_vocab] surviving tokens, n_candidates_ in use
  size_t n_candidates_ = 0;
  bool sorted_ = false;  // candidates are in descending logit order
  float max_logit_ = -std::numeric_limits<float>::infinity();

  uint64_t rng_[4] = {};  // xoshiro256** state
};

}  // namespace velocity::runtime
