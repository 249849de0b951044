// Sampler tests. Expected distributions and kept sets are computed here, in double, from the
// definitions (softmax, sorted prefix mass, p >= min_p * p_max), never from the sampler's code.
#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace velocity::runtime {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

SamplingParams greedy_params() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  double max = -std::numeric_limits<double>::infinity();
  for (float l : logits) max = std::max(max, static_cast<double>(l));
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp((logits[i] - max) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

// Softmax at `temperature` restricted to `kept`, zero elsewhere.
std::vector<double> renormalised(const std::vector<float>& logits, const std::set<int32_t>& kept, double temperature) {
  std::vector<float> masked(logits.size(), kNegInf);
  for (int32_t t : kept) masked[static_cast<size_t>(t)] = logits[static_cast<size_t>(t)];
  return softmax(masked, temperature);
}

std::vector<double> histogram(Sampler& sampler, const std::vector<float>& logits, int n_draws) {
  std::vector<double> freq(logits.size(), 0);
  for (int i = 0; i < n_draws; ++i) {
    const int32_t t = sampler.sample(logits);
    EXPECT_GE(t, 0);
    EXPECT_LT(t, static_cast<int32_t>(logits.size()));
    if (t < 0 || t >= static_cast<int32_t>(logits.size())) return freq;
    freq[static_cast<size_t>(t)] += 1;
  }
  for (double& f : freq) f /= n_draws;
  return freq;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

std::set<int32_t> support(const std::vector<double>& freq) {
  std::set<int32_t> s;
  for (size_t i = 0; i < freq.size(); ++i)
    if (freq[i] > 0) s.insert(static_cast<int32_t>(i));
  return s;
}

std::vector<float> random_logits(size_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> logits(n);
  for (float& l : logits) l = dist(gen);
  return logits;
}

// ---- greedy ----

TEST(SamplerGreedy, PicksArgmax) {
  Sampler sampler(greedy_params(), 6);
  EXPECT_EQ(sampler.sample(std::vector<float>{0.1f, 3.0f, -2.0f, 2.9f, 0.0f, 1.0f}), 1);
  EXPECT_EQ(sampler.sample(std::vector<float>{-5.0f, -4.0f, -3.0f, -2.0f, -1.0f, -0.5f}), 5);
  EXPECT_EQ(sampler.sample(std::vector<float>{kNegInf, kNegInf, -100.0f, kNegInf, kNegInf, kNegInf}), 2);
}

TEST(SamplerGreedy, TiesGoToLowestId) {
  Sampler sampler(greedy_params(), 5);
  EXPECT_EQ(sampler.sample(std::vector<float>{1.0f, 2.0f, 0.0f, 2.0f, 2.0f}), 1);
  EXPECT_EQ(sampler.sample(std::vector<float>{0.0f, 0.0f, 0.0f, 0.0f, 0.0f}), 0);
  EXPECT_EQ(sampler.sample(std::vector<float>{kNegInf, -1.0f, -1.0f, kNegInf, -1.0f}), 1);
}

TEST(SamplerGreedy, LargeVocab) {
  const int32_t n = 152064;
  std::vector<float> logits = random_logits(static_cast<size_t>(n), 7, 3.0f);
  const auto expected = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  Sampler sampler(greedy_params(), n);
  EXPECT_EQ(sampler.sample(logits), expected);
}

// ---- seeds ----

std::vector<int32_t> draws(uint64_t seed, int n, SamplingParams params = {}) {
  params.seed = seed;
  const std::vector<float> logits = random_logits(50, 3, 1.0f);
  Sampler sampler(params, 50);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(sampler.sample(logits));
  return out;
}

TEST(SamplerSeed, SameSeedSameSequence) {
  EXPECT_EQ(draws(42, 1000), draws(42, 1000));
  SamplingParams filtered;
  filtered.top_k = 20;
  filtered.top_p = 0.9f;
  filtered.min_p = 0.01f;
  filtered.temperature = 0.8f;
  EXPECT_EQ(draws(42, 1000, filtered), draws(42, 1000, filtered));
}

TEST(SamplerSeed, DifferentSeedsDiffer) {
  const auto a = draws(1, 1000);
  const auto b = draws(2, 1000);
  const auto c = draws(0, 1000);
  int same_ab = 0;
  for (size_t i = 0; i < a.size(); ++i) same_ab += a[i] == b[i];
  EXPECT_LT(same_ab, 300);  // 50 tokens: a chance agreement rate far below 30%
  EXPECT_NE(a, c);
  EXPECT_NE(b, c);
}

TEST(SamplerSeed, ResetReplaysTheSequence) {
  const std::vector<float> logits = random_logits(50, 3, 1.0f);
  SamplingParams params;
  params.seed = 9;
  params.frequency_penalty = 0.5f;
  Sampler sampler(params, 50);
  std::vector<int32_t> first, second;
  for (int i = 0; i < 200; ++i) sampler.accept(first.emplace_back(sampler.sample(logits)));
  sampler.reset();
  for (int i = 0; i < 200; ++i) sampler.accept(second.emplace_back(sampler.sample(logits)));
  EXPECT_EQ(first, second);
}

// The generator is documented as xoshiro256** seeded by splitmix64: pin its first outputs
// through a two-token vocabulary with equal logits (token 0 iff u < 0.5), computed here.
TEST(SamplerSeed, GeneratorIsXoshiro256StarStarSeededBySplitmix64) {
  auto splitmix = [](uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  uint64_t seed = 12345, s[4];
  for (uint64_t& w : s) w = splitmix(seed);
  SamplingParams params;
  params.seed = 12345;
  Sampler sampler(params, 2);
  for (int i = 0; i < 256; ++i) {
    const uint64_t r = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    const double u = static_cast<double>(r >> 11) * 0x1.0p-53;
    ASSERT_EQ(sampler.sample(std::vector<float>{0.0f, 0.0f}), u < 0.5 ? 0 : 1) << "draw " << i;
  }
}

// ---- distribution ----

TEST(SamplerDistribution, MatchesSoftmaxAtTemperature) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, kNegInf, 0.0f};
  for (float temperature : {1.0f, 0.7f, 1.8f}) {
    SamplingParams params;
    params.temperature = temperature;
    params.seed = 1234;
    Sampler sampler(params, static_cast<int32_t>(logits.size()));
    const auto freq = histogram(sampler, logits, 200000);
    const auto expected = softmax(logits, temperature);
    EXPECT_LT(max_abs_diff(freq, expected), 0.005) << "T = " << temperature;
    EXPECT_EQ(freq[5], 0.0);
  }
}

// ---- top-k ----

TEST(SamplerTopK, KeepsExactlyTheKLargest) {
  const std::vector<float> logits = {0.3f, 1.2f, -0.4f, 0.9f, 1.0f, 0.1f, 1.1f, -2.0f, 0.0f, 0.5f};
  SamplingParams params;
  params.top_k = 3;
  params.temperature = 1.3f;
  params.seed = 5;
  Sampler sampler(params, 10);
  const auto freq = histogram(sampler, logits, 200000);
  const std::set<int32_t> top3 = {1, 6, 4};
  EXPECT_EQ(support(freq), top3);
  EXPECT_LT(max_abs_diff(freq, renormalised(logits, top3, 1.3)), 0.005);
}

TEST(SamplerTopK, TieAtTheCutKeepsTheLowerId) {
  const std::vector<float> logits = {0.0f, 1.0f, 0.5f, 1.0f, 2.0f, 1.0f};
  SamplingParams params;
  params.top_k = 2;
  Sampler sampler(params, 6);
  EXPECT_EQ(support(histogram(sampler, logits, 5000)), (std::set<int32_t>{4, 1}));
}

TEST(SamplerTopK, LargerThanVocabKeepsAll) {
  const std::vector<float> logits = {0.0f, 1.0f, 0.5f};
  SamplingParams params;
  params.top_k = 100;
  params.seed = 3;
  Sampler sampler(params, 3);
  const auto freq = histogram(sampler, logits, 100000);
  EXPECT_LT(max_abs_diff(freq, softmax(logits, 1.0)), 0.005);
}

TEST(SamplerTopK, LargeVocabDrawsOnlyFromTopK) {
  const int32_t n = 152064;
  const std::vector<float> logits = random_logits(static_cast<size_t>(n), 11, 2.0f);
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  const std::set<int32_t> top(order.begin(), order.begin() + 40);
  SamplingParams params;
  params.top_k = 40;
  params.seed = 8;
  Sampler sampler(params, n);
  for (int i = 0; i < 200; ++i) EXPECT_TRUE(top.count(sampler.sample(logits)));
}

// ---- top-p ----

// The smallest prefix of the descending order (ties by id) whose mass is >= p.
std::set<int32_t> expected_top_p(const std::vector<float>& logits, double p) {
  const auto probs = softmax(logits, 1.0);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return probs[size_t(a)] > probs[size_t(b)]; });
  std::set<int32_t> kept;
  double mass = 0;
  for (int32_t t : order) {
    kept.insert(t);
    mass += probs[static_cast<size_t>(t)];
    if (mass >= p) break;
  }
  return kept;
}

