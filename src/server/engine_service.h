// EngineService: a ModelService over a real model — load (in the background), chat template,
// tokenizer, reasoning split, and the runtime::Scheduler that batches the requests.
//
// Preparing a prompt (rendering the chat template, which comes from a downloaded GGUF and is
// hostile input, and tokenising) runs on this model's own preparation thread, never on the
// HTTP I/O threads and under no lock shared with other models. The template's work and output
// are bounded (jinja::RenderOptions), and a job whose client disconnects (JobHandle::cancel) or
// that is still being prepared when the service drains is abandoned mid-render or
// mid-tokenisation (velocity::Cancelled).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
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
  std::string model_path() const override { return entry_.path; }
  std::string chat_template_source() const override;

  // Waits for the load to end; true when Ready.
  bool wait_loaded();
  // Waits until the model has passed the checks that need no weights (file, architecture, device,
  // cache types, memory: model::LoadOptions::on_checked) or failed; false when it failed (state()
  // says why). `warning` receives what the checks found worth saying ("" if nothing), e.g. a
  // context longer than the model was trained for.
  bool wait_checked(std::string* warning = nullptr);
  // Where the model runs, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)" (after the load).
  std::string device_name() const;
  // "weights 4.58 GiB, KV cache 1.00 GiB (f16/f16)": for the start-up line (after wait_loaded).
  std::string memory_summary() const;
  // Draining: no new jobs; jobs being prepared are abandoned; running ones finish for up to
  // grace_ms, then are cancelled.
  void drain(int64_t grace_ms);

  struct Preparing;  // a job between submit() and the scheduler (engine_service.cpp)

 private:
  void load();
  void prepare_loop();
  void prepare(const std::shared_ptr<Preparing>& p);
  // The prompt tokens of a job (chat template applied; the rendered text goes to `rendered`);
  // throws ApiError 400, velocity::Cancelled when `cancel` is set.
  std::vector<int32_t> prompt_tokens(const GenerationJob& job, const std::atomic<bool>& cancel,
                                     std::string& rendered, bool render_only = false) const;
  UtilityResult utility(const GenerationJob& job, const std::atomic<bool>& cancel) const;

  ModelEntry entry_;
  int64_t max_queue_;
  int n_threads_;

  mutable std::mutex state_mutex_;
  std::atomic<State> state_{State::Loading};
  std::string message_;

  std::unique_ptr<model::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::optional<ChatTemplate> template_;
  std::string template_source_;  // what template_ was parsed from ("" = none)
  std::mutex checked_mutex_;
  std::condition_variable checked_cv_;
  bool checked_ = false;  // on_checked came, or the load ended
  std::string check_warning_;
  tok::ReasoningFormat reasoning_ = tok::ReasoningFormat::None;
  std::unique_ptr<runtime::Scheduler> scheduler_;
  int64_t max_prompt_bytes_ = 0;  // n_ctx x the longest token's bytes: a longer text cannot fit
  std::atomic<bool> cancel_load_{false};  // set: the load under way stops (LoadOptions::cancel)
  std::thread loader_;

  // Preparation: jobs wait here for the preparation thread (started after the load).
  std::mutex prepare_mutex_;
  std::condition_variable prepare_cv_;
  std::deque<std::shared_ptr<Preparing>> preparing_;
  std::shared_ptr<Preparing> current_;  // being prepared now
  bool prepare_stop_ = false;
  std::thread preparer_;
};

}  // namespace velocity::server
