// The routes: auth, dispatch, the OpenAI generation endpoints (bridging the service's callbacks
// to the connection), /v1/models, /health and /metrics.
#include <nlohmann/json.hpp>

#include <chrono>
#include <random>

#include "server/http_session.h"

namespace velocity::server {

namespace {

using json = nlohmann::ordered_json;

// Compares in time independent of where the strings differ (the length may leak).
bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}

uint64_t random_seed() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

struct Route {
  const char* path;
  http::verb method;
};
constexpr Route kRoutes[] = {
    {"/v1/chat/completions", http::verb::post}, {"/v1/completions", http::verb::post},
    {"/v1/models", http::verb::get},            {"/health", http::verb::get},
    {"/metrics", http::verb::get},
};

}  // namespace

bool Session::authorized() const {
  const auto& keys = state_.settings.api_keys;
  if (keys.empty()) return true;
  std::string_view header = request_[http::field::authorization];
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() <= kBearer.size() || !beast::iequals(header.substr(0, kBearer.size()), kBearer)) return false;
  std::string_view key = header.substr(kBearer.size());
  bool ok = false;
  for (const std::string& k : keys) ok |= constant_time_equal(key, k);
  return ok;
}

void Session::handle_request() {
  std::string_view target = request_.target();
  target = target.substr(0, target.find('?'));
  const Route* route = nullptr;
  bool path_known = false;
  for (const Route& r : kRoutes) {
    if (target != r.path) continue;
    path_known = true;
    if (request_.method() == r.method) route = &r;
  }
  if (!path_known && target.starts_with("/v1/models/") && request_.method() == http::verb::get) {
    path_known = true;
  }
  if (!path_known) {
    return respond_error(ApiError(404, "invalid_request_error",
                                  "Unknown request URL: " + std::string(request_.method_string()) + " " +
                                      std::string(target),
                                  {}, "unknown_url"));
  }
  if (!route && !target.starts_with("/v1/models/")) {
    std::string allow;
    for (const Route& r : kRoutes)
      if (target == r.path) allow = std::string(http::to_string(r.method));
    return respond_error(ApiError(405, "invalid_request_error",
                                  "Method " + std::string(request_.method_string()) + " is not allowed on " +
                                      std::string(target) + "; use " + allow,
                                  {}, "method_not_allowed"),
                         {{"Allow", allow}});
  }
  if (target == "/health") return handle_health();
  if (!authorized()) {
    return respond_error(ApiError(401, "invalid_request_error",
                                  request_[http::field::authorization].empty()
                                      ? "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
                                      : "Incorrect API key provided.",
                                  {}, "invalid_api_key"),
                         {{"WWW-Authenticate", "Bearer"}});
  }
  try {
    if (target == "/v1/chat/completions") return handle_generation(Endpoint::ChatCompletions);
    if (target == "/v1/completions") return handle_generation(Endpoint::Completions);
    if (target == "/metrics") return handle_metrics();
    return handle_models();
  } catch (const ApiError& e) {
    return respond_error(e);
  } catch (const std::exception& e) {
    return respond_error(ApiError::internal(e.what()));
  }
}

void Session::handle_generation(Endpoint endpoint) {
  OpenAIRequest request = parse_request(endpoint, request_.body());
  auto it = state_.by_name.find(request.model);
  if (it == state_.by_name.end()) {
    throw ApiError(404, "invalid_request_error", "The model '" + request.model + "' does not exist", "model",
                   "model_not_found");
  }
  if (state_.shutting_down) throw ApiError::unavailable("the server is shutting down", "shutting_down");
  ModelService& service = *it->second;
  GenerationJob job = make_job(request, service.sampling_defaults(), random_seed());

  Generation gen;
  gen.serial = next_serial_++;
  gen.stream = request.stream;
  gen.include_usage = request.include_usage;
  gen.meta.id = make_response_id(endpoint);
  gen.meta.created = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  gen.meta.model = service.name();
  gen.meta.endpoint = endpoint;
  gen.metrics = &state_.metrics.model(service.name());
  job.id = gen.meta.id;

  uint64_t serial = gen.serial;
  std::shared_ptr<Mailbox> mailbox = mailbox_;
  std::shared_ptr<JobCounter> jobs = state_.jobs;
  job.on_prompt_processed = [mailbox, serial](int64_t) {
    mailbox->post([serial](Session& s) { s.on_prompt_processed(serial); });
  };
  job.on_delta = [mailbox, serial](std::string_view text, std::string_view reasoning) {
    mailbox->post([serial, t = std::string(text), r = std::string(reasoning)](Session& s) mutable {
      s.on_delta(serial, std::move(t), std::move(r));
    });
  };
  job.on_done = [mailbox, serial, jobs](const Completion& completion) {
    mailbox->post([serial, completion](Session& s) { s.on_done(serial, completion); });
    jobs->add(-1);
  };

  gen_ = std::move(gen);
  gen_->submitted = Clock::now();
  jobs->add(1);
  try {
    gen_->handle = service.submit(std::move(job));
  } catch (...) {
    jobs->add(-1);
    gen_.reset();
    throw;
  }
  gen_->metrics->requests += 1;
  gen_self_ = shared_from_this();
  if (gen_->stream) {
    stream_begin();
    if (endpoint == Endpoint::ChatCompletions) stream_send(sse_role_chunk(gen_->meta));
  }
  watch_disconnect();
}

