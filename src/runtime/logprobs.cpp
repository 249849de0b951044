#include "runtime/logprobs.h"

#include <algorithm>
#include <cmath>

namespace velocity::runtime {

double log_sum_exp(std::span<const float> row) {
  if (row.empty()) return -INFINITY;
  const double max = *std::max_element(row.begin(), row.end());
  if (!std::isfinite(max)) return max;  // every logit -inf (or a +inf one)
  double sum = 0;
  for (const float x : row) sum += std::exp(static_cast<double>(x) - max);
  return max + std::log(sum);
}

void token_logprobs(std::span<const float> row, int32_t token, int32_t n_top, TokenLogprobs& out) {
  const double lse = log_sum_exp(row);
  out.token = token;
  out.logprob = token >= 0 && static_cast<size_t>(token) < row.size()
                    ? static_cast<float>(static_cast<double>(row[static_cast<size_t>(token)]) - lse)
                    : -INFINITY;
  const int32_t k = std::clamp<int32_t>(n_top, 0, std::min<int32_t>(kMaxTopLogprobs, static_cast<int32_t>(row.size())));
  out.n_top = k;
  if (k == 0) return;
  // Insertion into a sorted array of k: most logits fall below the k-th at the first compare.
  std::array<int32_t, kMaxTopLogprobs>& ids = out.top_tokens;
  int32_t n = 0;
  for (size_t v = 0; v < row.size(); ++v) {
    const float x = row[v];
    if (n == k && !(x > row[static_cast<size_t>(ids[static_cast<size_t>(k - 1)])])) continue;  // ties keep the lower id
    int32_t i = n < k ? n++ : k - 1;
    while (i > 0 && x > row[static_cast<size_t>(ids[static_cast<size_t>(i - 1)])]) {
      ids[static_cast<size_t>(i)] = ids[static_cast<size_t>(i - 1)];
      --i;
    }
    ids[static_cast<size_t>(i)] = static_cast<int32_t>(v);
  }
  for (int32_t i = 0; i < k; ++i)
    out.top_logprobs[static_cast<size_t>(i)] =
        static_cast<float>(static_cast<double>(row[static_cast<size_t>(ids[static_cast<size_t>(i)])]) - lse);
}

}  // namespace velocity::runtime
