#include "server/fake_service.h"

#include <sstream>

#include "runtime/stop_strings.h"

namespace velocity::server {

namespace {
using Clock = std::chrono::steady_clock;

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(std::move(w));
  return words;
}
}  // namespace

struct FakeService::Job {
  GenerationJob job;
  std::vector<std::string> words;
  bool forever = false;
  int64_t prompt_tokens = 0;
  size_t next_word = 0;
  int64_t generated = 0;
  bool started = false;
  Clock::time_point start_time, prefill_done, next_time;
  std::atomic<bool> cancelled{false};
  runtime::StopStrings stops{{}};
};

struct FakeService::Core {
  mutable std::mutex mutex;
  mutable std::condition_variable cv;  // wakes the engine thread
  mutable std::condition_variable idle_cv;
  bool stopping = false;
  State state = State::Ready;
  std::string state_message;
  std::deque<std::shared_ptr<Job>> preparing;
  std::deque<std::shared_ptr<Job>> queued;
  std::vector<std::shared_ptr<Job>> active;
  int64_t n_submitted = 0, n_accepted = 0, n_cancelled = 0, n_abandoned = 0;
  Clock::time_point last_cancel{};
  GenerationJob last_job;
};

namespace {
class FakeHandle final : public JobHandle {
 public:
  FakeHandle(std::shared_ptr<FakeService::Core> core, std::shared_ptr<FakeService::Job> job)
      : core_(std::move(core)), job_(std::move(job)) {}
  void cancel() override {
    std::lock_guard lock(core_->mutex);
    job_->cancelled = true;
    core_->last_cancel = Clock::now();
    core_->cv.notify_all();
  }

 private:
  std::shared_ptr<FakeService::Core> core_;
  std::shared_ptr<FakeService::Job> job_;
};
}  // namespace

FakeService::FakeService(FakeServiceOptions options)
    : options_(std::move(options)), core_(std::make_shared<Core>()) {
  thread_ = std::thread([this] { run(); });
  prepare_thread_ = std::thread([this] { prepare(); });
}

FakeService::~FakeService() {
  {
    std::lock_guard lock(core_->mutex);
    core_->stopping = true;
    for (auto& job : core_->preparing) job->cancelled = true;
    for (auto& job : core_->queued) job->cancelled = true;
    for (auto& job : core_->active) job->cancelled = true;
    core_->cv.notify_all();
  }
  prepare_thread_.join();
  thread_.join();
}

ModelService::State FakeService::state(std::string* message) const {
  std::lock_guard lock(core_->mutex);
  if (message) *message = core_->state_message;
  return core_->state;
}

void FakeService::set_state(State state, std::string message) {
  std::lock_guard lock(core_->mutex);
  core_->state = state;
  core_->state_message = std::move(message);
}

std::shared_ptr<JobHandle> FakeService::submit(GenerationJob job) {
  auto state = std::make_shared<Job>();
  std::lock_guard lock(core_->mutex);
  if (core_->state != State::Ready)
    throw ApiError::unavailable("model '" + options_.name + "' is " + std::string(state_name(core_->state)));
  if (core_->preparing.size() + core_->queued.size() >= (size_t)options_.max_queue &&
      core_->active.size() >= (size_t)options_.n_slots)
    throw ApiError::queue_full(options_.name);
  core_->n_submitted += 1;
  core_->last_job = job;
  core_->last_job.on_accepted = nullptr;
  core_->last_job.on_prompt_processed = nullptr;
  core_->last_job.on_delta = nullptr;
  core_->last_job.on_done = nullptr;
  state->job = std::move(job);
  state->start_time = Clock::now();
  core_->preparing.push_back(state);
  core_->cv.notify_all();
  return std::make_shared<FakeHandle>(core_, state);
}

