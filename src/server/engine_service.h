// EngineService: a ModelService over a real model — load (in the background), chat template,
// tokenizer, reasoning split, and the runtime::Scheduler that batches the requests.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "model/model.h"
#include "runtime/scheduler.h"
#include "server/config.h"
#include "server/service.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/reasoning.h"
#include "tokenizer/tokenizer.h"

namespace velocity::server {

class EngineService final : public ModelService {
 public:
  // Starts loading `entry` on a background thread (state Loading, then Ready or Failed).
  // max_queue: requests waiting beyond the slots before 429. n_threads: CPU threads (0 = all).
  EngineService(ModelEntry entry, int64_t max_queue, int n_threads = 0);
  ~EngineService() override;

  const std::string& name() const override { return entry_.name; }
  State state(std::string* message = nullptr) const override;
  int64_t n_ctx() const override;
  const SamplingDefaults& sampling_defaults() const override { return entry_.sampling; }
  std::shared_ptr<JobHandle> submit(GenerationJob job) override;
  ServiceStats stats() const override;

  // Waits for the load to end; true when Ready.
  bool wait_loaded();
  // Draining: no new jobs; running ones finish for up to grace_ms, then are cancelled.
  void drain(int64_t grace_ms);

  // The prompt tokens a job would be run with (chat template applied; the rendered text goes to
  // `rendered` when given); throws ApiError 400.
  std::vector<int32_t> prompt_tokens(const GenerationJob& job, std::string* rendered = nullptr) const;

 private:
  void load();
  std::string render_chat(const GenerationJob& job) const;

  ModelEntry entry_;
  int64_t max_queue_;
  int n_threads_;

  mutable std::mutex state_mutex_;
  std::atomic<State> state_{State::Loading};
  std::string message_;

  std::unique_ptr<model::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::optional<ChatTemplate> template_;
  tok::ReasoningFormat reasoning_ = tok::ReasoningFormat::None;
  std::unique_ptr<runtime::Scheduler> scheduler_;
  std::thread loader_;
};

}  // namespace velocity::server
