#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>

#include "core/log.h"
#include "runtime/generate.h"
#include "runtime/stop_strings.h"
#include "tokenizer/stream_decode.h"

namespace velocity::runtime {

namespace {
using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

// A request with its state shared between the submitter (cancel) and the scheduler thread.
struct Scheduler::Job : RequestHandle {
  Request request;
  std::optional<Sampler> sampler;
  std::atomic<bool> cancelled{false};
  Scheduler* owner = nullptr;
  Clock::time_point queued_at = Clock::now();

  void cancel() override {
    if (cancelled.exchange(true)) return;
    std::lock_guard<std::mutex> lock(owner->mutex_);
    owner->wake_.notify_all();
  }
};

// One KV sequence. `cached` lists the tokens whose K/V the slot holds (positions 0..n-1).
struct Scheduler::Slot {
  std::shared_ptr<Job> job;  // null when free
  std::vector<int32_t> cached;
  size_t n_prompt_done = 0;   // prompt tokens in the cache
  int32_t pending = -1;       // sampled token not yet fed to the model
  RequestResult result;
  std::optional<tokenizer::StreamDecoder> decoder;
  std::optional<StopStrings> stops;
  Clock::time_point prompt_start, decode_start;
  bool prompt_started = false;
};

namespace {
SchedulerOptions with_queue(int64_t max_queue) {
  SchedulerOptions o;
  o.max_queue = max_queue;
  return o;
}
}  // namespace

Scheduler::Scheduler(model::Model& model, const tokenizer::Tokenizer& tokenizer, int64_t max_queue)
    : Scheduler(model, tokenizer, with_queue(max_queue)) {}

Scheduler::Scheduler(model::Model& model, const tokenizer::Tokenizer& tokenizer, SchedulerOptions options)
    : model_(model), tokenizer_(tokenizer), options_(std::move(options)), eog_(end_of_generation_tokens(tokenizer.vocab())) {
  VELOCITY_CHECK(options_.max_queue >= 0 && options_.prefill_chunk >= 1);
  slots_.resize(static_cast<size_t>(model.n_slots()));
  batch_.tokens.reserve(model.max_batch());
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(0); }

std::shared_ptr<RequestHandle> Scheduler::submit(Request request) {
  const int64_t n_ctx = model_.n_ctx();
  if (request.prompt.empty()) fail("the prompt is empty");
  if (static_cast<int64_t>(request.prompt.size()) >= n_ctx)
    fail("the prompt has {} tokens but the context holds {}", request.prompt.size(), n_ctx);
  for (int32_t t : request.prompt)
    if (t < 0 || t >= model_.config().n_vocab) fail("prompt token {} is outside the vocabulary", t);
  if (!request.on_done) fail("submit: on_done is required");
  if (request.logprobs > kMaxTopLogprobs)
    fail("at most {} top logprobs per token, not {}", kMaxTopLogprobs, request.logprobs);
  if (request.prompt_logprobs && request.logprobs < 0) fail("prompt_logprobs needs logprobs >= 0");
  auto job = std::make_shared<Job>();
  job->owner = this;
  if (request.ignore_eos)
    for (size_t t = 0; t < eog_.size(); ++t)
      if (eog_[t])
        request.sampling.logit_bias.push_back({static_cast<int32_t>(t), -std::numeric_limits<float>::infinity()});
  job->sampler.emplace(request.sampling, static_cast<int32_t>(model_.config().n_vocab));  // validates
  job->request = std::move(request);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!failure_.empty()) throw NotAccepting("the device failed: " + failure_);
    if (!accepting_) throw NotAccepting("the server is shutting down");
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue)
      throw QueueFull(fmt::format("the queue is full ({} requests waiting)", queue_.size()));
    queue_.push_back(job);
  }
  wake_.notify_all();
  return job;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    s.queue_depth = static_cast<int64_t>(queue_.size());
    s.slots = slot_views_;
  }
  if (s.slots.empty()) s.slots.resize(static_cast<size_t>(model_.n_slots()));  // before the first step
  s.busy_slots = busy_.load();
  s.n_slots = model_.n_slots();
  s.kv_tokens = kv_tokens_.load();
  s.kv_capacity = model_.n_slots() * model_.n_ctx();
  return s;
}

