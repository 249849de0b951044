#include "server/engine_service.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>

#include "core/dtype.h"
#include "core/error.h"
#include "tokenizer/builtin_templates.h"
#include "tokenizer/chat_prompt.h"

namespace velocity::server {

namespace {

// llama.cpp's default logical batch, which its /infill cuts the prefix and suffix by
// (Tokenizer::encode_infill): editor plugins send long contexts and count on that cut.
constexpr int64_t kInfillBatch = 2048;

DType cache_type(const std::string& name, const char* which) {
  const auto t = dtype_from_name(name);
  if (!t || (*t != DType::F32 && *t != DType::F16 && *t != DType::Q8_0 && *t != DType::Q4_0 && *t != DType::Q4_1 &&
             *t != DType::Q5_1))
    fail("{} \"{}\" is not a KV cache type (f32, f16, q8_0, q4_0, q4_1, q5_1)", which, name);
  return *t;
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
  std::vector<TokenLogprob> logprobs;  // tokens whose text has not been delivered yet
  std::string echo;                    // the prompt's text, delivered once the prompt is processed
  // A delta to the client, with the logprob entries of the tokens it completes.
  void deliver(std::string_view content, std::string_view reasoning_text) {
    if (content.empty() && reasoning_text.empty()) return;
    flush_logprobs();
    job.on_delta(content, reasoning_text);
  }
  void flush_logprobs() {
    if (!logprobs.empty() && job.on_logprobs) job.on_logprobs(std::move(logprobs));
    logprobs.clear();
  }
  // on_accepted is delivered exactly once, before any callback from the scheduler thread: the
  // preparation thread calls accept() after queueing the request, and every scheduler callback
  // calls it first, so whichever thread comes first delivers it and the other waits for it.
  std::once_flag accepted;
  void accept() {
    std::call_once(accepted, [this] {
      if (job.on_accepted) job.on_accepted();
    });
  }
};

void log_internal_error(const std::string& model, const std::string& job_id, const char* what) {
  std::cerr << fmt::format("velocity: internal error (a bug; please report it) in model '{}', request {}: {}\n", model,
                           job_id, what);
}

}  // namespace

struct EngineService::Preparing {
  GenerationJob job;
  std::atomic<bool> cancel{false};
  std::mutex mutex;                                  // guards request
  std::shared_ptr<runtime::RequestHandle> request;   // once queued in the scheduler
};

namespace {

class Handle final : public JobHandle {
 public:
  explicit Handle(std::shared_ptr<EngineService::Preparing> p) : p_(std::move(p)) {}
  void cancel() override {
    p_->cancel = true;
    std::lock_guard lock(p_->mutex);
    if (p_->request) p_->request->cancel();
  }