// The fake "template and tokeniser": waits prepare_delay (or until cancelled), then rejects or
// accepts the job.
void FakeService::prepare() {
  std::unique_lock lock(core_->mutex);
  for (;;) {
    core_->cv.wait(lock, [&] { return core_->stopping || !core_->preparing.empty(); });
    if (core_->preparing.empty()) break;  // stopping
    std::shared_ptr<Job> state = core_->preparing.front();
    Job& j = *state;
    core_->cv.wait_for(lock, options_.prepare_delay, [&] { return j.cancelled.load() || core_->stopping; });
    core_->preparing.pop_front();
    if (j.cancelled || core_->stopping) {
      core_->n_cancelled += 1;
      core_->n_abandoned += 1;
      lock.unlock();
      Completion c;
      c.finish = FinishReason::Cancelled;
      j.job.on_done(c);
      j.job = {};
      lock.lock();
      if (core_->preparing.empty() && core_->queued.empty() && core_->active.empty()) core_->idle_cv.notify_all();
      continue;
    }
    lock.unlock();
    GenerationJob& job = j.job;
    if (job.utility != GenerationJob::Utility::None) {  // the fake tokeniser: one token per byte
      Completion c;
      switch (job.utility) {
        case GenerationJob::Utility::Tokenize:
          if (job.add_special) c.utility.tokens.push_back(kBos);
          for (unsigned char ch : job.prompt) {
            c.utility.tokens.push_back(ch);
            c.utility.pieces.emplace_back(1, static_cast<char>(ch));
          }
          if (job.add_special) c.utility.pieces.insert(c.utility.pieces.begin(), "<s>");
          break;
        case GenerationJob::Utility::Detokenize:
          for (int32_t id : job.tokens) {
            if (id < 0 || id >= kVocab) {
              c.rejected = ApiError::bad_request("token id " + std::to_string(id) + " is not in the vocabulary",
                                                 "tokens", "invalid_value");
              c.finish = FinishReason::Error;
              c.error = c.rejected->what();
              break;
            }
            if (id < 256) c.utility.text += static_cast<char>(id);
          }
          break;
        case GenerationJob::Utility::ApplyTemplate:
          for (const ChatMessage& m : job.messages) c.utility.text += "<" + m.role + ">" + m.content + "\n";
          c.utility.text += "<assistant>";
          break;
        case GenerationJob::Utility::None: break;
      }
      c.usage.prompt_tokens = static_cast<int64_t>(c.utility.tokens.size());
      job.on_done(c);
      job = {};
      lock.lock();
      if (core_->preparing.empty() && core_->queued.empty() && core_->active.empty()) core_->idle_cv.notify_all();
      continue;
    }
    std::string input;
    int64_t n_words = 0;
    if (job.is_chat) {
      for (const ChatMessage& m : job.messages) {
        n_words += (int64_t)split_words(m.content).size();
        if (m.role == "user") input = m.content;
      }
    } else {
      input = job.prompt;
      n_words = (int64_t)split_words(input).size();
    }
    j.prompt_tokens = n_words + 1;
    std::optional<ApiError> rejected;
    if (j.prompt_tokens > options_.n_ctx)
      rejected = ApiError::bad_request("the prompt has " + std::to_string(j.prompt_tokens) +
                                           " tokens but the context of model '" + options_.name + "' holds " +
                                           std::to_string(options_.n_ctx),
                                       job.is_chat ? "messages" : "prompt", "context_length_exceeded");
    for (const runtime::LogitBias& b : job.sampling.logit_bias)
      if (!rejected && b.token >= kVocab)
        rejected = ApiError::bad_request("logit_bias token id " + std::to_string(b.token) +
                                             " is not below the vocabulary size " + std::to_string(kVocab),
                                         "logit_bias", "invalid_value");
    if (rejected) {
      Completion c;
      c.finish = FinishReason::Error;
      c.error = rejected->what();
      c.rejected = std::move(rejected);
      job.on_done(c);
      job = {};
      lock.lock();
      if (core_->preparing.empty() && core_->queued.empty() && core_->active.empty()) core_->idle_cv.notify_all();
      continue;
    }
    for (std::string& w : split_words(input)) {
      if (w == "__forever__") j.forever = true;
      else j.words.push_back(std::move(w));
    }
    j.stops = runtime::StopStrings(job.stop);
    {
      std::lock_guard accepted_lock(core_->mutex);  // (the lock is not held here)
      core_->n_accepted += 1;
    }
    if (job.on_accepted) job.on_accepted();
    lock.lock();
    if (core_->stopping) {  // the engine thread may be gone: end the job here
      core_->n_cancelled += 1;
      lock.unlock();
      Completion c;
      c.finish = FinishReason::Cancelled;
      c.usage.prompt_tokens = j.prompt_tokens;
      job.on_done(c);
      job = {};
      lock.lock();
      continue;
    }
    core_->queued.push_back(state);
    core_->cv.notify_all();
  }
}

