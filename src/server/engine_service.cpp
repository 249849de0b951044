#include "server/engine_service.h"

#include <fstream>
#include <random>
#include <sstream>

#include "core/dtype.h"
#include "core/error.h"

namespace velocity::server {

namespace {

DType cache_type(const std::string& name, const char* which) {
  const auto t = dtype_from_name(name);
  if (!t || (*t != DType::F32 && *t != DType::F16 && *t != DType::Q8_0 && *t != DType::Q4_0))
    fail("{} \"{}\" is not supported by the CPU KV cache (f32, f16, q8_0, q4_0)", which, name);
  return *t;
}

// The reasoning format a chat template implies.
tok::ReasoningFormat reasoning_format(const std::string& source) {
  if (source.find("<|channel|>") != std::string::npos) return tok::ReasoningFormat::Harmony;
  if (source.find("<think>") != std::string::npos) return tok::ReasoningFormat::Think;
  return tok::ReasoningFormat::None;
}

// The rendered prompt already opened the reasoning block (the model starts inside it).
bool prompt_opens_think(const std::string& prompt) {
  size_t end = prompt.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return false;
  const std::string_view head(prompt.data(), end + 1);
  return head.size() >= 7 && head.substr(head.size() - 7) == "<think>";
}

// Runs scheduler callbacks through the reasoning splitter into the job's callbacks.
struct JobRun {
  GenerationJob job;
  std::optional<tok::ReasoningParser> reasoning;
  std::shared_ptr<runtime::RequestHandle> handle;
};

class Handle final : public JobHandle {
 public:
  explicit Handle(std::shared_ptr<runtime::RequestHandle> h) : handle_(std::move(h)) {}
  void cancel() override { handle_->cancel(); }

 private:
  std::shared_ptr<runtime::RequestHandle> handle_;
};

}  // namespace

EngineService::EngineService(ModelEntry entry, int64_t max_queue, int n_threads)
    : entry_(std::move(entry)), max_queue_(max_queue), n_threads_(n_threads) {
  loader_ = std::thread([this] { load(); });
}

EngineService::~EngineService() {
  if (loader_.joinable()) loader_.join();
  if (scheduler_) scheduler_->stop(0);
}

void EngineService::load() {
  try {
    if (entry_.device.kind != DeviceSpec::Kind::Cpu)
      fail("device \"{}\": this build has only the CPU backend (device = \"cpu\")", entry_.device.to_string());
    model::LoadOptions o;
    o.n_ctx = entry_.ctx;
    o.n_slots = entry_.slots;
    o.max_batch = 512;
    o.max_logits = entry_.slots;  // one logit row per sequence per step
    o.cache_type_k = cache_type(entry_.cache_type_k, "cache_type_k");
    o.cache_type_v = cache_type(entry_.cache_type_v, "cache_type_v");
    o.n_threads = n_threads_;
    model_ = model::Model::load(entry_.path, o);
    tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Vocab::from_gguf(model_->file(), entry_.path));
    std::string source = tokenizer_->vocab().chat_template;
    if (!entry_.chat_template.empty()) source = entry_.chat_template;
    if (!entry_.chat_template_file.empty()) {
      std::ifstream in(entry_.chat_template_file, std::ios::binary);
      if (!in) fail("{}: cannot read the chat template file", entry_.chat_template_file);
      std::stringstream ss;
      ss << in.rdbuf();
      source = ss.str();
    }
    if (!source.empty()) {
      template_.emplace(source);
      reasoning_ = reasoning_format(source);
    }
    runtime::SchedulerOptions so;
    so.max_queue = max_queue_;
    so.prefill_chunk = entry_.prefill_chunk;
    scheduler_ = std::make_unique<runtime::Scheduler>(*model_, *tokenizer_, std::move(so));
    std::lock_guard<std::mutex> lock(state_mutex_);
    message_ = "ready";
    state_ = State::Ready;
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(state_mutex_);
    message_ = fmt::format("{}: {}", entry_.name, e.what());
    state_ = State::Failed;
  }
}

bool EngineService::wait_loaded() {
  if (loader_.joinable()) loader_.join();
  return state_ == State::Ready;
}

ModelService::State EngineService::state(std::string* message) const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (message) *message = state_ == State::Loading ? "loading " + entry_.path : message_;
  return state_;
}

int64_t EngineService::n_ctx() const { return state_ == State::Ready || state_ == State::Draining ? model_->n_ctx() : 0; }

std::string EngineService::render_chat(const GenerationJob& job) const {
  if (!template_) throw ApiError::bad_request("model '" + entry_.name + "' has no chat template; use /v1/completions", "messages");
  const tokenizer::Vocab& v = tokenizer_->vocab();
  auto text = [&](int32_t id) { return id >= 0 && (size_t)id < v.tokens.size() ? v.tokens[(size_t)id] : std::string(); };
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (const ChatMessage& m : job.messages) {
    nlohmann::ordered_json j = {{"role", m.role}, {"content", m.content}};
    if (!m.name.empty()) j["name"] = m.name;
    if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
    if (!m.reasoning_content.empty()) j["reasoning_content"] = m.reasoning_content;
    messages.push_back(std::move(j));
  }
  nlohmann::ordered_json context = {{"messages", std::move(messages)},
                                    {"add_generation_prompt", true},
                                    {"bos_token", text(v.bos)},
                                    {"eos_token", text(v.eos)}};
  try {
    return template_->render(context);
  } catch (const Error& e) {
    throw ApiError::bad_request(std::string("the chat template failed: ") + e.what(), "messages", "template_error");
  }
}