 private:
  std::shared_ptr<EngineService::Preparing> p_;
};

Completion cancelled_completion() {
  Completion c;
  c.finish = FinishReason::Cancelled;
  return c;
}

Completion rejected_completion(ApiError error) {
  Completion c;
  c.finish = FinishReason::Error;
  c.error = error.what();
  c.rejected = std::move(error);
  return c;
}

}  // namespace

EngineService::EngineService(ModelEntry entry, int64_t max_queue, int n_threads)
    : entry_(std::move(entry)), max_queue_(max_queue), n_threads_(n_threads) {
  loader_ = std::thread([this] { load(); });
}

EngineService::~EngineService() {
  cancel_load_ = true;  // a load still under way stops at its next tensor
  if (loader_.joinable()) loader_.join();
  drain(0);
}

void EngineService::load() {
  try {
    model::LoadOptions o;
    o.placement.device = entry_.device.kind == DeviceSpec::Kind::Cuda  ? engine::Device::cuda(entry_.device.index)
                         : entry_.device.kind == DeviceSpec::Kind::Cpu ? engine::Device::cpu()
                                                                       : engine::default_device();
    o.device_is_default = entry_.device.kind != DeviceSpec::Kind::Cuda && entry_.device.kind != DeviceSpec::Kind::Cpu;
    o.placement.gpu_layers = entry_.gpu_layers;
    o.mmap = entry_.mmap;
    o.n_ctx = entry_.ctx;
    o.n_slots = entry_.slots;
    o.max_batch = 512;
    o.max_logits = entry_.slots;  // one logit row per sequence per step
    o.cache_type_k = cache_type(entry_.cache_type_k, "cache_type_k");
    o.cache_type_v = cache_type(entry_.cache_type_v, "cache_type_v");
    o.n_threads = n_threads_;
    o.cancel = &cancel_load_;
    o.on_checked = [this](const model::Config& c, const gguf::File& file) {
      // The GGUF's own chat template, when the config gives none, is parsed now too: a template
      // that does not parse stops serve before the port opens (the config's were parsed with it).
      if (entry_.chat_template.empty() && entry_.chat_template_file.empty()) {
        if (const gguf::Value* t = file.find("tokenizer.chat_template"); t && t->type() == gguf::ValueType::STRING) {
          try {
            ChatTemplate parsed(t->as_string());
          } catch (const Error& e) {
            fail("{}: the model's chat template (tokenizer.chat_template) does not parse: {}; give a built-in "
                 "one by name (chat_template = \"chatml\", --chat-template NAME) or a file",
                 entry_.path, e.what());
          }
        }
      }
      std::lock_guard lock(checked_mutex_);
      if (entry_.ctx > c.n_ctx_train && c.n_ctx_train > 0)
        check_warning_ = fmt::format(
            "model '{}': a context of {} positions is more than the {} it was trained for; output past {} "
            "positions may degrade",
            entry_.name, entry_.ctx, c.n_ctx_train, c.n_ctx_train);
      checked_ = true;
      checked_cv_.notify_all();
    };
    model_ = model::Model::load(entry_.path, o);
    tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Vocab::from_gguf(model_->file(), entry_.path));
    std::string source = tokenizer_->vocab().chat_template;
    if (!entry_.chat_template.empty()) source = tokenizer::resolve_chat_template(entry_.chat_template);
    if (!entry_.chat_template_file.empty()) {
      std::ifstream in(entry_.chat_template_file, std::ios::binary);
      if (!in) fail("{}: cannot read the chat template file", entry_.chat_template_file);
      std::stringstream ss;
      ss << in.rdbuf();
      source = ss.str();
    }
    if (!source.empty()) {
      template_.emplace(source);
      reasoning_ = tok::reasoning_format_of_template(source);
    }
    template_source_ = source;
    // A text of more bytes than n_ctx tokens can hold is refused before it is tokenised.
    size_t longest = 1;
    for (int32_t id = 0; id < tokenizer_->n_vocab(); ++id) longest = std::max(longest, tokenizer_->token_to_piece(id).size());
    max_prompt_bytes_ = model_->n_ctx() * (int64_t)longest;
    runtime::SchedulerOptions so;
    so.max_queue = max_queue_;
    so.prefill_chunk = entry_.prefill_chunk;
    scheduler_ = std::make_unique<runtime::Scheduler>(*model_, *tokenizer_, std::move(so));
    preparer_ = std::thread([this] { prepare_loop(); });
    std::lock_guard<std::mutex> lock(state_mutex_);
    message_ = "ready";
    state_ = State::Ready;
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(state_mutex_);
    message_ = fmt::format("{}: {}", entry_.name, e.what());
    state_ = State::Failed;
  }
  std::lock_guard lock(checked_mutex_);
  checked_ = true;
  checked_cv_.notify_all();
}

bool EngineService::wait_checked(std::string* warning) {
  std::unique_lock lock(checked_mutex_);
  checked_cv_.wait(lock, [&] { return checked_; });
  if (warning) *warning = check_warning_;
  return state_ != State::Failed;
}

