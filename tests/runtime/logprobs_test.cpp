// runtime/logprobs: log-softmax values against a long-double computation, and the top entries
// against a full sort of the row.
#include "runtime/logprobs.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace velocity::runtime {
namespace {

long double reference_lse(const std::vector<float>& row) {
  long double sum = 0;
  for (float x : row) sum += std::exp(static_cast<long double>(x));
  return std::log(sum);
}

TEST(Logprobs, ValuesAndTopEntriesAgainstAFullSort) {
  std::mt19937 rng(7);
  for (int n : {1, 2, 5, 37, 1000, 32000}) {
    std::normal_distribution<float> normal(0.0f, 4.0f);
    std::vector<float> row(static_cast<size_t>(n));
    for (float& x : row) x = normal(rng);
    if (n > 10) row[3] = row[9] = row[n - 1] = 30.0f;  // a three-way tie at the top
    const long double lse = reference_lse(row);
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    for (int32_t k : {0, 1, 3, 20, 25}) {
      const int32_t token = static_cast<int32_t>(rng() % static_cast<uint32_t>(n));
      TokenLogprobs lp;
      token_logprobs(row, token, k, lp);
      EXPECT_EQ(lp.token, token);
      EXPECT_NEAR(lp.logprob, static_cast<double>(row[token] - lse), 1e-5) << n;
      ASSERT_EQ(lp.n_top, std::min({k, kMaxTopLogprobs, n})) << n << " " << k;
      double mass = 0;
      for (int32_t i = 0; i < lp.n_top; ++i) {
        EXPECT_EQ(lp.top_tokens[i], order[i]) << "n " << n << " rank " << i;  // ties: lower id first
        EXPECT_NEAR(lp.top_logprobs[i], static_cast<double>(row[order[i]] - lse), 1e-5);
        if (i > 0) {
          EXPECT_LE(lp.top_logprobs[i], lp.top_logprobs[i - 1]);
        }
        mass += std::exp(static_cast<double>(lp.top_logprobs[i]));
      }
      EXPECT_LE(mass, 1.0 + 1e-5);
    }
  }
}

TEST(Logprobs, ExtremeRows) {
  // Large logits do not overflow; a -inf logit has logprob -inf; a one-token row is certain.
  std::vector<float> row = {1e30f, 1e30f - 1e24f, -INFINITY, 0.0f};
  TokenLogprobs lp;
  token_logprobs(row, 0, 2, lp);
  EXPECT_TRUE(std::isfinite(lp.logprob));
  EXPECT_LE(lp.logprob, 0.0f);
  token_logprobs(row, 2, 0, lp);
  EXPECT_TRUE(std::isinf(lp.logprob) && lp.logprob < 0);
  const std::vector<float> one = {-3.5f};
  token_logprobs(one, 0, 5, lp);
  EXPECT_EQ(lp.logprob, 0.0f);
  EXPECT_EQ(lp.n_top, 1);
}

}  // namespace
}  // namespace velocity::runtime