std::vector<int32_t> EngineService::prompt_tokens(const GenerationJob& job, std::string* rendered) const {
  std::vector<int32_t> ids;
  if (job.is_chat) {
    const std::string text = render_chat(job);
    ids = tokenizer_->encode(text, /*add_special=*/true, /*parse_special=*/true);
    if (rendered) *rendered = text;
    const int32_t bos = tokenizer_->vocab().bos;  // templates that write BOS themselves
    if (ids.size() >= 2 && bos >= 0 && ids[0] == bos && ids[1] == bos) ids.erase(ids.begin());
  } else {
    ids = tokenizer_->encode(job.prompt, /*add_special=*/true, /*parse_special=*/false);
  }
  const char* param = job.is_chat ? "messages" : "prompt";
  if (ids.empty()) throw ApiError::bad_request("the prompt is empty", param);
  if ((int64_t)ids.size() >= model_->n_ctx())
    throw ApiError::bad_request(fmt::format("the prompt has {} tokens but the context holds {}", ids.size(),
                                            model_->n_ctx()),
                                param, "context_length_exceeded");
  return ids;
}

std::shared_ptr<JobHandle> EngineService::submit(GenerationJob job) {
  const State s = state_;
  if (s != State::Ready) {
    std::string msg;
    state(&msg);
    throw ApiError::unavailable("model '" + entry_.name + "' is " + std::string(state_name(s)) + ": " + msg);
  }
  runtime::Request r;
  std::string rendered;
  {
    // The tokenizer and template are used from many I/O threads; their cost is small next to a step.
    static std::mutex prepare_mutex;
    std::lock_guard<std::mutex> lock(prepare_mutex);
    r.prompt = prompt_tokens(job, &rendered);
  }
  for (const auto& b : job.sampling.logit_bias)
    if (b.token < 0 || b.token >= model_->config().n_vocab)
      throw ApiError::bad_request(fmt::format("logit_bias token {} is outside the vocabulary of {} tokens", b.token,
                                              model_->config().n_vocab),
                                  "logit_bias");
  r.sampling = job.sampling;
  r.max_tokens = job.max_tokens;
  r.stop = job.stop;
  r.ignore_eos = job.ignore_eos;
  if (entry_.generation_timeout_s > 0)
    r.deadline = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     std::chrono::duration<double>(entry_.generation_timeout_s));

  auto run = std::make_shared<JobRun>();
  if (job.is_chat && reasoning_ != tok::ReasoningFormat::None)
    run->reasoning.emplace(reasoning_, reasoning_ == tok::ReasoningFormat::Think && prompt_opens_think(rendered));
  run->job = std::move(job);
  r.on_prompt_processed = [run](int64_t n_prompt, int64_t) {
    if (run->job.on_prompt_processed) run->job.on_prompt_processed(n_prompt);
  };
  r.on_text = [run](std::string_view text) {
    if (!run->job.on_delta) return;
    if (!run->reasoning) return run->job.on_delta(text, {});
    const tok::ReasoningDelta d = run->reasoning->push(text);
    if (!d.empty()) run->job.on_delta(d.content, d.reasoning);
  };
  r.on_done = [run](const runtime::RequestResult& res) {
    if (run->reasoning && run->job.on_delta) {
      const tok::ReasoningDelta d = run->reasoning->finish();
      if (!d.empty()) run->job.on_delta(d.content, d.reasoning);
    }
    Completion c;
    switch (res.reason) {
      case runtime::StopReason::EndOfGeneration:
      case runtime::StopReason::StopString: c.finish = FinishReason::Stop; break;
      case runtime::StopReason::MaxTokens:
      case runtime::StopReason::ContextFull:
      case runtime::StopReason::Timeout: c.finish = FinishReason::Length; break;
      case runtime::StopReason::Cancelled: c.finish = FinishReason::Cancelled; break;
      case runtime::StopReason::Error: c.finish = FinishReason::Error; break;
    }
    c.error = res.error;
    c.usage.prompt_tokens = res.n_prompt;
    c.usage.completion_tokens = res.n_generated;
    c.timings.prompt_n = res.n_prefilled;
    c.timings.prompt_ms = res.prompt_ms;
    c.timings.predicted_n = res.n_generated;
    c.timings.predicted_ms = res.decode_ms;
    auto on_done = std::move(run->job.on_done);
    run->job.on_delta = nullptr;
    run->job.on_prompt_processed = nullptr;
    on_done(c);
  };
  try {
    return std::make_shared<Handle>(scheduler_->submit(std::move(r)));
  } catch (const runtime::QueueFull&) {
    throw ApiError::queue_full(entry_.name);
  } catch (const runtime::NotAccepting&) {
    throw ApiError::unavailable("model '" + entry_.name + "' is draining", "draining");
  } catch (const Error& e) {
    throw ApiError::bad_request(e.what());
  }
}

ServiceStats EngineService::stats() const {
  ServiceStats s;
  if (!scheduler_ || (state_ != State::Ready && state_ != State::Draining)) return s;
  const runtime::SchedulerStats r = scheduler_->stats();
  s.queue_depth = r.queue_depth;
  s.busy_slots = r.busy_slots;
  s.n_slots = r.n_slots;
  s.kv_cache_used = r.kv_capacity > 0 ? (double)r.kv_tokens / (double)r.kv_capacity : 0;
  return s;
}

void EngineService::drain(int64_t grace_ms) {
  if (loader_.joinable()) loader_.join();
  if (!scheduler_) return;
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    if (state_ == State::Ready) state_ = State::Draining, message_ = "draining";
  }
  scheduler_->stop(grace_ms);
}

}  // namespace velocity::server