std::string EngineService::memory_summary() const {
  if (!model_) return {};
  uint64_t weights = 0;
  for (const auto& t : model_->file().tensors()) weights += t.n_bytes;
  const model::Config& c = model_->config();
  engine::StepShape s;
  s.n_layer = c.n_layer;
  s.n_slots = model_->n_slots();
  s.n_ctx = model_->n_ctx();
  s.n_head_kv = c.n_head_kv;
  s.head_dim_k = c.head_dim_k;
  s.head_dim_v = c.head_dim_v;
  s.cache_type_k = cache_type(entry_.cache_type_k, "cache_type_k");
  s.cache_type_v = cache_type(entry_.cache_type_v, "cache_type_v");
  model::fill_latent_shape(c, s);
  auto gib = [](uint64_t b) {
    return b >= (uint64_t{1} << 30) ? fmt::format("{:.2f} GiB", static_cast<double>(b) / (1 << 30))
                                    : fmt::format("{:.1f} MiB", static_cast<double>(b) / (1 << 20));
  };
  return fmt::format("weights {}, KV cache {} ({}/{})", gib(weights), gib(engine::Backend::kv_cache_bytes(s)),
                     entry_.cache_type_k, entry_.cache_type_v);
}

std::string EngineService::device_name() const {
  if (!model_) return entry_.device.to_string();
  return model_->backends().size() == 1 ? model_->backend().name() : model_->placement().to_string();
}

bool EngineService::wait_loaded() {
  if (loader_.joinable()) loader_.join();
  return state_ == State::Ready;
}

ModelService::State EngineService::state(std::string* message) const {
  if (state_ == State::Ready && scheduler_) {
    if (std::string why = scheduler_->failure(); !why.empty()) {
      if (message) *message = "the device failed: " + why;
      return State::Failed;
    }
  }
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (message) *message = state_ == State::Loading ? "loading " + entry_.path : message_;
  return state_;
}

int64_t EngineService::n_ctx() const { return state_ == State::Ready || state_ == State::Draining ? model_->n_ctx() : 0; }

