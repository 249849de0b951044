// Log probabilities of a step's logits: what `logprobs` in the OpenAI API returns and what
// `velocity perplexity` averages. Both use log_sum_exp below, so a sampled token's logprob equals
// perplexity's number for the same logits. Values are of the raw logits (before logit_bias,
// penalties and sampling filters), as OpenAI documents them.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace velocity::runtime {

inline constexpr int kMaxTopLogprobs = 20;

// log sum_v exp(row[v]), in double: log_softmax(row)[v] = row[v] - log_sum_exp(row).
double log_sum_exp(std::span<const float> row);

// One sampled token's logprob and the n_top most likely tokens of its step (descending; ties by
// lower token id). Fixed size: filling one allocates nothing.
struct TokenLogprobs {
  int32_t token = -1;
  float logprob = 0;
  int32_t n_top = 0;
  std::array<int32_t, kMaxTopLogprobs> top_tokens{};
  std::array<float, kMaxTopLogprobs> top_logprobs{};
};

// Fills `out` for `token` sampled from `row`, with min(n_top, kMaxTopLogprobs, row.size()) top
// entries. The row must be finite where it matters (the sampler has already rejected NaN/+inf).
void token_logprobs(std::span<const float> row, int32_t token, int32_t n_top, TokenLogprobs& out);

}  // namespace velocity::runtime
