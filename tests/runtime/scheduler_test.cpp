// The continuous-batching scheduler against the one-sequence generation loop (runtime/generate),
// an independent path through the same model: greedy outputs of many concurrent requests must
// equal each request run alone. Also prefix reuse, cancellation (queued and running), the queue
// limit, max_tokens, stop strings and shutdown.
#include "runtime/scheduler.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "runtime/generate.h"
#include "tiny_llama.h"

namespace velocity::runtime {
namespace {

using namespace std::chrono_literals;

struct Outcome {
  std::string text;
  RequestResult result;
  int64_t n_reused = -1;
};

// Collects one request's callbacks; wait() blocks until on_done.
struct Collector {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  Outcome out;

  Request request(std::vector<int32_t> prompt, SamplingParams sp, int64_t max_tokens) {
    Request r;
    r.prompt = std::move(prompt);
    r.sampling = sp;
    r.max_tokens = max_tokens;
    r.on_prompt_processed = [this](int64_t, int64_t reused) { out.n_reused = reused; };
    r.on_text = [this](std::string_view t) { out.text.append(t); };
    r.on_done = [this](const RequestResult& res) {
      std::lock_guard<std::mutex> lock(m);
      out.result = res;
      done = true;
      cv.notify_all();
    };
    return r;
  }
  bool wait(std::chrono::milliseconds timeout = 20s) {
    std::unique_lock<std::mutex> lock(m);
    return cv.wait_for(lock, timeout, [&] { return done; });
  }
};

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::fs::path(testing::fs::temp_directory_path() /
                                 ("velocity-scheduler-test-" + std::to_string(::getpid())));
    testing::fs::create_directories(*dir_);
    path_ = new std::string(testing::write_tiny_llama(*dir_ / "tiny.gguf", 11));
  }
  static void TearDownTestSuite() {
    testing::fs::remove_all(*dir_);
    delete dir_;
    delete path_;
  }
  static std::unique_ptr<model::Model> load(int64_t n_slots, int64_t n_ctx = 128, int64_t max_batch = 32,
                                            int64_t max_logits = 0) {
    model::LoadOptions o;
    o.n_ctx = n_ctx;
    o.max_batch = max_batch;
    o.n_slots = n_slots;
    o.max_logits = max_logits > 0 ? max_logits : n_slots;
    o.cache_type_k = DType::F32;
    o.cache_type_v = DType::F32;
    o.n_threads = 2;
    return model::Model::load(*path_, o);
  }
  // Independent reference for logprobs: the logits of positions [first, n - 1) of `tokens` (each
  // predicting the next token) in one batch of a fresh model instance, every position an output.
  static std::vector<std::vector<float>> teacher_forced_logits(const std::vector<int32_t>& tokens, size_t first) {
    auto ref = load(1, 128, 64, 64);
    engine::Batch batch;
    for (size_t p = 0; p + 1 < tokens.size(); ++p)
      batch.add(tokens[p], static_cast<int32_t>(p), 0, p >= first ? engine::Output::Logits : engine::Output::None);
    const engine::StepOutput out = ref->step(batch);
    std::vector<std::vector<float>> rows;
    for (int64_t r = 0; r < out.n_rows; ++r) rows.emplace_back(out.row(r).begin(), out.row(r).end());
    return rows;
  }
  static SamplingParams greedy() {
    SamplingParams p;
    p.temperature = 0;
    return p;
  }
  static testing::fs::path* dir_;
  static std::string* path_;
};
testing::fs::path* SchedulerTest::dir_ = nullptr;
std::string* SchedulerTest::path_ = nullptr;

std::vector<std::string> prompts() {
  return {"The quick brown fox", "Once upon a time", "a", "In the beginning God created", "hello, world",
          "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", "zzz", "The quick brown cat"};
}