std::vector<int32_t> EngineService::prompt_tokens(const GenerationJob& job, const std::atomic<bool>& cancel,
                                                  std::string& rendered, bool render_only) const {
  const char* param = job.is_chat ? "messages" : "prompt";
  auto too_long = [&](size_t bytes) {
    return ApiError::bad_request(fmt::format("the prompt is {} bytes long, more than the context of {} tokens can hold",
                                             bytes, model_->n_ctx()),
                                 param, "context_length_exceeded");
  };
  std::vector<int32_t> ids;
  if (job.is_chat) {
    if (!template_)
      throw ApiError::bad_request("model '" + entry_.name + "' has no chat template; use /v1/completions", "messages");
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
    tokenizer::ChatPrompt prompt;
    jinja::RenderControl control;
    control.cancel = &cancel;
    try {
      prompt = tokenizer::render_chat_prompt(*template_, context, *tokenizer_, !entry_.parse_special_in_content, control);
    } catch (const Error& e) {
      throw ApiError::bad_request(std::string("the chat template failed: ") + e.what(), "messages", "template_error");
    }
    if ((int64_t)prompt.text.size() > max_prompt_bytes_) throw too_long(prompt.text.size());
    if (render_only) {
      rendered = std::move(prompt.text);
      return {};
    }
    tokenizer::EncodeOptions options;
    options.add_special = true;
    options.parse_special = true;
    options.plain = prompt.plain;
    options.cancel = &cancel;
    ids = tokenizer_->encode(prompt.text, options);
    rendered = std::move(prompt.text);
    const int32_t bos = v.bos;  // templates that write BOS themselves
    if (ids.size() >= 2 && bos >= 0 && ids[0] == bos && ids[1] == bos) ids.erase(ids.begin());
  } else if (job.infill) {
    // llama.cpp's /infill (Tokenizer::encode_infill): extra files, prefix, cursor text, suffix.
    if (!tokenizer_->vocab().has_fim())
      throw ApiError::bad_request(fmt::format("model '{}' has no fill-in-the-middle tokens (its vocabulary has no "
                                              "prefix/suffix/middle markers): /infill needs a code model",
                                              entry_.name),
                                  "input_prefix", "unsupported_value");
    size_t bytes = job.prompt.size() + job.suffix.size() + job.infill->cursor.size();
    for (const auto& chunk : job.infill->extra) bytes += chunk.filename.size() + chunk.text.size();
    if ((int64_t)bytes > max_prompt_bytes_) throw too_long(bytes);
    tokenizer::Tokenizer::InfillLimits limits;  // cut long inputs as llama.cpp's server does
    limits.n_batch = kInfillBatch;
    limits.n_ctx = model_->n_ctx();
    limits.n_predict = std::max<int64_t>(0, job.max_tokens);
    ids = tokenizer_->encode_infill(job.prompt, job.infill->cursor, job.suffix, job.infill->extra, limits, &cancel);
  } else if (!job.suffix.empty()) {
    // Fill in the middle (Tokenizer::encode_fim): the model writes what goes between them.
    const tokenizer::Vocab& v = tokenizer_->vocab();
    if (!v.has_fim())
      throw ApiError::bad_request(fmt::format("model '{}' has no fill-in-the-middle tokens (its vocabulary has no "
                                              "prefix/suffix/middle markers); omit 'suffix'",
                                              entry_.name),
                                  "suffix", "unsupported_value");
    if ((int64_t)(job.prompt.size() + job.suffix.size()) > max_prompt_bytes_)
      throw too_long(job.prompt.size() + job.suffix.size());
    ids = tokenizer_->encode_fim(job.prompt, job.suffix, &cancel);
  } else {
    if ((int64_t)job.prompt.size() > max_prompt_bytes_) throw too_long(job.prompt.size());
    tokenizer::EncodeOptions options;
    options.add_special = true;
    options.parse_special = false;
    options.cancel = &cancel;
    ids = tokenizer_->encode(job.prompt, options);
  }
  if (ids.empty()) throw ApiError::bad_request("the prompt is empty", param);
  if ((int64_t)ids.size() >= model_->n_ctx())
    throw ApiError::bad_request(fmt::format("the prompt has {} tokens but the context holds {}", ids.size(),
                                            model_->n_ctx()),
                                param, "context_length_exceeded");
  for (const auto& b : job.sampling.logit_bias)
    if (b.token < 0 || b.token >= model_->config().n_vocab)
      throw ApiError::bad_request(fmt::format("logit_bias token {} is outside the vocabulary of {} tokens", b.token,
                                              model_->config().n_vocab),
                                  "logit_bias");
  return ids;
}

std::shared_ptr<JobHandle> EngineService::submit(GenerationJob job) {
  const State s = state();
  if (s != State::Ready) {
    std::string msg;
    state(&msg);
    throw ApiError::unavailable("model '" + entry_.name + "' is " + std::string(state_name(s)) + ": " + msg);
  }
  auto p = std::make_shared<Preparing>();
  p->job = std::move(job);
  {
    std::lock_guard lock(prepare_mutex_);
    if (prepare_stop_) throw ApiError::unavailable("model '" + entry_.name + "' is draining", "draining");
    // Jobs waiting for preparation count against the same limit as jobs waiting for a slot.
    if ((int64_t)preparing_.size() >= max_queue_) throw ApiError::queue_full(entry_.name);
    preparing_.push_back(p);
  }
  prepare_cv_.notify_one();
  return std::make_shared<Handle>(p);
}

void EngineService::prepare_loop() {
  std::unique_lock lock(prepare_mutex_);
  for (;;) {
    prepare_cv_.wait(lock, [&] { return prepare_stop_ || !preparing_.empty(); });
    if (prepare_stop_) break;
    current_ = std::move(preparing_.front());
    preparing_.pop_front();
    std::shared_ptr<Preparing> p = current_;
    lock.unlock();
    prepare(p);
    lock.lock();
    current_.reset();
  }
  // Draining: whatever still waits is abandoned.
  std::deque<std::shared_ptr<Preparing>> left = std::move(preparing_);
  preparing_.clear();
  lock.unlock();
  for (auto& p : left) p->job.on_done(cancelled_completion());
}