TEST(SamplerTopP, KeepsSmallestPrefixWithMassP) {
  const std::vector<float> logits = {2.0f, 0.5f, 1.5f, -1.0f, 1.0f, 0.0f, -0.5f, 2.5f};
  for (float top_p : {0.3f, 0.5f, 0.75f, 0.9f, 0.99f}) {
    SamplingParams params;
    params.top_p = top_p;
    params.temperature = 0.9f;
    params.seed = 77;
    Sampler sampler(params, 8);
    const auto kept = expected_top_p(logits, top_p);
    const auto freq = histogram(sampler, logits, 100000);
    EXPECT_EQ(support(freq), kept) << "top_p " << top_p;
    EXPECT_LT(max_abs_diff(freq, renormalised(logits, kept, 0.9)), 0.006) << "top_p " << top_p;
  }
}

TEST(SamplerTopP, MassExactlyPStopsThere) {
  // Eight equal logits: each p = 1/8 exactly, prefix masses 1/8, 2/8, ... are exact.
  const std::vector<float> logits(8, 0.25f);
  auto kept_with = [&](float top_p) {
    SamplingParams params;
    params.top_p = top_p;
    params.seed = 4;
    Sampler sampler(params, 8);
    return support(histogram(sampler, logits, 20000));
  };
  EXPECT_EQ(kept_with(0.375f), (std::set<int32_t>{0, 1, 2}));  // mass 3/8 == p: three tokens
  EXPECT_EQ(kept_with(0.376f), (std::set<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(kept_with(0.125f), (std::set<int32_t>{0}));
  EXPECT_EQ(kept_with(0.001f), (std::set<int32_t>{0}));  // always at least one token
}

TEST(SamplerTopP, LargeVocabNucleusPastTheFirstPartialSort) {
  // A flat-ish distribution over 5000 tokens: the nucleus for p = 0.5 has hundreds of tokens,
  // so the growing partial sort must extend several times.
  const std::vector<float> logits = random_logits(5000, 21, 0.5f);
  const auto kept = expected_top_p(logits, 0.5);
  ASSERT_GT(kept.size(), 600u);
  SamplingParams params;
  params.top_p = 0.5f;
  params.seed = 6;
  Sampler sampler(params, 5000);
  const auto freq = histogram(sampler, logits, 10000);  // ~14 draws per kept token
  for (int32_t t : support(freq)) EXPECT_TRUE(kept.count(t)) << t;
  EXPECT_GT(support(freq).size(), kept.size() * 9 / 10);
}

TEST(SamplerTopP, AfterTopK) {
  const std::vector<float> logits = {2.0f, 0.5f, 1.5f, -1.0f, 1.0f, 0.0f, -0.5f, 2.5f};
  SamplingParams params;
  params.top_k = 4;  // {7, 0, 2, 4}
  params.top_p = 0.8f;
  params.seed = 13;
  Sampler sampler(params, 8);
  std::vector<float> top4(8, kNegInf);
  for (int32_t t : {7, 0, 2, 4}) top4[size_t(t)] = logits[size_t(t)];
  const auto kept = expected_top_p(top4, 0.8);
  const auto freq = histogram(sampler, logits, 100000);
  EXPECT_EQ(support(freq), kept);
  EXPECT_LT(max_abs_diff(freq, renormalised(logits, kept, 1.0)), 0.005);
}

// ---- min-p ----

TEST(SamplerMinP, KeepsTokensWithPAtLeastMinPTimesPMax) {
  const std::vector<float> logits = {2.0f, 0.5f, 1.5f, -1.0f, 1.0f, 0.0f, -0.5f, 2.5f};
  const auto probs = softmax(logits, 1.0);
  const double p_max = *std::max_element(probs.begin(), probs.end());
  for (float min_p : {0.05f, 0.2f, 0.5f, 0.9f}) {
    std::set<int32_t> kept;
    for (size_t i = 0; i < probs.size(); ++i)
      if (probs[i] >= min_p * p_max) kept.insert(static_cast<int32_t>(i));
    SamplingParams params;
    params.min_p = min_p;
    params.temperature = 1.5f;  // min-p is measured at temperature 1
    params.seed = 99;
    Sampler sampler(params, 8);
    const auto freq = histogram(sampler, logits, 100000);
    EXPECT_EQ(support(freq), kept) << "min_p " << min_p;
    EXPECT_LT(max_abs_diff(freq, renormalised(logits, kept, 1.5)), 0.006) << "min_p " << min_p;
  }
}

TEST(SamplerMinP, OneKeepsOnlyTheMaxima) {
  SamplingParams params;
  params.min_p = 1.0f;
  Sampler sampler(params, 5);
  EXPECT_EQ(support(histogram(sampler, {0.0f, 3.0f, 1.0f, 3.0f, 2.9f}, 5000)), (std::set<int32_t>{1, 3}));
}

// ---- penalties ----

std::vector<float> adjusted(const Sampler& sampler, std::vector<float> logits) {
  sampler.apply_bias_and_penalties(logits);
  return logits;
}

TEST(SamplerPenalties, RepeatDividesPositiveAndMultipliesNegative) {
  SamplingParams params = greedy_params();
  params.repeat_penalty = 2.0f;
  Sampler sampler(params, 5);
  sampler.accept(0);
  sampler.accept(1);
  sampler.accept(0);  // repeated: still penalised once
  sampler.accept(4);
  EXPECT_EQ(adjusted(sampler, {3.0f, -1.5f, 1.0f, 0.5f, 0.0f}), (std::vector<float>{1.5f, -3.0f, 1.0f, 0.5f, 0.0f}));
  // Token 0 was the argmax; halved, token 2 wins.
  EXPECT_EQ(sampler.sample(std::vector<float>{3.0f, -1.5f, 2.0f, 0.5f, 0.0f}), 2);
}

TEST(SamplerPenalties, RepeatOnlyOverTheLastN) {
  SamplingParams params = greedy_params();
  params.repeat_penalty = 2.0f;
  params.repeat_last_n = 2;
  Sampler sampler(params, 5);
  for (int32_t t : {0, 1, 2, 3}) sampler.accept(t);  // window holds {2, 3}
  EXPECT_EQ(adjusted(sampler, {4.0f, 4.0f, 4.0f, -4.0f, 4.0f}), (std::vector<float>{4.0f, 4.0f, 2.0f, -8.0f, 4.0f}));
  sampler.accept(2);  // window {3, 2}
  sampler.accept(2);  // window {2, 2}
  EXPECT_EQ(adjusted(sampler, {4.0f, 4.0f, 4.0f, -4.0f, 4.0f}), (std::vector<float>{4.0f, 4.0f, 2.0f, -4.0f, 4.0f}));
}

TEST(SamplerPenalties, RepeatLastNZeroIsOff) {
  SamplingParams params;
  params.repeat_penalty = 2.0f;
  params.repeat_last_n = 0;
  Sampler sampler(params, 3);
  sampler.accept(0);
  EXPECT_EQ(adjusted(sampler, {1.0f, 1.0f, 1.0f}), (std::vector<float>{1.0f, 1.0f, 1.0f}));
}

TEST(SamplerPenalties, PresenceAndFrequencyUseCountsOverAllTokens) {
  SamplingParams params;
  params.presence_penalty = 0.5f;
  params.frequency_penalty = 0.25f;
  params.repeat_last_n = 1;  // must not limit presence / frequency
  Sampler sampler(params, 4);
  for (int32_t t : {0, 0, 0, 2, 1, 0}) sampler.accept(t);  // counts: 4, 1, 1, 0
  EXPECT_EQ(adjusted(sampler, {1.0f, 1.0f, 1.0f, 1.0f}),
            (std::vector<float>{1.0f - 0.5f - 4 * 0.25f, 1.0f - 0.5f - 0.25f, 1.0f - 0.5f - 0.25f, 1.0f}));
  sampler.reset();
  EXPECT_EQ(adjusted(sampler, {1.0f, 1.0f, 1.0f, 1.0f}), (std::vector<float>{1.0f, 1.0f, 1.0f, 1.0f}));
}

TEST(SamplerPenalties, RepeatThenPresenceAndFrequency) {
  SamplingParams params;
  params.repeat_penalty = 2.0f;
  params.presence_penalty = 1.0f;
  params.frequency_penalty = 1.0f;
  Sampler sampler(params, 2);
  sampler.accept(0);
  sampler.accept(0);
  EXPECT_EQ(adjusted(sampler, {8.0f, 8.0f}), (std::vector<float>{8.0f / 2 - 1 - 2, 8.0f}));
}

TEST(SamplerPenalties, NegativeFrequencyPenaltyFavoursRepeats) {
  SamplingParams params = greedy_params();
  params.frequency_penalty = -1.0f;
  Sampler sampler(params, 3);
  sampler.accept(2);
  sampler.accept(2);
  EXPECT_EQ(sampler.sample(std::vector<float>{1.0f, 0.0f, -0.5f}), 2);
}

// ---- logit bias ----

TEST(SamplerLogitBias, MinusInfinityBans) {
  SamplingParams params = greedy_params();
  params.logit_bias = {{1, kNegInf}};
  Sampler greedy(params, 4);
  EXPECT_EQ(greedy.sample(std::vector<float>{0.0f, 5.0f, 1.0f, 0.5f}), 2);

  params.temperature = 1.0f;
  params.logit_bias = {{1, kNegInf}, {3, kNegInf}};
  Sampler sampler(params, 4);
  const std::vector<float> logits = {0.0f, 5.0f, 1.0f, 0.5f};
  const auto freq = histogram(sampler, logits, 100000);
  EXPECT_EQ(freq[1], 0.0);
  EXPECT_EQ(freq[3], 0.0);
  EXPECT_LT(max_abs_diff(freq, renormalised(logits, {0, 2}, 1.0)), 0.005);
}

TEST(SamplerLogitBias, BiasMakesATokenTheArgmax) {
  SamplingParams params = greedy_params();
  params.logit_bias = {{0, 3.0f}, {0, 1.5f}, {1, -0.5f}};  // repeated token: 4.5 in all
  Sampler sampler(params, 3);
  EXPECT_EQ(sampler.sample(std::vector<float>{0.0f, 4.5f, 4.25f}), 0);
  EXPECT_EQ(adjusted(sampler, {0.0f, 4.5f, 4.25f}), (std::vector<float>{4.5f, 4.0f, 4.25f}));
  EXPECT_EQ(sampler.sample(std::vector<float>{0.0f, 5.5f, 4.25f}), 1);
}

TEST(SamplerLogitBias, AllBannedIsAnError) {
  SamplingParams params;
  params.logit_bias = {{0, kNegInf}, {2, kNegInf}};
  Sampler sampler(params, 3);
  EXPECT_THROW(sampler.sample(std::vector<float>{0.0f, kNegInf, 1.0f}), Error);
  try {
    sampler.sample(std::vector<float>{0.0f, kNegInf, 1.0f});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("banned"), std::string::npos) << e.what();
  }
  params.temperature = 0;
  Sampler greedy(params, 3);
  EXPECT_THROW(greedy.sample(std::vector<float>{kNegInf, kNegInf, kNegInf}), Error);
}

// ---- errors ----

std::string construction_error(const SamplingParams& params, int32_t n_vocab = 10) {
  try {
    Sampler sampler(params, n_vocab);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SamplerErrors, InvalidParams) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* field;
    void (*set)(SamplingParams&, float nan, float inf);
  };
  const Case cases[] = {
      {"temperature", [](SamplingParams& p, float, float) { p.temperature = -0.1f; }},
      {"temperature", [](SamplingParams& p, float n, float) { p.temperature = n; }},
      {"temperature", [](SamplingParams& p, float, float i) { p.temperature = i; }},
      {"top_k", [](SamplingParams& p, float, float) { p.top_k = -1; }},
      {"top_p", [](SamplingParams& p, float, float) { p.top_p = 0.0f; }},
      {"top_p", [](SamplingParams& p, float, float) { p.top_p = 1.01f; }},
      {"top_p", [](SamplingParams& p, float n, float) { p.top_p = n; }},
      {"min_p", [](SamplingParams& p, float, float) { p.min_p = -0.01f; }},
      {"min_p", [](SamplingParams& p, float, float) { p.min_p = 1.5f; }},
      {"min_p", [](SamplingParams& p, float n, float) { p.min_p = n; }},
      {"repeat_penalty", [](SamplingParams& p, float, float) { p.repeat_penalty = 0.0f; }},
      {"repeat_penalty", [](SamplingParams& p, float n, float) { p.repeat_penalty = n; }},
      {"repeat_last_n", [](SamplingParams& p, float, float) { p.repeat_last_n = -1; }},
      {"presence_penalty", [](SamplingParams& p, float n, float) { p.presence_penalty = n; }},
      {"frequency_penalty", [](SamplingParams& p, float, float i) { p.frequency_penalty = -i; }},
      {"logit_bias[1]",
       [](SamplingParams& p, float, float) {
         p.logit_bias = {{0, 1.0f}, {10, 1.0f}};
       }},
      {"logit_bias[0]",
       [](SamplingParams& p, float, float) {
         p.logit_bias = {{-1, 1.0f}};
       }},
      {"logit_bias[0]",
       [](SamplingParams& p, float n, float) {
         p.logit_bias = {{3, n}};
       }},
      {"logit_bias[0]",
       [](SamplingParams& p, float, float i) {
         p.logit_bias = {{3, i}};
       }},
  };
  for (const Case& c : cases) {
    SamplingParams params;
    c.set(params, nan, inf);
    const std::string message = construction_error(params);
    EXPECT_NE(message.find(c.field), std::string::npos) << c.field << ": '" << message << "'";
  }
  EXPECT_NE(construction_error(SamplingParams{}, 0).find("n_vocab"), std::string::npos);
  // The edges of the valid ranges are accepted.
  SamplingParams edges;
  edges.temperature = 0;
  edges.top_p = 1.0f;
  edges.min_p = 1.0f;
  edges.repeat_last_n = 0;
  edges.logit_bias = {{9, kNegInf}};
  EXPECT_EQ(construction_error(edges), "");
}

TEST(SamplerErrors, NaNLogitNamesItsPosition) {
  Sampler sampler(SamplingParams{}, 5);
  std::vector<float> logits = {0.0f, 1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  try {
    sampler.sample(logits);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("logits[3]"), std::string::npos) << e.what();
  }
  Sampler greedy(greedy_params(), 5);
  EXPECT_THROW(greedy.sample(logits), Error);
  logits[3] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(greedy.sample(logits), Error);
}

TEST(SamplerErrors, WrongLengthAndTokenOutOfRange) {
  Sampler sampler(SamplingParams{}, 5);
  EXPECT_THROW(sampler.sample(std::vector<float>(4, 0.0f)), Error);
  EXPECT_THROW(sampler.accept(5), Error);
  EXPECT_THROW(sampler.accept(-1), Error);
}

}  // namespace
}  // namespace velocity::runtime