TEST_F(SchedulerTest, ConcurrentGreedyEqualsOneAtATime) {
  // Reference: each prompt alone through the generation loop on a one-slot model.
  auto ref_model = load(1);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(ref_model->file(), *path_));
  Generator gen(*ref_model, tok);
  std::vector<std::string> expected;
  for (const auto& p : prompts()) {
    Sampler s(greedy(), (int32_t)ref_model->config().n_vocab);
    GenerateOptions o;
    o.n_predict = 24;
    o.skip_special = true;
    expected.push_back(gen.generate(tok.encode(p, true, false), s, o).text);
  }
  // All at once through 3 slots (5 wait in the queue), prefill chunks of 32 tokens per step.
  auto model = load(3);
  Scheduler sched(*model, tok, 16);
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& p : prompts()) {
    cs.push_back(std::make_unique<Collector>());
    sched.submit(cs.back()->request(tok.encode(p, true, false), greedy(), 24));
  }
  for (size_t i = 0; i < cs.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait()) << i;
    EXPECT_EQ(cs[i]->out.text, expected[i]) << prompts()[i];
    EXPECT_TRUE(cs[i]->out.result.reason == StopReason::MaxTokens ||
                cs[i]->out.result.reason == StopReason::EndOfGeneration);
  }
  const SchedulerStats st = sched.stats();
  EXPECT_EQ(st.queue_depth, 0);
  EXPECT_EQ(st.busy_slots, 0);
  EXPECT_EQ(st.n_slots, 3);
}

// Chunked prefill: while a slot decodes, a newcomer's prompt enters at most prefill_chunk tokens
// per step (seen through on_batch), and both outputs equal each request run alone.
TEST_F(SchedulerTest, PrefillChunkBoundsPromptTokensWhileOthersDecode) {
  auto ref_model = load(1);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(ref_model->file(), *path_));
  const auto a = tok.encode("Once upon a time", true, false);
  std::vector<int32_t> b = tok.encode("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25", true, false);
  ASSERT_GE(b.size(), 40u);
  auto alone = [&](const std::vector<int32_t>& prompt, int64_t n) {
    Scheduler sched(*ref_model, tok, 4);
    Collector c;
    sched.submit(c.request(prompt, greedy(), n));
    EXPECT_TRUE(c.wait());
    return c.out;
  };
  const Outcome a_alone = alone(a, 48), b_alone = alone(b, 8);
  // A must still be decoding when B's prompt is done: B needs b.size() / 4 steps.
  ASSERT_GT(a_alone.result.n_generated, (int64_t)b.size() / 4 + 4) << "the test needs A to decode throughout B's prefill";

  auto model = load(2);
  constexpr int64_t kChunk = 4;
  std::mutex m;
  std::vector<std::vector<int32_t>> batches;  // seq ids of each step's tokens
  SchedulerOptions o;
  o.max_queue = 4;
  o.prefill_chunk = kChunk;
  o.on_batch = [&](const engine::Batch& batch) {
    std::lock_guard<std::mutex> lock(m);
    batches.push_back(batch.seq_ids);
  };
  Scheduler sched(*model, tok, std::move(o));
  Collector ca, cb;
  // A's first text holds the scheduler thread until B is queued, so B arrives while A decodes.
  std::promise<void> decoding, submitted;
  std::shared_future<void> b_queued = submitted.get_future().share();
  Request ra = ca.request(a, greedy(), 48);
  auto on_text = ra.on_text;
  bool signalled = false;
  ra.on_text = [&, on_text, b_queued](std::string_view t) {
    on_text(t);
    if (signalled) return;
    signalled = true;
    decoding.set_value();
    b_queued.wait();
  };
  sched.submit(std::move(ra));
  decoding.get_future().wait();
  sched.submit(cb.request(b, greedy(), 8));
  submitted.set_value();
  ASSERT_TRUE(ca.wait());
  ASSERT_TRUE(cb.wait());
  EXPECT_EQ(ca.out.text, a_alone.text);
  EXPECT_EQ(cb.out.text, b_alone.text);

  std::lock_guard<std::mutex> lock(m);
  ASSERT_FALSE(batches.empty());
  const int32_t seq_a = batches.front().front();  // A's prompt is the first step, alone
  int64_t mixed = 0, full_chunks = 0;
  for (const auto& seqs : batches) {
    const int64_t n_a = std::count(seqs.begin(), seqs.end(), seq_a);
    const int64_t n_b = (int64_t)seqs.size() - n_a;
    if (n_a == 0 || n_b == 0) continue;
    ++mixed;
    EXPECT_EQ(n_a, 1);  // A decodes one token a step
    EXPECT_LE(n_b, kChunk);
    full_chunks += n_b == kChunk;
  }
  // B's prompt went in over several steps next to A's decoding, in full chunks but the last.
  EXPECT_GE(full_chunks, (int64_t)b.size() / kChunk - 1);
  EXPECT_GE(mixed, (int64_t)(b.size() + kChunk - 1) / kChunk);
}