void Session::on_prompt_processed(uint64_t) {}

void Session::on_delta(uint64_t serial, std::string text, std::string reasoning) {
  if (!gen_ || gen_->serial != serial || gen_->done || gen_->client_gone) return;
  Clock::time_point now = Clock::now();
  if (!gen_->got_delta) {
    gen_->metrics->time_to_first_token.observe(std::chrono::duration<double>(now - gen_->submitted).count());
    gen_->got_delta = true;
  } else {
    gen_->metrics->inter_token_latency.observe(std::chrono::duration<double>(now - gen_->last_delta).count());
  }
  gen_->last_delta = now;
  if (gen_->stream) {
    if (phase_ != Phase::Closed) stream_send(sse_delta_chunk(gen_->meta, text, reasoning));
  } else {
    gen_->text += text;
    gen_->reasoning += reasoning;
  }
}

void Session::on_done(uint64_t serial, Completion completion) {
  if (!gen_ || gen_->serial != serial || gen_->done) return;
  gen_->done = true;
  gen_->metrics->finish(completion);
  std::shared_ptr<Session> self = std::move(gen_self_);  // released when this returns
  keepalive_timer_.cancel();
  if (gen_->client_gone || phase_ == Phase::Closed) {
    gen_.reset();
    return close();
  }
  if (gen_->stream) {
    if (completion.finish == FinishReason::Error) {
      stream_send(sse_error_event(ApiError::internal(completion.error)));
      close_after_ = true;
    } else {
      stream_send(sse_finish_chunk(gen_->meta, completion));
      if (gen_->include_usage) stream_send(sse_usage_chunk(gen_->meta, completion));
      stream_send(kSseDone);
    }
    return stream_finish();
  }
  if (completion.finish == FinishReason::Error) return respond_error(ApiError::internal(completion.error));
  if (completion.finish == FinishReason::Cancelled && state_.shutting_down)
    return respond_error(ApiError::unavailable("the server is shutting down; the request was cancelled", "shutting_down"));
  respond(http::status::ok, completion_body(gen_->meta, gen_->text, gen_->reasoning, completion));
}

void Session::handle_models() {
  std::string_view target = request_.target();
  target = target.substr(0, target.find('?'));
  auto entry = [&](const ModelService& m) {
    std::string message;
    ModelService::State st = m.state(&message);
    json meta = {{"n_ctx", m.n_ctx()}, {"state", state_name(st)}};
    if (!message.empty()) meta["message"] = message;
    return json{{"id", m.name()}, {"object", "model"}, {"created", state_.started_unix}, {"owned_by", "velocity"},
                {"meta", meta}};
  };
  if (target.starts_with("/v1/models/")) {
    std::string name(target.substr(11));
    auto it = state_.by_name.find(name);
    if (it == state_.by_name.end())
      throw ApiError(404, "invalid_request_error", "The model '" + name + "' does not exist", "model", "model_not_found");
    return respond(http::status::ok, entry(*it->second).dump(-1, ' ', false, json::error_handler_t::replace));
  }
  json data = json::array();
  for (const auto& m : state_.models) data.push_back(entry(*m));
  respond(http::status::ok, json{{"object", "list"}, {"data", data}}.dump(-1, ' ', false, json::error_handler_t::replace));
}

void Session::handle_health() {
  json models = json::array();
  std::string problem;
  for (const auto& m : state_.models) {
    std::string message;
    ModelService::State st = m->state(&message);
    json entry = {{"name", m->name()}, {"state", state_name(st)}};
    if (!message.empty()) entry["message"] = message;
    models.push_back(entry);
    if (st != ModelService::State::Ready && problem.empty())
      problem = "model '" + m->name() + "' is " + std::string(state_name(st)) + (message.empty() ? "" : ": " + message);
  }
  if (state_.shutting_down && problem.empty()) problem = "the server is shutting down";
  if (problem.empty()) {
    return respond(http::status::ok, json{{"status", "ok"}, {"models", models}}.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  ApiError error = ApiError::unavailable(problem, state_.shutting_down ? "shutting_down" : "model_not_ready");
  json body = json::parse(error_body(error));
  body["status"] = "unavailable";
  body["models"] = models;
  respond(http::status::service_unavailable, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

void Session::handle_metrics() {
  respond(http::status::ok, state_.metrics.render(state_.models), "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace velocity::server
