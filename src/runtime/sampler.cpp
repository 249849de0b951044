#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"

namespace velocity::runtime {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// First sorted prefix that top-p examines when nothing has sorted the candidates yet.
constexpr size_t kTopPFirstPrefix = 128;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Strict total order: higher logit first, ties to the lower id. Being total, it makes
// nth_element and sort give the same result with every standard library.
template <class C>
bool before(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

void validate(const SamplingParams& p, int32_t n_vocab) {
  if (n_vocab <= 0) fail("sampling: n_vocab must be > 0, got {}", n_vocab);
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    fail("sampling: temperature must be a finite number >= 0 (0 = greedy), got {}", p.temperature);
  }
  if (p.top_k < 0) fail("sampling: top_k must be >= 0 (0 = off), got {}", p.top_k);
  if (!(p.top_p > 0 && p.top_p <= 1)) fail("sampling: top_p must be in (0, 1] (1 = off), got {}", p.top_p);
  if (!(p.min_p >= 0 && p.min_p <= 1)) fail("sampling: min_p must be in [0, 1] (0 = off), got {}", p.min_p);
  if (!std::isfinite(p.repeat_penalty) || p.repeat_penalty <= 0) {
    fail("sampling: repeat_penalty must be a finite number > 0 (1 = off), got {}", p.repeat_penalty);
  }
  if (p.repeat_last_n < 0) fail("sampling: repeat_last_n must be >= 0, got {}", p.repeat_last_n);
  if (!std::isfinite(p.presence_penalty)) {
    fail("sampling: presence_penalty must be a finite number, got {}", p.presence_penalty);
  }
  if (!std::isfinite(p.frequency_penalty)) {
    fail("sampling: frequency_penalty must be a finite number, got {}", p.frequency_penalty);
  }
  for (size_t i = 0; i < p.logit_bias.size(); ++i) {
    const LogitBias& b = p.logit_bias[i];
    if (b.token < 0 || b.token >= n_vocab) {
      fail("sampling: logit_bias[{}]: token {} is outside the vocabulary [0, {})", i, b.token, n_vocab);
    }
    if (std::isnan(b.bias) || b.bias == std::numeric_limits<float>::infinity()) {
      fail("sampling: logit_bias[{}]: bias for token {} must be finite or -inf (ban), got {}", i, b.token, b.bias);
    }
  }
}

}  // namespace

Sampler::Sampler(SamplingParams params, int32_t n_vocab) : params_(std::move(params)), n_vocab_(n_vocab) {
  validate(params_, n_vocab_);
  const auto n = static_cast<size_t>(n_vocab_);
  recent_.resize(static_cast<size_t>(params_.repeat_last_n));
  counts_.assign(n, 0);
  seen_.reserve(n);
  repeat_done_.assign(n, 0);
  work_.resize(n);
  candidates_.resize(n);
  reset();
}

void Sampler::reset() {
  recent_next_ = 0;
  recent_size_ = 0;
  for (int32_t token : seen_) counts_[static_cast<size_t>(token)] = 0;
  seen_.clear();
  uint64_t state = params_.seed;
  for (uint64_t& word : rng_) word = splitmix64(state);
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= n_vocab_) {
    fail("sampling: accepted token {} is outside the vocabulary [0, {})", token, n_vocab_);
  }
  if (!recent_.empty()) {
    recent_[recent_next_] = token;
    recent_next_ = (recent_next_ + 1) % recent_.size();
    recent_size_ = std::min(recent_size_ + 1, recent_.size());
  }
  int32_t& count = counts_[static_cast<size_t>(token)];
  if (count == 0) seen_.push_back(token);  // at most n_vocab distinct tokens: never reallocates
  if (count < std::numeric_limits<int32_t>::max()) ++count;
}

void Sampler::apply_bias_and_penalties(std::span<float> logits) const {
  if (logits.size() != static_cast<size_t>(n_vocab_)) {
    fail("sampling: got {} logits, expected n_vocab = {}", logits.size(), n_vocab_);
  }
  for (const LogitBias& b : params_.logit_bias) logits[static_cast<size_t>(b.token)] += b.bias;

  // Repeat penalty: once per distinct token in the window, whatever its count (llama.cpp).
  if (params_.repeat_penalty != 1.0f) {
    const float penalty = params_.repeat_penalty;
    for (size_t i = 0; i < recent_size_; ++i) {
      const auto token = static_cast<size_t>(recent_[i]);
      if (repeat_done_[token]) continue;
      repeat_done_[token] = 1;
      float& logit = logits[token];
      logit = logit > 0 ? logit / penalty : logit * penalty;
    }
    for (size_t i = 0; i < recent_size_; ++i) repeat_done_[static_cast<size_t>(recent_[i])] = 0;
  }

  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (int32_t token : seen_) {
      const int32_t count = counts_[static_cast<size_t>(token)];
      logits[static_cast<size_t>(token)] -=
          params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
  }
}