// ignore_eos: a request that greedy decoding ends early with an end-of-generation token runs to
// max_tokens instead, and its text up to that point is unchanged (only EOG tokens are banned).
TEST_F(SchedulerTest, IgnoreEosRunsToMaxTokens) {
  auto model = load(1);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 4);
  const auto prompt = tok.encode("Once upon a time", true, false);
  Collector plain, ignoring;
  sched.submit(plain.request(prompt, greedy(), 80));
  ASSERT_TRUE(plain.wait());
  ASSERT_EQ(plain.out.result.reason, StopReason::EndOfGeneration) << "the test needs a prompt that ends early";
  ASSERT_LT(plain.out.result.n_generated, 80);
  Request r = ignoring.request(prompt, greedy(), 80);
  r.ignore_eos = true;
  sched.submit(std::move(r));
  ASSERT_TRUE(ignoring.wait());
  EXPECT_EQ(ignoring.out.result.reason, StopReason::MaxTokens);
  EXPECT_EQ(ignoring.out.result.n_generated, 80);
  EXPECT_EQ(ignoring.out.text.substr(0, plain.out.text.size()), plain.out.text);
}

// logprobs: each sampled token's value and top entries equal the log-softmax of the logits a
// separate model computes for prompt + generated tokens in one batch (teacher forcing, every
// position an output); the text equals the same request without logprobs.
TEST_F(SchedulerTest, LogprobsMatchATeacherForcedForward) {
  auto model = load(2);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 4);
  const auto prompt = tok.encode("Once upon a time", true, false);
  Collector plain, with;
  sched.submit(plain.request(prompt, greedy(), 12));
  ASSERT_TRUE(plain.wait());
  std::vector<TokenLogprobs> got;
  Request r = with.request(prompt, greedy(), 12);
  r.logprobs = 4;
  r.on_logprobs = [&](const TokenLogprobs& lp) { got.push_back(lp); };
  sched.submit(std::move(r));
  ASSERT_TRUE(with.wait());
  EXPECT_EQ(with.out.text, plain.out.text);
  ASSERT_EQ(static_cast<int64_t>(got.size()), with.out.result.n_generated);
  ASSERT_GE(got.size(), 2u);

  std::vector<int32_t> all = prompt;
  for (const TokenLogprobs& lp : got) all.push_back(lp.token);
  const auto rows = teacher_forced_logits(all, prompt.size() - 1);
  ASSERT_EQ(rows.size(), got.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const std::span<const float> row = rows[i];
    const double lse = log_sum_exp(row);
    EXPECT_NEAR(got[i].logprob, row[static_cast<size_t>(got[i].token)] - lse, 1e-4) << "token " << i;
    ASSERT_EQ(got[i].n_top, 4);
    EXPECT_EQ(got[i].top_tokens[0], got[i].token) << "greedy picks the most likely token";
    EXPECT_EQ(got[i].top_logprobs[0], got[i].logprob);
    for (int k = 0; k < 4; ++k)
      EXPECT_NEAR(got[i].top_logprobs[static_cast<size_t>(k)],
                  row[static_cast<size_t>(got[i].top_tokens[static_cast<size_t>(k)])] - lse, 1e-4);
  }
}

// prompt_logprobs with max_tokens 0 (lm-eval's loglikelihood): an entry for each prompt token
// but the first, equal to the teacher-forced forward, nothing generated; run beside a second
// request while the model allows only 2 output rows a step (the prompt is scored in chunks that
// leave the other request its row), after a request that left a reusable prefix in the cache.
TEST_F(SchedulerTest, PromptLogprobsScoreThePromptInChunksOfTheOutputRows) {
  auto model = load(2);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 4);
  const auto prompt = tok.encode("In the beginning God created the heaven and the earth", true, false);
  ASSERT_GE(prompt.size(), 8u);
  Collector warm;
  sched.submit(warm.request(prompt, greedy(), 2));  // leaves the prompt's K/V in a slot
  ASSERT_TRUE(warm.wait());
  Collector scored, other;
  std::vector<TokenLogprobs> got;
  Request r = scored.request(prompt, greedy(), 0);
  r.logprobs = 2;
  r.prompt_logprobs = true;
  r.on_logprobs = [&](const TokenLogprobs& lp) { got.push_back(lp); };
  sched.submit(other.request(tok.encode("Once upon a time", true, false), greedy(), 6));
  sched.submit(std::move(r));
  ASSERT_TRUE(scored.wait());
  ASSERT_TRUE(other.wait());
  EXPECT_EQ(other.out.result.reason, StopReason::MaxTokens) << other.out.result.error;
  ASSERT_EQ(scored.out.result.reason, StopReason::MaxTokens) << scored.out.result.error;
  EXPECT_EQ(scored.out.result.n_generated, 0);
  EXPECT_EQ(scored.out.result.n_prefilled, static_cast<int64_t>(prompt.size())) << "no prefix reuse";
  EXPECT_TRUE(scored.out.text.empty());
  ASSERT_EQ(got.size(), prompt.size() - 1);

  const auto rows = teacher_forced_logits(prompt, 0);
  ASSERT_EQ(rows.size(), got.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].token, prompt[i + 1]);
    const std::span<const float> row = rows[i];
    EXPECT_NEAR(got[i].logprob, row[static_cast<size_t>(prompt[i + 1])] - log_sum_exp(row), 1e-4) << i;
    EXPECT_EQ(got[i].n_top, 2);
  }
}