void Scheduler::stop(int64_t grace_ms) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    accepting_ = false;
  }
  if (!thread_.joinable()) return;
  const auto deadline = Clock::now() + std::chrono::milliseconds(grace_ms);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    while (Clock::now() < deadline && (!queue_.empty() || busy_.load() > 0))
      wake_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(20)));
    exit_ = true;
    for (auto& j : queue_) j->cancelled = true;
  }
  wake_.notify_all();
  thread_.join();
}

// Moves queued jobs into free slots (the scheduler thread, lock held). Cancelled queued jobs are
// finished here, outside the lock.
void Scheduler::admit(std::unique_lock<std::mutex>& lock) {
  std::vector<std::shared_ptr<Job>> dropped;
  const auto now = Clock::now();
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->cancelled || (*it)->request.deadline <= now) {
      dropped.push_back(*it);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  while (!queue_.empty()) {
    // The free slot with the longest common prefix (then the emptiest cache).
    int best = -1;
    size_t best_common = 0;
    const auto& prompt = queue_.front()->request.prompt;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].job) continue;
      const auto& c = slots_[i].cached;
      size_t n = 0;
      while (n < c.size() && n < prompt.size() && c[n] == prompt[n]) ++n;
      if (best < 0 || n > best_common || (n == best_common && c.size() < slots_[best].cached.size())) {
        best = static_cast<int>(i);
        best_common = n;
      }
    }
    if (best < 0) break;
    Slot& s = slots_[best];
    s.job = queue_.front();
    queue_.pop_front();
    // Compute at least one token; all of them when the prompt's logprobs are wanted.
    const size_t reuse = s.job->request.prompt_logprobs ? 0 : std::min(best_common, prompt.size() - 1);
    kv_tokens_ -= static_cast<int64_t>(s.cached.size() - reuse);
    s.cached.resize(reuse);
    s.n_prompt_done = reuse;
    s.pending = -1;
    s.result = RequestResult{};
    s.result.n_prompt = static_cast<int64_t>(prompt.size());
    s.result.n_prefilled = static_cast<int64_t>(prompt.size() - reuse);
    s.result.queue_ms = ms_between(s.job->queued_at, Clock::now());
    s.decoder.emplace(tokenizer_, /*skip_special=*/true, /*at_text_start=*/false);
    s.stops.emplace(s.job->request.stop);
    s.prompt_started = false;
    ++busy_;
  }
  if (!dropped.empty()) {
    lock.unlock();
    for (auto& j : dropped) {
      RequestResult r;
      r.reason = j->cancelled ? StopReason::Cancelled : StopReason::Timeout;
      r.n_prompt = static_cast<int64_t>(j->request.prompt.size());
      auto on_done = std::move(j->request.on_done);
      j->request.on_text = nullptr;
      j->request.on_prompt_processed = nullptr;
      on_done(r);
    }
    lock.lock();
  }
}

void Scheduler::finish(Slot& s, StopReason reason, std::string error) {
  s.result.reason = reason;
  s.result.error = std::move(error);
  if (s.prompt_started && s.n_prompt_done == s.job->request.prompt.size())
    s.result.decode_ms = ms_between(s.decode_start, Clock::now());
  // Text held back by the decoder (an incomplete character) or by the stop strings.
  if (reason != StopReason::StopString && reason != StopReason::Error) {
    std::string tail = s.stops->push(s.decoder->flush()).text;
    tail += s.stops->flush();
    if (!tail.empty() && s.job->request.on_text) s.job->request.on_text(tail);
  }
  auto job = std::move(s.job);
  s.job.reset();
  s.decoder.reset();
  s.stops.reset();
  --busy_;
  // The callbacks (and what they captured) go with on_done, whoever still holds the handle.
  auto on_done = std::move(job->request.on_done);
  job->request.on_text = nullptr;
  job->request.on_logprobs = nullptr;
  job->request.on_prompt_processed = nullptr;
  on_done(s.result);
  wake_.notify_all();  // stop() waits for busy slots to drain
}