void FakeService::run() {
  // What one step decided, done outside the lock.
  struct Action {
    std::shared_ptr<Job> job;
    bool prompt_processed = false;
    std::string text, reasoning;
    bool done = false;
    Completion completion;
  };
  std::unique_lock lock(core_->mutex);
  for (;;) {
    while (!core_->queued.empty() && (core_->active.size() < (size_t)options_.n_slots || core_->stopping)) {
      core_->active.push_back(core_->queued.front());
      core_->queued.pop_front();
    }
    if (core_->stopping && core_->active.empty() && core_->queued.empty() && core_->preparing.empty()) break;

    Clock::time_point now = Clock::now();
    Clock::time_point wake = now + std::chrono::seconds(1);
    std::vector<Action> actions;
    for (size_t i = 0; i < core_->active.size();) {
      Job& j = *core_->active[i];
      Action a;
      a.job = core_->active[i];
      auto complete = [&](FinishReason reason, std::string error = {}) {
        a.done = true;
        a.completion.finish = reason;
        a.completion.error = std::move(error);
        a.completion.usage = {j.prompt_tokens, j.generated};
        double prompt_ms = std::chrono::duration<double, std::milli>(j.prefill_done - j.start_time).count();
        double total_ms = std::chrono::duration<double, std::milli>(now - j.start_time).count();
        a.completion.timings = {j.started ? j.prompt_tokens : 0, j.started ? prompt_ms : 0, j.generated,
                                j.started ? total_ms - prompt_ms : 0};
        if (reason == FinishReason::Cancelled) core_->n_cancelled += 1;
      };
      if (j.cancelled) {
        complete(FinishReason::Cancelled);
      } else if (!j.started) {
        j.started = true;
        j.prefill_done = now + options_.prefill_delay;
        j.next_time = j.prefill_done;
        a.prompt_processed = options_.prefill_delay.count() == 0;
      } else if (now >= j.next_time) {
        if (j.generated == 0 && options_.prefill_delay.count() > 0) a.prompt_processed = true;
        if (j.forever && j.next_word >= j.words.size() && !j.words.empty()) j.next_word = 0;
        if (j.next_word >= j.words.size()) {
          a.text = j.stops.flush();
          complete(FinishReason::Stop);
        } else {
          const std::string& w = j.words[j.next_word++];
          if (w == "__error__") {
            complete(FinishReason::Error, "the fake engine failed on purpose");
          } else {
            j.generated += 1;
            std::string piece = j.generated > 1 ? std::string(" ") : std::string();
            if (w.starts_with("think:")) {
              a.reasoning = piece.append(w, 6);
            } else {
              auto pushed = j.stops.push(piece.append(w));
              a.text = std::move(pushed.text);
              if (pushed.stopped) complete(FinishReason::Stop);
            }
            if (!a.done && j.job.max_tokens > 0 && j.generated >= j.job.max_tokens) {
              a.text += j.stops.flush();
              complete(FinishReason::Length);
            }
          }
          j.next_time = now + options_.token_delay;
        }
      }
      if (!a.done) wake = std::min(wake, j.next_time);
      bool act = a.done || a.prompt_processed || !a.text.empty() || !a.reasoning.empty();
      if (a.done) core_->active.erase(core_->active.begin() + (ptrdiff_t)i);
      else ++i;
      if (act) actions.push_back(std::move(a));
    }

    lock.unlock();
    for (Action& a : actions) {
      GenerationJob& job = a.job->job;
      if (a.prompt_processed && job.on_prompt_processed) job.on_prompt_processed(a.job->prompt_tokens);
      if ((!a.text.empty() || !a.reasoning.empty()) && job.on_delta) job.on_delta(a.text, a.reasoning);
      if (a.done) {
        job.on_done(a.completion);
        job.on_delta = nullptr;  // release what the callbacks captured
        job.on_done = nullptr;
        job.on_prompt_processed = nullptr;
      }
    }
    actions.clear();
    lock.lock();
    if (core_->preparing.empty() && core_->queued.empty() && core_->active.empty()) core_->idle_cv.notify_all();
    bool pending = !core_->queued.empty() && core_->active.size() < (size_t)options_.n_slots;
    if (!pending && !core_->stopping) core_->cv.wait_until(lock, wake);
  }
  core_->idle_cv.notify_all();
}

ServiceStats FakeService::stats() const {
  std::lock_guard lock(core_->mutex);
  ServiceStats s;
  s.queue_depth = (int64_t)(core_->preparing.size() + core_->queued.size());
  s.busy_slots = (int64_t)core_->active.size();
  s.n_slots = options_.n_slots;
  s.slots.resize(static_cast<size_t>(options_.n_slots));
  size_t i = 0;
  for (const auto& j : core_->active) {
    if (i == s.slots.size()) break;
    s.slots[i++] = {true, j->prompt_tokens + j->generated, j->prompt_tokens, j->generated};
  }
  int64_t used = 0;
  for (const auto& j : core_->active) used += j->prompt_tokens + j->generated;
  s.kv_cache_used = std::min(1.0, (double)used / (double)(options_.n_ctx * options_.n_slots));
  return s;
}

int64_t FakeService::n_submitted() const {
  std::lock_guard lock(core_->mutex);
  return core_->n_submitted;
}
int64_t FakeService::n_cancelled() const {
  std::lock_guard lock(core_->mutex);
  return core_->n_cancelled;
}
int64_t FakeService::n_in_flight() const {
  std::lock_guard lock(core_->mutex);
  return (int64_t)(core_->preparing.size() + core_->queued.size() + core_->active.size());
}
int64_t FakeService::n_accepted() const {
  std::lock_guard lock(core_->mutex);
  return core_->n_accepted;
}
int64_t FakeService::n_abandoned() const {
  std::lock_guard lock(core_->mutex);
  return core_->n_abandoned;
}
std::chrono::steady_clock::time_point FakeService::last_cancel_request() const {
  std::lock_guard lock(core_->mutex);
  return core_->last_cancel;
}
GenerationJob FakeService::last_job() const {
  std::lock_guard lock(core_->mutex);
  return core_->last_job;
}
bool FakeService::wait_idle(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(core_->mutex);
  return core_->idle_cv.wait_for(lock, timeout, [&] {
    return core_->preparing.empty() && core_->queued.empty() && core_->active.empty();
  });
}

}  // namespace velocity::server