TEST_F(SchedulerTest, PrefixReuseSkipsTheSharedPromptAndKeepsTheOutput) {
  auto model = load(1);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 4);
  const auto a = tok.encode("In the beginning God created the heaven", true, false);
  const auto b = tok.encode("In the beginning God created the earth", true, false);
  Collector first, second, fresh;
  sched.submit(first.request(a, greedy(), 8));
  ASSERT_TRUE(first.wait());
  EXPECT_EQ(first.out.n_reused, 0);
  sched.submit(second.request(b, greedy(), 8));
  ASSERT_TRUE(second.wait());
  size_t common = 0;
  while (common < a.size() && a[common] == b[common]) ++common;
  EXPECT_EQ(second.out.n_reused, (int64_t)common);
  EXPECT_EQ(second.out.result.n_prefilled, (int64_t)(b.size() - common));
  // The same request on a fresh model (no cache) gives the same text.
  auto model2 = load(1);
  Scheduler sched2(*model2, tok, 4);
  sched2.submit(fresh.request(b, greedy(), 8));
  ASSERT_TRUE(fresh.wait());
  EXPECT_EQ(second.out.text, fresh.out.text);
}

TEST_F(SchedulerTest, CancelQueuedAndRunning) {
  auto model = load(1, 256);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 4);
  Collector running, queued;
  // End-of-generation tokens banned: the running request only ends by cancellation (or a full
  // context, hundreds of steps later).
  SamplingParams no_eog = greedy();
  for (int32_t t = 256; t < 260; ++t) no_eog.logit_bias.push_back({t, -INFINITY});
  // The running request holds the scheduler thread after its prompt until the test has sent the
  // cancel, so it cannot fill the context first however fast the model is.
  std::promise<void> started, cancel_sent;
  std::shared_future<void> sent = cancel_sent.get_future().share();
  Request run_request = running.request(tok.encode("run", true, false), no_eog, -1);
  run_request.on_prompt_processed = [&started, sent](int64_t, int64_t) {
    started.set_value();
    sent.wait();
  };
  auto h1 = sched.submit(std::move(run_request));
  ASSERT_EQ(started.get_future().wait_for(2s), std::future_status::ready);
  auto h2 = sched.submit(queued.request(tok.encode("wait", true, false), greedy(), -1));
  h2->cancel();  // queued behind the running one (one slot)
  const auto t0 = std::chrono::steady_clock::now();
  h1->cancel();
  h1->cancel();  // idempotent
  cancel_sent.set_value();
  ASSERT_TRUE(running.wait(2s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(running.out.result.reason, StopReason::Cancelled);
  ASSERT_TRUE(queued.wait(2s));
  EXPECT_EQ(queued.out.result.reason, StopReason::Cancelled);
  EXPECT_EQ(queued.out.result.n_generated, 0);
  EXPECT_EQ(sched.stats().busy_slots, 0);
}

TEST_F(SchedulerTest, DeadlineStopsRunningAndQueuedRequests) {
  auto model = load(1, 256);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 4);
  SamplingParams no_eog = greedy();
  for (int32_t t = 256; t < 260; ++t) no_eog.logit_bias.push_back({t, -INFINITY});
  Collector running, queued;
  Request r = running.request(tok.encode("run", true, false), no_eog, -1);
  r.deadline = std::chrono::steady_clock::now() + 30ms;
  sched.submit(std::move(r));
  Request q = queued.request(tok.encode("wait", true, false), no_eog, -1);
  q.deadline = std::chrono::steady_clock::now();  // already past: dropped from the queue, never run
  sched.submit(std::move(q));
  ASSERT_TRUE(running.wait(2s) && queued.wait(2s));
  // The running one may also fill its 256-token context first on a fast machine.
  EXPECT_TRUE(running.out.result.reason == StopReason::Timeout || running.out.result.reason == StopReason::ContextFull);
  EXPECT_EQ(queued.out.result.reason, StopReason::Timeout);
  EXPECT_EQ(queued.out.result.n_generated, 0);
}