// Appends a sampled token to the slot's output: text through the detokenizer and stop strings;
// finishes the request when a stop condition holds.
void Scheduler::emit(Slot& s, int32_t token) {
  Job& job = *s.job;
  job.sampler->accept(token);
  ++s.result.n_generated;
  if (is_eog(token)) return finish(s, StopReason::EndOfGeneration);
  const StopStrings::Pushed p = s.stops->push(s.decoder->push(token));
  if (!p.text.empty() && job.request.on_text) job.request.on_text(p.text);
  if (p.stopped) return finish(s, StopReason::StopString);
  if (job.request.max_tokens >= 0 && s.result.n_generated >= job.request.max_tokens)
    return finish(s, StopReason::MaxTokens);
  // The token would be fed at position cached.size(): past the context there is no room.
  if (static_cast<int64_t>(s.cached.size()) >= model_.n_ctx()) return finish(s, StopReason::ContextFull);
  s.pending = token;
}

// What a slot's output row must be: logits when the request wants logprobs, else what its
// sampler needs.
engine::Output Scheduler::output_of(const Job& job) const {
  return job.request.logprobs >= 0 ? engine::Output::Logits : output_for(*job.sampler);
}

// A device fault: every request fails, nothing new is accepted; failure() says why.
void Scheduler::fail_device(const std::string& what) {
  std::deque<std::shared_ptr<Job>> queued;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    accepting_ = false;
    failure_ = what;
    queued.swap(queue_);
  }
  log_line(fmt::format("the device failed; this model stops serving: {}", what));
  const std::string message = "the device failed: " + what;
  for (Slot& s : slots_) {
    kv_tokens_ -= static_cast<int64_t>(s.cached.size());
    s.cached.clear();
    if (s.job) finish(s, StopReason::Error, message);
  }
  for (auto& j : queued) {
    RequestResult r;
    r.reason = StopReason::Error;
    r.error = message;
    r.n_prompt = static_cast<int64_t>(j->request.prompt.size());
    auto on_done = std::move(j->request.on_done);
    j->request.on_text = nullptr;
    j->request.on_prompt_processed = nullptr;
    on_done(r);
  }
}

std::string Scheduler::failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