bool Sampler::is_argmax() const {
  const SamplingParams& p = params_;
  return p.temperature == 0.0f && p.logit_bias.empty() && (p.repeat_penalty == 1.0f || p.repeat_last_n == 0) &&
         p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (logits.size() != static_cast<size_t>(n_vocab_)) {
    fail("sampling: got {} logits, expected n_vocab = {}", logits.size(), n_vocab_);
  }
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) fail("sampling: logits[{}] is NaN", i);
    if (logits[i] == std::numeric_limits<float>::infinity()) fail("sampling: logits[{}] is +inf", i);
  }
  std::copy(logits.begin(), logits.end(), work_.begin());
  apply_bias_and_penalties(work_);

  // Survivors: every token whose adjusted logit is above -inf, in id order.
  n_candidates_ = 0;
  max_logit_ = kNegInf;
  int32_t argmax = -1;
  for (size_t i = 0; i < work_.size(); ++i) {
    const float logit = work_[i];
    if (logit == kNegInf) continue;
    // Only extreme penalties (e.g. frequency_penalty -1e38) can get here.
    if (!std::isfinite(logit)) fail("sampling: logit of token {} is {} after bias and penalties", i, logit);
    candidates_[n_candidates_++] = {logit, static_cast<int32_t>(i)};
    if (logit > max_logit_) {  // strict: ties keep the lowest id
      max_logit_ = logit;
      argmax = static_cast<int32_t>(i);
    }
  }
  if (n_candidates_ == 0) {
    fail("sampling: every token is banned (all {} logits are -inf after logit bias and penalties)", n_vocab_);
  }
  if (params_.temperature == 0.0f) return argmax;

  sorted_ = false;
  apply_top_k();
  apply_top_p();
  apply_min_p();
  return draw();
}

void Sampler::apply_top_k() {
  const auto k = static_cast<size_t>(params_.top_k);
  if (k == 0 || k >= n_candidates_) return;
  auto* begin = candidates_.data();
  std::nth_element(begin, begin + k, begin + n_candidates_, before<Candidate>);
  std::sort(begin, begin + k, before<Candidate>);
  n_candidates_ = k;
  sorted_ = true;
}

void Sampler::apply_top_p() {
  if (params_.top_p >= 1.0f || n_candidates_ <= 1) return;
  // Probabilities at temperature 1, in double: w = exp(logit - max), p = w / total.
  const double max_logit = max_logit_;
  double total = 0;
  for (size_t i = 0; i < n_candidates_; ++i) total += std::exp(static_cast<double>(candidates_[i].logit) - max_logit);
  const double target = static_cast<double>(params_.top_p) * total;

  auto* begin = candidates_.data();
  size_t n_sorted = sorted_ ? n_candidates_ : 0;
  size_t prefix = sorted_ ? n_candidates_ : std::min(n_candidates_, kTopPFirstPrefix);
  double cumulative = 0;
  size_t i = 0;
  for (;;) {
    if (n_sorted < prefix) {
      // [0, n_sorted) is sorted and ahead of everything after it; extend that to [0, prefix).
      if (prefix < n_candidates_)
        std::nth_element(begin + n_sorted, begin + prefix, begin + n_candidates_, before<Candidate>);
      std::sort(begin + n_sorted, begin + prefix, before<Candidate>);
      n_sorted = prefix;
    }
    for (; i < n_sorted; ++i) {
      cumulative += std::exp(static_cast<double>(candidates_[i].logit) - max_logit);
      if (cumulative >= target) {
        n_candidates_ = i + 1;
        sorted_ = true;
        return;
      }
    }
    if (n_sorted == n_candidates_) break;  // rounding kept the sum just under target: keep all
    prefix = std::min(n_candidates_, 2 * prefix);
  }
  sorted_ = true;
}

void Sampler::apply_min_p() {
  if (params_.min_p <= 0.0f || n_candidates_ <= 1) return;
  // p / p_max = exp(logit - max_logit); the max is never removed by top-k or top-p.
  const double max_logit = max_logit_;
  const double min_ratio = params_.min_p;
  size_t kept = 0;
  for (size_t i = 0; i < n_candidates_; ++i) {  // stable: keeps the order
    if (std::exp(static_cast<double>(candidates_[i].logit) - max_logit) >= min_ratio) {
      candidates_[kept++] = candidates_[i];
    }
  }
  n_candidates_ = kept;
}

int32_t Sampler::draw() {
  // Weights exp((logit - max) / T) in double; the max token has weight 1, so total >= 1.
  const double max_logit = max_logit_;
  const double temperature = params_.temperature;
  double total = 0;
  for (size_t i = 0; i < n_candidates_; ++i) {
    total += std::exp((static_cast<double>(candidates_[i].logit) - max_logit) / temperature);
  }
  const double u = next_uniform() * total;
  double cumulative = 0;
  int32_t last_positive = candidates_[0].id;
  for (size_t i = 0; i < n_candidates_; ++i) {
    const double w = std::exp((static_cast<double>(candidates_[i].logit) - max_logit) / temperature);
    if (w <= 0) continue;
    cumulative += w;
    last_positive = candidates_[i].id;
    if (u < cumulative) return candidates_[i].id;
  }
  return last_positive;  // u within rounding of total
}

uint64_t Sampler::next_u64() {
  const uint64_t result = rotl(rng_[1] * 5, 7) * 9;
  const uint64_t t = rng_[1] << 17;
  rng_[2] ^= rng_[0];
  rng_[3] ^= rng_[1];
  rng_[1] ^= rng_[2];
  rng_[0] ^= rng_[3];
  rng_[2] ^= t;
  rng_[3] = rotl(rng_[3], 45);
  return result;
}

double Sampler::next_uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

}  // namespace velocity::runtime