UtilityResult EngineService::utility(const GenerationJob& job, const std::atomic<bool>& cancel) const {
  UtilityResult u;
  switch (job.utility) {
    case GenerationJob::Utility::Tokenize: {
      if ((int64_t)job.prompt.size() > max_prompt_bytes_)
        throw ApiError::bad_request(fmt::format("the text is {} bytes long, more than the context of {} tokens can hold",
                                                job.prompt.size(), model_->n_ctx()),
                                    "content", "context_length_exceeded");
      tokenizer::EncodeOptions options;
      options.add_special = job.add_special;
      options.parse_special = job.parse_special;
      options.cancel = &cancel;
      u.tokens = tokenizer_->encode(job.prompt, options);
      for (int32_t id : u.tokens) u.pieces.push_back(tokenizer_->token_to_piece(id));
      break;
    }
    case GenerationJob::Utility::Detokenize:
      for (int32_t id : job.tokens)
        if (id < 0 || id >= tokenizer_->n_vocab())
          throw ApiError::bad_request(fmt::format("token id {} is not in the vocabulary (0..{})", id, tokenizer_->n_vocab() - 1),
                                      "tokens", "invalid_value");
      u.text = tokenizer_->decode(job.tokens);
      break;
    case GenerationJob::Utility::ApplyTemplate: {
      std::string rendered;
      GenerationJob chat;
      chat.is_chat = true;
      chat.messages = job.messages;
      prompt_tokens(chat, cancel, rendered, /*render_only=*/true);  // as a chat request renders it
      u.text = std::move(rendered);
      break;
    }
    case GenerationJob::Utility::None: break;
  }
  return u;
}