// One forward pass over every active slot. Returns false when there was nothing to do.
bool Scheduler::step() {
  const auto now = Clock::now();
  for (Slot& s : slots_) {
    if (s.job && s.job->cancelled) finish(s, StopReason::Cancelled);
    if (s.job && s.job->request.deadline <= now) finish(s, StopReason::Timeout);
  }
  batch_.clear();
  batch_slot_.clear();
  batch_prompt_pos_.clear();
  int64_t budget = model_.max_batch();
  // Decoding slots first: one token each keeps inter-token latency flat while prompts prefill;
  // then prompt tokens, fewer of them when someone is waiting for their next token.
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (!s.job || s.pending < 0 || budget == 0) continue;
    batch_.add(s.pending, static_cast<int32_t>(s.cached.size()), static_cast<int32_t>(i), output_of(*s.job));
    s.cached.push_back(s.pending);
    ++kv_tokens_;
    s.pending = -1;
    batch_slot_.push_back(static_cast<int32_t>(i));
    batch_prompt_pos_.push_back(-1);
    --budget;
  }
  batch_.n_decode = batch_.size();  // decoding slots first, one token each
  if (batch_.size() > 0) budget = std::min(budget, options_.prefill_chunk);
  for (size_t i = 0; i < slots_.size() && budget > 0; ++i) {
    Slot& s = slots_[i];
    if (!s.job || s.pending >= 0) continue;
    const auto& prompt = s.job->request.prompt;
    if (s.n_prompt_done >= prompt.size()) continue;
    if (!s.prompt_started) {
      s.prompt_started = true;
      s.prompt_start = Clock::now();
    }
    size_t n = std::min<size_t>(prompt.size() - s.n_prompt_done, static_cast<size_t>(budget));
    const bool every_row = s.job->request.prompt_logprobs;  // each prompt position an output row
    if (every_row) {
      // Leave a row for each other slot still prefilling (its last prompt token may come later
      // in this loop).
      int64_t others = 0;
      for (size_t j = 0; j < slots_.size(); ++j)
        others += j != i && slots_[j].job && slots_[j].pending < 0 &&
                  slots_[j].n_prompt_done < slots_[j].job->request.prompt.size();
      const int64_t rows_left = model_.max_logits() - static_cast<int64_t>(batch_slot_.size()) - others;
      if (rows_left <= 0) continue;
      n = std::min<size_t>(n, static_cast<size_t>(rows_left));
    }
    for (size_t k = 0; k < n; ++k) {
      const bool last = s.n_prompt_done + 1 == prompt.size();
      batch_.add(prompt[s.n_prompt_done], static_cast<int32_t>(s.cached.size()), static_cast<int32_t>(i),
                 last || every_row ? output_of(*s.job) : engine::Output::None);
      if (last || every_row) {
        batch_slot_.push_back(static_cast<int32_t>(i));
        batch_prompt_pos_.push_back(last ? -1 : static_cast<int32_t>(s.n_prompt_done));
      }
      s.cached.push_back(prompt[s.n_prompt_done]);
      ++s.n_prompt_done;
      ++kv_tokens_;
    }
    budget -= static_cast<int64_t>(n);
  }
  if (batch_.size() == 0) return false;
  if (options_.on_batch) options_.on_batch(batch_);

  engine::StepOutput out;
  try {
    out = model_.step(batch_);
  } catch (const engine::DeviceFault& e) {
    // Nothing the device computes can be trusted now: fail everything and stop serving.
    fail_device(e.what());
    return true;
  } catch (const std::exception& e) {
    // Every sequence in this batch is now in an unknown state: fail them, drop their caches.
    for (Slot& s : slots_) {
      if (!s.job) continue;
      kv_tokens_ -= static_cast<int64_t>(s.cached.size());
      s.cached.clear();
      finish(s, StopReason::Error, e.what());
    }
    return true;
  }
  for (size_t r = 0; r < batch_slot_.size(); ++r) {
    Slot& s = slots_[batch_slot_[r]];
    if (!s.job) continue;
    if (const int32_t p = batch_prompt_pos_[r]; p >= 0) {  // scores prompt token p + 1
      if (s.job->request.on_logprobs) {
        token_logprobs(out.row(static_cast<int64_t>(r)), s.job->request.prompt[static_cast<size_t>(p) + 1],
                       s.job->request.logprobs, logprobs_);
        s.job->request.on_logprobs(logprobs_);
      }
      continue;
    }
    const bool first_token = s.result.n_generated == 0;
    if (first_token) {
      s.result.prompt_ms = ms_between(s.prompt_start, Clock::now());
      s.decode_start = Clock::now();
      if (s.job->request.on_prompt_processed)
        s.job->request.on_prompt_processed(s.result.n_prompt, s.result.n_prompt - s.result.n_prefilled);
    }
    if (s.job->cancelled) {
      finish(s, StopReason::Cancelled);
      continue;
    }
    if (s.job->request.max_tokens == 0) {  // the prompt scored, nothing to generate
      finish(s, StopReason::MaxTokens);
      continue;
    }
    int32_t token = -1;
    try {
      token = sample_row(*s.job->sampler, out, static_cast<int64_t>(r), output_of(*s.job));
    } catch (const std::exception& e) {
      finish(s, StopReason::Error, e.what());
      continue;
    }
    if (s.job->request.logprobs >= 0 && s.job->request.on_logprobs && !is_eog(token)) {
      token_logprobs(out.row(static_cast<int64_t>(r)), token, s.job->request.logprobs, logprobs_);
      s.job->request.on_logprobs(logprobs_);
    }
    emit(s, token);
  }
  return true;
}

void Scheduler::publish_slots() {
  slot_views_.resize(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    slot_views_[i] = {s.job != nullptr, static_cast<int64_t>(s.cached.size()), s.result.n_prompt, s.result.n_generated};
  }
}

void Scheduler::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    admit(lock);
    publish_slots();
    const bool active = busy_.load() > 0;
    if (exit_) {
      lock.unlock();
      for (Slot& s : slots_)
        if (s.job) finish(s, StopReason::Cancelled);
      lock.lock();
      admit(lock);  // finishes cancelled queued jobs
      return;
    }
    if (!active) {
      wake_.wait(lock, [&] { return exit_ || !queue_.empty(); });
      continue;
    }
    lock.unlock();
    step();
    lock.lock();
  }
}

}  // namespace velocity::runtime
