// FakeService — a ModelService without a model, for the server's tests (and a `--fake` mode
// if one is ever wanted). It "generates" the words of its input, deterministically:
//
//   input  = the last user message (chat) or the prompt (completions), split on spaces
//   output = word1, " word2", " word3", ... one word per token every `token_delay`, after a
//            `prefill_delay`; then finish_reason "stop". A word "think:xyz" is emitted as
//            reasoning text "xyz". Control words (not emitted):
//              __forever__  repeat the words until max_tokens or cancel
//              __error__    finish with FinishReason::Error at that point
//   prompt_tokens = the number of words over all messages (or the prompt) + 1
//
// It honours max_tokens (finish "length"), stop strings (runtime::StopStrings on the answer
// text), cancel (within one token_delay), the slot count and the queue limit (429), the state
// (503 unless Ready) and the context (400 when prompt_tokens > n_ctx). A logit_bias token id
// >= kVocab is a 400, as the real service does against n_vocab. Like the real service, the
// prompt is "prepared" on a thread of its own (taking `prepare_delay`, abandoned on cancel),
// which then rejects the job (on_done with Completion::rejected: the 400s above) or accepts it
// (on_accepted); one engine thread runs the accepted jobs and invokes their other callbacks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "server/service.h"

namespace velocity::server {

struct FakeServiceOptions {
  std::string name = "fake";
  int64_t n_ctx = 4096;
  int32_t n_slots = 4;
  int32_t max_queue = 16;
  std::chrono::milliseconds token_delay{1};
  std::chrono::milliseconds prefill_delay{0};
  std::chrono::milliseconds prepare_delay{0};  // the "chat template and tokeniser" (cancellable)
  SamplingDefaults defaults;
};

class FakeService final : public ModelService {
 public:
  static constexpr int32_t kVocab = 1000;
  static constexpr int32_t kBos = 999;  // the fake tokeniser's BOS (text bytes are tokens 0..255)

  explicit FakeService(FakeServiceOptions options = {});
  ~FakeService() override;  // cancels what is left (on_done is still invoked)
  FakeService(const FakeService&) = delete;
  FakeService& operator=(const FakeService&) = delete;

  const std::string& name() const override { return options_.name; }
  State state(std::string* message = nullptr) const override;
  int64_t n_ctx() const override { return options_.n_ctx; }
  const SamplingDefaults& sampling_defaults() const override { return options_.defaults; }
  std::shared_ptr<JobHandle> submit(GenerationJob job) override;
  ServiceStats stats() const override;

  // For tests.
  void set_state(State state, std::string message = {});
  int64_t n_submitted() const;     // submit() calls that returned a handle
  int64_t n_accepted() const;      // jobs that passed preparation (on_accepted)
  int64_t n_cancelled() const;     // jobs that ended with FinishReason::Cancelled
  int64_t n_in_flight() const;     // preparing + queued + running
  int64_t n_abandoned() const;     // jobs cancelled while being prepared
  std::chrono::steady_clock::time_point last_cancel_request() const;  // last JobHandle::cancel()
  GenerationJob last_job() const;  // a copy of the last accepted job, without callbacks
  // Waits until no job is queued or running; false on timeout.
  bool wait_idle(std::chrono::milliseconds timeout) const;

  struct Core;
  struct Job;

 private:
  void run();
  void prepare();

  FakeServiceOptions options_;
  std::shared_ptr<Core> core_;
  std::thread thread_, prepare_thread_;
};

}  // namespace velocity::server