void EngineService::prepare(const std::shared_ptr<Preparing>& p) {
  GenerationJob& job = p->job;
  runtime::Request r;
  std::string rendered;
  try {
    if (p->cancel) throw Cancelled("cancelled before preparation");
    if (job.utility != GenerationJob::Utility::None) {
      Completion c;
      c.utility = utility(job, p->cancel);
      c.usage.prompt_tokens = static_cast<int64_t>(c.utility.tokens.size());
      return job.on_done(c);
    }
    r.prompt = prompt_tokens(job, p->cancel, rendered);
  } catch (const Cancelled&) {
    return job.on_done(cancelled_completion());
  } catch (const ApiError& e) {
    return job.on_done(rejected_completion(e));
  } catch (const Error& e) {
    return job.on_done(rejected_completion(ApiError::bad_request(e.what())));
  } catch (const std::exception& e) {
    log_internal_error(entry_.name, job.id, e.what());
    Completion c;
    c.finish = FinishReason::Error;
    c.error = std::string("internal error: ") + e.what();
    return job.on_done(c);
  }
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
    run->accept();
    if (run->job.on_prompt_processed) run->job.on_prompt_processed(n_prompt);
    if (run->job.echo && run->job.on_delta) {  // the prompt's text (and its tokens' entries) first
      run->flush_logprobs();
      if (!run->echo.empty()) run->job.on_delta(run->echo, {});
    }
  };
  r.logprobs = run->job.logprobs;
  // A token's entry: its piece, whether it is a control token (not in the text), its logprob.
  auto entry = [tk = tokenizer_.get()](int32_t id, float logprob) {
    const auto& types = tk->vocab().types;
    TokenLogprob e;
    e.token = tk->token_to_piece(id);
    e.logprob = logprob;
    e.control = id >= 0 && static_cast<size_t>(id) < types.size() &&
                types[static_cast<size_t>(id)] == velocity::tokenizer::TokenType::Control;
    return e;
  };
  if (run->job.echo && !run->job.is_chat) {
    run->echo = run->job.prompt;
    r.prompt_logprobs = run->job.logprobs >= 0;
    if (r.prompt_logprobs && !r.prompt.empty())  // the first token: nothing before it to score it
      run->logprobs.push_back(entry(r.prompt[0], std::numeric_limits<float>::quiet_NaN()));
  }
  if (run->job.logprobs >= 0) {
    r.on_logprobs = [run, entry, tk = tokenizer_.get()](const runtime::TokenLogprobs& lp) {
      TokenLogprob e = entry(lp.token, lp.logprob);
      e.top.reserve(static_cast<size_t>(lp.n_top));
      for (int32_t i = 0; i < lp.n_top; ++i)
        e.top.emplace_back(tk->token_to_piece(lp.top_tokens[static_cast<size_t>(i)]),
                           lp.top_logprobs[static_cast<size_t>(i)]);
      run->logprobs.push_back(std::move(e));
    };
  }
  r.on_text = [run](std::string_view text) {
    run->accept();
    if (!run->job.on_delta) return;
    if (!run->reasoning) return run->deliver(text, {});
    const tok::ReasoningDelta d = run->reasoning->push(text);
    run->deliver(d.content, d.reasoning);
  };
  r.on_done = [run](const runtime::RequestResult& res) {
    run->accept();
    if (run->reasoning && run->job.on_delta) {
      const tok::ReasoningDelta d = run->reasoning->finish();
      run->deliver(d.content, d.reasoning);
    }
    // Tokens whose text never came (control tokens at the end, a stop string's tokens).
    if (!run->logprobs.empty() && run->job.on_logprobs) run->job.on_logprobs(std::move(run->logprobs));
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
    run->job.on_logprobs = nullptr;
    run->job.on_prompt_processed = nullptr;
    on_done(c);
  };
  std::shared_ptr<runtime::RequestHandle> handle;
  try {
    handle = scheduler_->submit(std::move(r));
  } catch (const runtime::QueueFull&) {
    return run->job.on_done(rejected_completion(ApiError::queue_full(entry_.name)));
  } catch (const runtime::NotAccepting& e) {
    return run->job.on_done(rejected_completion(ApiError::unavailable("model '" + entry_.name + "': " + e.what(),
                                                                      "model_not_ready")));
  } catch (const Error& e) {
    return run->job.on_done(rejected_completion(ApiError::bad_request(e.what())));
  }
  {
    std::lock_guard lock(p->mutex);
    p->request = handle;
  }
  if (p->cancel) handle->cancel();  // cancelled while being queued: Handle::cancel saw no request yet
  run->accept();
}

std::string EngineService::chat_template_source() const {
  // Written by the loader before it publishes Ready (state_ is atomic): read only after that.
  if (state_ != State::Ready && state_ != State::Draining) return {};
  return template_source_;
}

ServiceStats EngineService::stats() const {
  ServiceStats s;
  if (!scheduler_ || (state_ != State::Ready && state_ != State::Draining)) return s;
  const runtime::SchedulerStats r = scheduler_->stats();
  s.queue_depth = r.queue_depth;
  s.busy_slots = r.busy_slots;
  s.n_slots = r.n_slots;
  s.kv_cache_used = r.kv_capacity > 0 ? (double)r.kv_tokens / (double)r.kv_capacity : 0;
  for (const runtime::SlotView& v : r.slots) s.slots.push_back({v.busy, v.n_cached, v.n_prompt, v.n_decoded});
  return s;
}

void EngineService::drain(int64_t grace_ms) {
  cancel_load_ = true;  // shutting down: a model still loading will not serve
  if (loader_.joinable()) loader_.join();
  {
    std::lock_guard lock(prepare_mutex_);
    prepare_stop_ = true;
    if (current_) current_->cancel = true;  // abandon the render or tokenisation under way
  }
  prepare_cv_.notify_all();
  if (preparer_.joinable()) preparer_.join();
  if (!scheduler_) return;
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    if (state_ == State::Ready) state_ = State::Draining, message_ = "draining";
  }
  scheduler_->stop(grace_ms);
}

}  // namespace velocity::server
