// Continuous batching over one model: a fixed number of slots (KV sequences), a bounded queue
// in front of them, and one thread that runs the model. Each step is one forward pass over every
// active sequence: one token for each decoding slot plus prompt chunks of slots still prefilling,
// up to the model's max_batch tokens, so new requests start while others are mid-generation.
// While any slot decodes, a step takes at most SchedulerOptions::prefill_chunk prompt tokens, so
// a long prompt arriving delays the others' next token by a short forward pass, not a 512-token
// one (chunked prefill; the same total work).
//
// Prefix reuse: a slot keeps the tokens whose K/V it holds after its request ends. A new request
// goes to the free slot sharing the longest prefix with its prompt, and only the rest of the
// prompt is computed (at least one token is, to get the logits).
//
// Threads: submit(), stats(), stop() and RequestHandle::cancel() may be called from any thread.
// The callbacks run on the scheduler thread, never while it holds its lock, in the order
// on_prompt_processed (once) -> on_logprobs / on_text (0..n) -> on_done (exactly once, also after
// cancel or an engine error). submit() never invokes a callback.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/error.h"
#include "model/model.h"
#include "runtime/logprobs.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace velocity::runtime {

enum class StopReason {
  EndOfGeneration,  // an end-of-generation token
  StopString,       // a stop string matched (it is not in the text)
  MaxTokens,        // max_tokens generated
  ContextFull,      // the sequence filled the context
  Cancelled,        // RequestHandle::cancel() or stop()
  Timeout,          // the request's deadline passed (queued or running)
  Error,            // the forward pass failed; RequestResult::error says why
};

struct RequestResult {
  StopReason reason = StopReason::EndOfGeneration;
  int64_t n_prompt = 0;      // prompt tokens
  int64_t n_prefilled = 0;   // prompt tokens computed (n_prompt minus the reused prefix)
  int64_t n_generated = 0;   // tokens sampled (an end-of-generation token included)
  double queue_ms = 0;       // waiting for a slot
  double prompt_ms = 0;      // prefill: first prompt chunk to the prompt's logits
  double decode_ms = 0;      // after the prefill
  std::string error;
};

struct Request {
  std::vector<int32_t> prompt;            // non-empty, shorter than the context
  SamplingParams sampling;
  int64_t max_tokens = -1;                // < 0: until the context is full
  std::vector<std::string> stop;
  // End-of-generation tokens are never sampled (a -inf logit bias, as llama.cpp's ignore_eos):
  // the request runs to max_tokens, a stop string or the end of the context. For benchmarks.
  bool ignore_eos = false;
  // Past this instant the request stops with StopReason::Timeout (checked every step).
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // >= 0: each sampled token's logprob and this many of its step's most likely tokens
  // (<= kMaxTopLogprobs) go to on_logprobs before on_text gets the token's text (if any: a
  // control token has none, a stop string holds text back); end-of-generation tokens have none.
  // The slot's steps then return logits, never the device's argmax.
  int32_t logprobs = -1;
  // With logprobs >= 0: also the prompt's tokens (each but the first, in order, before any
  // generated token), from logits of every prompt position; no prefix reuse for this request,
  // and its prompt steps carry at most the model's max_logits rows. With max_tokens 0 the
  // request ends after the prompt (scoring it, with nothing generated).
  bool prompt_logprobs = false;
  std::function<void(int64_t n_prompt, int64_t n_reused)> on_prompt_processed;  // optional
  std::function<void(const TokenLogprobs&)> on_logprobs;                        // optional
  std::function<void(std::string_view text)> on_text;                           // optional
  std::function<void(const RequestResult&)> on_done;                            // required
};

// Thrown by submit() when the queue is full.
class QueueFull : public Error {
 public:
  using Error::Error;
};
// Thrown by submit() after stop().
class NotAccepting : public Error {
 public:
  using Error::Error;
};

class RequestHandle {
 public:
  virtual ~RequestHandle() = default;
  virtual void cancel() = 0;  // idempotent, any thread; on_done follows with Cancelled
};

// One slot as of the last step (Scheduler::stats).
struct SlotView {
  bool busy = false;        // a request holds it
  int64_t n_cached = 0;     // tokens in its KV cache (kept after a request for prefix reuse)
  int64_t n_prompt = 0;     // the current (or last) request's prompt tokens
  int64_t n_decoded = 0;    // tokens it has sampled
};

struct SchedulerStats {
  std::vector<SlotView> slots;  // [n_slots], published by the scheduler thread after each step
  int64_t queue_depth = 0;
  int64_t busy_slots = 0;
  int64_t n_slots = 0;
  int64_t kv_tokens = 0;      // tokens held in all slots' caches (live and reusable)
  int64_t kv_capacity = 0;    // n_slots * n_ctx
};

struct SchedulerOptions {
  int64_t max_queue = 64;       // requests waiting for a slot
  int64_t prefill_chunk = 128;  // prompt tokens per step while other slots decode (>= 1)
  // Called on the scheduler thread with each step's batch before its forward pass (tests,
  // tracing); must not call back into the scheduler.
  std::function<void(const engine::Batch&)> on_batch;
};

class Scheduler {
 public:
  // The model's n_slots() are the slots; it must allow n_slots() logit rows per step.
  Scheduler(model::Model& model, const tokenizer::Tokenizer& tokenizer, int64_t max_queue);
  Scheduler(model::Model& model, const tokenizer::Tokenizer& tokenizer, SchedulerOptions options);
  ~Scheduler();  // stop(0)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Throws velocity::Error for invalid input (empty prompt, prompt not shorter
  // than the context, sampling parameters the Sampler rejects), QueueFull, NotAccepting.
  std::shared_ptr<RequestHandle> submit(Request request);

  SchedulerStats stats() const;
  // Why the scheduler stopped serving after a device fault (engine::DeviceFault): every request
  // then failed and submit() throws NotAccepting. Empty while healthy.
  std::string failure() const;

  // Stops accepting; lets queued and running requests finish for up to grace_ms, then cancels
  // the rest; returns after every on_done has run and the thread has exited. Idempotent.
  void stop(int64_t grace_ms);

 private:
  struct Job;
  struct Slot;
  void loop();
  void admit(std::unique_lock<std::mutex>& lock);
  bool step();
  void finish(Slot& slot, StopReason reason, std::string error = {});
  void emit(Slot& slot, int32_t token);
  engine::Output output_of(const Job& job) const;
  bool is_eog(int32_t token) const {
    return token >= 0 && static_cast<size_t>(token) < eog_.size() && eog_[static_cast<size_t>(token)];
  }
  void fail_device(const std::string& what);

  model::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  const SchedulerOptions options_;
  std::vector<uint8_t> eog_;  // [n_vocab] end-of-generation tokens

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool accepting_ = true;
  std::string failure_;  // set by a device fault
  bool exit_ = false;
  std::atomic<int64_t> busy_{0}, kv_tokens_{0};

  std::vector<Slot> slots_;   // touched by the scheduler thread only (after admission)
  std::vector<SlotView> slot_views_;  // a copy of slots_ for stats(), under mutex_
  void publish_slots();               // scheduler thread, mutex_ held
  engine::Batch batch_;
  std::vector<int32_t> batch_slot_;  // [logit row] -> slot index
  std::vector<int32_t> batch_prompt_pos_;  // [logit row] -> prompt position p < n - 1 whose logits
                                           // score prompt token p + 1 (prompt_logprobs), else -1
  TokenLogprobs logprobs_;           // filled per sampled token for requests that ask
  std::thread thread_;
};

}  // namespace velocity::runtime