TEST_F(SchedulerTest, QueueLimitAndInvalidInput) {
  auto model = load(1, 256);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 1);
  // `a` occupies the only slot until cancelled: it holds the scheduler thread after its prompt
  // until the queue has been tried, so it cannot end first however fast the model is.
  SamplingParams no_eog = greedy();
  for (int32_t t = 256; t < 260; ++t) no_eog.logit_bias.push_back({t, -INFINITY});
  Collector a, b, c;
  std::promise<void> started, tried;
  std::shared_future<void> queue_tried = tried.get_future().share();
  Request ra = a.request(tok.encode("a", true, false), no_eog, -1);
  ra.on_prompt_processed = [&started, queue_tried](int64_t, int64_t) {
    started.set_value();
    queue_tried.wait();
  };
  auto ha = sched.submit(std::move(ra));
  ASSERT_EQ(started.get_future().wait_for(5s), std::future_status::ready);
  // Now one request may wait; the next is refused.
  auto hb = sched.submit(b.request(tok.encode("b", true, false), greedy(), -1));
  EXPECT_THROW(sched.submit(c.request(tok.encode("c", true, false), greedy(), -1)), QueueFull);
  ha->cancel();
  hb->cancel();
  tried.set_value();
  ASSERT_TRUE(a.wait() && b.wait());
  // A prompt as long as the context, an empty prompt and bad sampling params are errors.
  Collector d;
  EXPECT_THROW(sched.submit(d.request(std::vector<int32_t>(256, 65), greedy(), 1)), Error);
  EXPECT_THROW(sched.submit(d.request({}, greedy(), 1)), Error);
  SamplingParams bad;
  bad.top_p = 2;
  EXPECT_THROW(sched.submit(d.request(tok.encode("x", true, false), bad, 1)), Error);
}

TEST_F(SchedulerTest, MaxTokensStopStringsAndContextFull) {
  auto model = load(2, 40);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 4);
  Collector m, full;
  sched.submit(m.request(tok.encode("count", true, false), greedy(), 5));
  ASSERT_TRUE(m.wait());
  EXPECT_EQ(m.out.result.reason, StopReason::MaxTokens);
  EXPECT_EQ(m.out.result.n_generated, 5);
  Request r = full.request(tok.encode("0123456789", true, false), greedy(), -1);
  sched.submit(std::move(r));
  ASSERT_TRUE(full.wait());
  if (full.out.result.reason != StopReason::EndOfGeneration) {
    EXPECT_EQ(full.out.result.reason, StopReason::ContextFull);
    // The last sampled token is emitted without being fed: prompt + generated = n_ctx + 1.
    EXPECT_EQ(full.out.result.n_prompt + full.out.result.n_generated, 41);
  }
  // A stop string cut from a greedy continuation ends the text right before it.
  if (m.out.text.size() >= 3) {
    const std::string stop = m.out.text.substr(1, 1);
    Collector s;
    Request rs = s.request(tok.encode("count", true, false), greedy(), 5);
    rs.stop = {stop};
    sched.submit(std::move(rs));
    ASSERT_TRUE(s.wait());
    EXPECT_EQ(s.out.result.reason, StopReason::StopString);
    EXPECT_EQ(s.out.text, m.out.text.substr(0, m.out.text.find(stop)));
  }
}

TEST_F(SchedulerTest, StopLetsRunningFinishThenCancels) {
  auto model = load(1, 128);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), *path_));
  Scheduler sched(*model, tok, 4);
  Collector shortc, longc;
  sched.submit(shortc.request(tok.encode("short", true, false), greedy(), 3));
  sched.submit(longc.request(tok.encode("long", true, false), greedy(), -1));
  ASSERT_TRUE(shortc.wait());
  // The long one fills a 128-token context unless cancelled; a 0 ms grace cancels it at once.
  sched.stop(0);
  ASSERT_TRUE(longc.wait(1s));
  EXPECT_TRUE(longc.out.result.reason == StopReason::Cancelled ||
              longc.out.result.reason == StopReason::EndOfGeneration ||
              longc.out.result.reason == StopReason::ContextFull);
  Collector after;
  EXPECT_THROW(sched.submit(after.request(tok.encode("x", true, false), greedy(), 1)), NotAccepting);
}

}  // namespace
}  // namespace velocity::runtime
