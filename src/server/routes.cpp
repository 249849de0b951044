// The routes: who may ask (Host, Origin, CORS preflight, key, media type), dispatch, the OpenAI
// generation endpoints (bridging the service's callbacks to the connection), /v1/models, /health,
// /metrics and the chat page at /.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdint>
#include <charconv>
#include <chrono>
#include <random>

#include "core/error.h"
#include "core/log.h"
#include "server/chat_page.h"
#include "server/http_session.h"
#include "tokenizer/utf8.h"

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

// A query value: %XX escapes and '+' for space (malformed escapes are kept as they are).
std::string percent_decode(std::string_view v) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '+') {
      out += ' ';
    } else if (v[i] == '%' && i + 2 < v.size() && hex(v[i + 1]) && hex(v[i + 2])) {
      out += static_cast<char>(std::stoi(std::string(v.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += v[i];
    }
  }
  return out;
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
    {"/metrics", http::verb::get},              {"/props", http::verb::get},
    {"/version", http::verb::get},              {"/tokenize", http::verb::post},
    {"/detokenize", http::verb::post},          {"/apply-template", http::verb::post},
    {"/slots", http::verb::get},                {"/", http::verb::get},
    {"/infill", http::verb::post},
    {"/", http::verb::head},
};

// --- who may ask: Host and Origin (README.md, "Security") -------------------------------------
//
// Without an API key the server trusts anyone who can reach it, which on 127.0.0.1 means local
// processes, but also web pages in the user's browser: a page cannot read another origin's
// answers (unless CORS allows it), yet it can send "simple" requests (a POST with text/plain) and,
// after rebinding its own DNS name to 127.0.0.1, read the answers of requests that name that
// domain in Host. Hence: a keyless server answers only Host values that name it (an IP literal,
// which a rebinding page cannot send since it must use its own name, "localhost", the bound host,
// allowed_hosts); a request with an Origin header is refused unless same-origin or listed in
// cors_origins; and the generation POSTs must be application/json, which no simple request is.

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = (char)std::tolower((unsigned char)c);
  return out;
}

// host[:port] of a Host header or an origin.
struct Authority {
  std::string host;   // lower case; IPv6 in brackets; a trailing dot dropped ("localhost." = "localhost")
  int32_t port = -1;  // -1 = not given
};

std::optional<Authority> parse_authority(std::string_view text) {
  std::string_view host = text, port;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(0, close + 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && rest[0] != ':') return std::nullopt;
    if (!rest.empty()) port = rest.substr(1);
  } else if (const size_t colon = text.find(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty() || host.find_first_of(" \t/\\@?#") != std::string_view::npos) return std::nullopt;
  Authority a;
  if (!port.empty()) {
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), a.port);
    if (ec != std::errc() || end != port.data() + port.size() || a.port < 0 || a.port > 65535) return std::nullopt;
  }
  a.host = lower(host);
  if (a.host.size() > 1 && a.host.back() == '.') a.host.pop_back();
  return a;
}

// "::1" -> "[::1]": the bound host and allowed_hosts in the form Host headers use.
std::string host_form(std::string_view name) {
  std::string h = lower(name);
  if (h.find(':') != std::string::npos && !h.starts_with('[')) h = "[" + h + "]";
  if (h.size() > 1 && h.back() == '.') h.pop_back();
  return h;
}

bool is_ip_literal(const std::string& host) {
  beast::error_code ec;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    net::ip::make_address_v6(host.substr(1, host.size() - 2), ec);
  } else {
    net::ip::make_address_v4(host, ec);  // dotted quad only (inet_pton): "0x7f.1" is not one
  }
  return !ec;
}

bool host_allowed(const ServerSettings& s, const std::string& host) {
  if (is_ip_literal(host) || host == "localhost" || host == host_form(s.host)) return true;
  for (const std::string& name : s.allowed_hosts)
    if (name == "*" || host_form(name) == host) return true;
  return false;
}

struct Origin {
  std::string scheme;  // lower case
  Authority authority;
  int32_t port() const { return authority.port >= 0 ? authority.port : scheme == "https" ? 443 : scheme == "http" ? 80 : -1; }
};

std::optional<Origin> parse_origin(std::string_view text) {
  const size_t sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  std::optional<Authority> a = parse_authority(text.substr(sep + 3));
  if (!a) return std::nullopt;
  return Origin{lower(text.substr(0, sep)), std::move(*a)};
}

// Whether a cors_origins entry admits `origin` (default ports and case do not matter).
bool origin_listed(const std::string& entry, std::string_view origin) {
  if (entry == "*") return true;
  std::optional<Origin> a = parse_origin(entry), b = parse_origin(origin);
  if (a && b) return a->scheme == b->scheme && a->authority.host == b->authority.host && a->port() == b->port();
  return beast::iequals(entry, origin);  // "null", or something that is not scheme://host
}

// Header names as Access-Control-Request-Headers lists them: tokens, commas, spaces.
bool is_token_list(std::string_view s) {
  if (s.size() > 1024) return false;
  for (char c : s)
    if (!(std::isalnum((unsigned char)c) || c == '-' || c == '_' || c == ',' || c == ' ')) return false;
  return true;
}

}  // namespace

std::optional<ApiError> Session::check_host() const {
  const size_t n_host = request_.count(http::field::host);
  if (n_host > 1) return ApiError::bad_request("the request has more than one Host header", {}, "bad_http_request");
  if (n_host == 0) {
    if (request_.version() >= 11)
      return ApiError::bad_request("an HTTP/1.1 request must have a Host header", {}, "bad_http_request");
    return std::nullopt;  // HTTP/1.0 (no browser sends it)
  }
  const std::string value(request_[http::field::host]);
  std::optional<Authority> host = parse_authority(value);
  if (!host) return ApiError::bad_request("malformed Host header '" + value + "'", {}, "bad_http_request");
  // With keys a rebinding page gets nowhere: it cannot know or send one.
  if (!state_.settings.api_keys.empty() || host_allowed(state_.settings, host->host)) return std::nullopt;
  return ApiError(403, "invalid_request_error",
                  fmt::format("Host '{}' is not a name of this server. Without an API key it answers only requests "
                              "that name it by IP address, 'localhost' or its configured host (this refuses web "
                              "pages that rebind their DNS name to it). To use this name, add \"{}\" to [server] "
                              "allowed_hosts (or pass --allowed-host {}), or configure api_keys.",
                              value, host->host, host->host),
                  {}, "host_not_allowed");
}

std::optional<ApiError> Session::check_origin() {
  const size_t n_origin = request_.count(http::field::origin);
  if (n_origin == 0) return std::nullopt;  // not a browser's cross-origin request
  if (n_origin > 1) return ApiError::bad_request("the request has more than one Origin header", {}, "bad_http_request");
  const std::string origin(request_[http::field::origin]);
  bool same_origin = false;
  if (std::optional<Origin> o = parse_origin(origin); o && o->scheme == "http") {
    std::optional<Authority> host = parse_authority(request_[http::field::host]);
    same_origin = host && host->host == o->authority.host && (host->port >= 0 ? host->port : 80) == o->port();
  }
  if (same_origin) return std::nullopt;
  for (const std::string& entry : state_.settings.cors_origins) {
    if (origin_listed(entry, origin)) {
      cors_origin_ = origin;
      return std::nullopt;
    }
  }
  return ApiError(403, "invalid_request_error",
                  fmt::format("Origin '{}' may not call this server: requests from web pages of other origins are "
                              "refused. To allow this one, add \"{}\" to [server] cors_origins (or pass "
                              "--cors-origin {}); \"*\" allows any origin.",
                              origin, origin, origin),
                  {}, "origin_not_allowed");
}

std::optional<ApiError> Session::check_media_type() const {
  const std::string_view value = request_[http::field::content_type];
  std::string_view type = value.substr(0, value.find(';'));
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  if (beast::iequals(type, "application/json")) return std::nullopt;
  std::string target(request_.target());
  target = target.substr(0, target.find('?'));
  return ApiError(415, "invalid_request_error",
                  fmt::format("Content-Type must be application/json for POST {}; {}.", target,
                              value.empty() ? std::string("the request has no Content-Type header")
                                            : "got '" + std::string(value.substr(0, 200)) + "'"),
                  {}, "unsupported_media_type");
}

// A CORS preflight (or a plain OPTIONS): what the routes accept. It carries no key (browsers
// never send credentials with one); the Origin was checked before.
void Session::handle_preflight() {
  std::vector<std::pair<std::string, std::string>> headers = {{"Allow", "GET, POST, OPTIONS"}};
  if (!cors_origin_.empty()) {
    headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    std::string allowed = "Authorization, Content-Type";
    // The origin is trusted by the operator: let its client send its own headers too (the openai
    // SDK in a browser adds X-Stainless-*).
    if (std::string_view asked = request_[http::field::access_control_request_headers]; !asked.empty() && is_token_list(asked))
      allowed += ", " + std::string(asked);
    headers.emplace_back("Access-Control-Allow-Headers", allowed);
    headers.emplace_back("Access-Control-Max-Age", "600");
    if (beast::iequals(request_["Access-Control-Request-Private-Network"], "true"))
      headers.emplace_back("Access-Control-Allow-Private-Network", "true");
  }
  respond(http::status::no_content, {}, "", std::move(headers));
}

void Session::internal_error(std::string_view target, std::string_view what, bool bug) {
  log_line(fmt::format("internal error in {} {} (request {}): {}{}", std::string(request_.method_string()), target,
                       request_number_, what, bug ? " (a bug; please report it)" : ""));
  respond_error(ApiError::internal(fmt::format(
      "The server had an internal error while processing your request (request {}); its log has the details.",
      request_number_)));
}

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
  if (std::optional<ApiError> refused = check_host()) return respond_error(*refused);
  if (std::optional<ApiError> refused = check_origin()) return respond_error(*refused);
  const Route* route = nullptr;
  bool path_known = false;
  for (const Route& r : kRoutes) {
    if (target != r.path) continue;
    path_known = true;
    if (request_.method() == r.method) route = &r;
  }
  if (!path_known && target.starts_with("/v1/models/") &&
      (request_.method() == http::verb::get || request_.method() == http::verb::options)) {
    path_known = true;
  }
  if (!path_known) {
    return respond_error(ApiError(404, "invalid_request_error",
                                  "Unknown request URL: " + std::string(request_.method_string()) + " " +
                                      std::string(target),
                                  {}, "unknown_url"));
  }
  if (request_.method() == http::verb::options) return handle_preflight();
  if (!route && !target.starts_with("/v1/models/")) {
    std::string allow;
    for (const Route& r : kRoutes)
      if (target == r.path) allow += (allow.empty() ? "" : ", ") + std::string(http::to_string(r.method));
    return respond_error(ApiError(405, "invalid_request_error",
                                  "Method " + std::string(request_.method_string()) + " is not allowed on " +
                                      std::string(target) + "; use " + allow,
                                  {}, "method_not_allowed"),
                         {{"Allow", allow}});
  }
  if (target == "/health") return handle_health();
  if (target == "/") return handle_page();
  if (!authorized()) {
    return respond_error(ApiError(401, "invalid_request_error",
                                  request_[http::field::authorization].empty()
                                      ? "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
                                      : "Incorrect API key provided.",
                                  {}, "invalid_api_key"),
                         {{"WWW-Authenticate", "Bearer"}});
  }
  if (route && route->method == http::verb::post) {
    if (std::optional<ApiError> refused = check_media_type()) return respond_error(*refused);
  }
  try {
    if (target == "/v1/chat/completions") return handle_generation(Endpoint::ChatCompletions);
    if (target == "/v1/completions") return handle_generation(Endpoint::Completions);
    if (target == "/infill") return handle_generation(Endpoint::Infill);
    if (target == "/metrics") return handle_metrics();
    if (target == "/props") return handle_props();
    if (target == "/slots") return handle_slots();
    if (target == "/tokenize") return handle_utility(GenerationJob::Utility::Tokenize);
    if (target == "/detokenize") return handle_utility(GenerationJob::Utility::Detokenize);
    if (target == "/apply-template") return handle_utility(GenerationJob::Utility::ApplyTemplate);
    if (target == "/version") return handle_version();
    return handle_models();
  } catch (const ApiError& e) {
    return respond_error(e);
  } catch (const InternalError& e) {
    return internal_error(target, e.what(), /*bug=*/true);
  } catch (const std::exception& e) {  // e.g. out of memory
    return internal_error(target, e.what(), /*bug=*/false);
  }
}

void Session::handle_generation(Endpoint endpoint) {
  OpenAIRequest request = parse_request(endpoint, request_.body());
  ModelService& service = served_model(request.model, "Missing required parameter: 'model'");
  if (state_.shutting_down) throw ApiError::unavailable("the server is shutting down", "shutting_down");
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
  gen.logprobs = job.logprobs >= 0;

  uint64_t serial = gen.serial;
  std::shared_ptr<Mailbox> mailbox = mailbox_;
  job.on_accepted = [mailbox, serial]() { mailbox->post([serial](Session& s) { s.on_accepted(serial); }); };
  job.on_prompt_processed = [mailbox, serial](int64_t) {
    mailbox->post([serial](Session& s) { s.on_prompt_processed(serial); });
  };
  job.on_delta = [mailbox, serial](std::string_view text, std::string_view reasoning) {
    mailbox->post([serial, t = std::string(text), r = std::string(reasoning)](Session& s) mutable {
      s.on_delta(serial, std::move(t), std::move(r));
    });
  };
  if (job.logprobs >= 0)
    job.on_logprobs = [mailbox, serial](std::vector<TokenLogprob> entries) {
      mailbox->post([serial, e = std::move(entries)](Session& s) mutable { s.on_logprobs(serial, std::move(e)); });
    };
  submit(service, std::move(job), std::move(gen));
}

// Hands `job` to the service as the connection's one running job; on_done reaches this strand.
// The service prepares it (template, tokeniser) on its own thread; the response (a stream, or an
// error such as a prompt too long) starts when it accepts or rejects the job. Meanwhile a client
// that goes away cancels the preparation.
void Session::submit(ModelService& service, GenerationJob job, Generation gen) {
  const uint64_t serial = gen.serial;
  std::shared_ptr<Mailbox> mailbox = mailbox_;
  std::shared_ptr<JobCounter> jobs = state_.jobs;
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
  gen_self_ = shared_from_this();
  watch_disconnect();
}

// POST /tokenize {"content", "add_special" (false), "parse_special" (true), "with_pieces" (false)}
//   -> {"tokens": [ids]} or {"tokens": [{"id", "piece"}]} (a piece that is not UTF-8: its bytes)
// POST /detokenize {"tokens": [ids]} -> {"content"}
// POST /apply-template {"messages": [...]} -> {"prompt"}
// llama-server's shapes, with "model" as in the generation requests (optional with one model).
// The work runs on the model's preparation thread, as a prompt's does (ModelService).
void Session::handle_utility(GenerationJob::Utility kind) {
  using Utility = GenerationJob::Utility;
  json body;
  try {
    body = json::parse(request_.body());
  } catch (const json::parse_error& e) {
    throw ApiError::bad_request(std::string("the body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw ApiError::bad_request("the body must be a JSON object");
  GenerationJob job;
  job.utility = kind;
  std::string model;
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) throw ApiError::bad_request("'model' must be a string", "model");
    model = body["model"].get<std::string>();
  }
  auto flag = [&](const char* key, bool fallback) {
    if (!body.contains(key) || body[key].is_null()) return fallback;
    if (!body[key].is_boolean()) throw ApiError::bad_request(fmt::format("'{}' must be true or false", key), key);
    return body[key].get<bool>();
  };
  bool with_pieces = false;
  if (kind == Utility::Tokenize) {
    if (!body.contains("content") || !body["content"].is_string())
      throw ApiError::bad_request("'content' (a string) is required", "content", "missing_required_parameter");
    job.prompt = body["content"].get<std::string>();
    job.add_special = flag("add_special", false);
    job.parse_special = flag("parse_special", true);
    with_pieces = flag("with_pieces", false);
  } else if (kind == Utility::Detokenize) {
    if (!body.contains("tokens") || !body["tokens"].is_array())
      throw ApiError::bad_request("'tokens' (an array of token ids) is required", "tokens", "missing_required_parameter");
    for (const json& t : body["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
        throw ApiError::bad_request("'tokens' must hold token ids (non-negative integers)", "tokens", "invalid_value");
      job.tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
  } else {
    const OpenAIRequest chat = parse_request(Endpoint::ChatCompletions, request_.body());
    job.messages = chat.messages;
  }
  ModelService& service = served_model(model, "Missing required parameter: 'model'");
  if (state_.shutting_down) throw ApiError::unavailable("the server is shutting down", "shutting_down");

  Generation gen;
  gen.serial = next_serial_++;
  gen.utility = kind;
  gen.with_pieces = with_pieces;
  gen.meta.id = fmt::format("util-{:016x}", random_seed());
  gen.meta.model = service.name();
  gen.metrics = &state_.metrics.model(service.name());
  job.id = gen.meta.id;
  submit(service, std::move(job), std::move(gen));
}

// The answer of a finished utility job.
std::string utility_body(GenerationJob::Utility kind, bool with_pieces, const UtilityResult& u) {
  using Utility = GenerationJob::Utility;
  json body;
  if (kind == Utility::Tokenize) {
    json tokens = json::array();
    for (size_t i = 0; i < u.tokens.size(); ++i) {
      if (!with_pieces) {
        tokens.push_back(u.tokens[i]);
        continue;
      }
      const std::string& piece = i < u.pieces.size() ? u.pieces[i] : std::string();
      json p;
      if (tokenizer::utf8_is_valid(piece)) {
        p = piece;
      } else {
        p = json::array();
        for (unsigned char c : piece) p.push_back(static_cast<int>(c));
      }
      tokens.push_back(json{{"id", u.tokens[i]}, {"piece", std::move(p)}});
    }
    body["tokens"] = std::move(tokens);
  } else if (kind == Utility::Detokenize) {
    body["content"] = u.text;
  } else {
    body["prompt"] = u.text;
  }
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

void Session::on_accepted(uint64_t serial) {
  if (!gen_ || gen_->serial != serial || gen_->done || gen_->accepted) return;
  gen_->accepted = true;
  gen_->metrics->requests += 1;
  if (gen_->client_gone || phase_ == Phase::Closed) return;
  if (gen_->stream) {
    stream_begin();
    gen_->stream_started = true;
    if (gen_->meta.endpoint == Endpoint::ChatCompletions) stream_send(sse_role_chunk(gen_->meta));
  }
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
    LogprobsView lp;
    if (gen_->logprobs) lp = {&gen_->token_logprobs, gen_->text_offset};
    if (phase_ != Phase::Closed) stream_send(sse_delta_chunk(gen_->meta, text, reasoning, lp));
    for (const TokenLogprob& e : gen_->token_logprobs) gen_->text_offset += e.text_bytes();
    gen_->token_logprobs.clear();
  } else {
    gen_->text += text;
    gen_->reasoning += reasoning;
  }
}

// The entries of the tokens whose text the next on_delta carries (the service's order).
void Session::on_logprobs(uint64_t serial, std::vector<TokenLogprob> entries) {
  if (!gen_ || gen_->serial != serial || gen_->done || gen_->client_gone) return;
  for (TokenLogprob& e : entries) gen_->token_logprobs.push_back(std::move(e));
}

// Streaming: entries of tokens no delta carried (their text never came) go in a chunk of their
// own before the finish chunk.
void Session::send_last_logprobs() {
  if (!gen_->logprobs || gen_->token_logprobs.empty()) return;
  stream_send(sse_delta_chunk(gen_->meta, "", "", {&gen_->token_logprobs, gen_->text_offset}));
  gen_->token_logprobs.clear();
}

void Session::log_request(const Completion& c) const {
  std::string outcome;
  if (c.rejected) outcome = fmt::format("refused ({} {})", c.rejected->status, c.rejected->code);
  else if (gen_->client_gone) outcome = "client gone";
  else if (c.finish == FinishReason::Error) outcome = "failed: " + c.error;
  else outcome = "finish " + std::string(finish_reason_name(c.finish));
  log_line(fmt::format("{} model '{}': {}; prompt {} tokens ({} prefilled in {:.0f} ms), completion {} tokens at "
                       "{:.1f} tok/s",
                       gen_->meta.id, gen_->meta.model, outcome, c.usage.prompt_tokens, c.timings.prompt_n,
                       c.timings.prompt_ms, c.usage.completion_tokens, c.timings.predicted_per_second()));
}

void Session::on_done(uint64_t serial, Completion completion) {
  if (!gen_ || gen_->serial != serial || gen_->done) return;
  gen_->done = true;
  log_request(completion);
  if (gen_->accepted) gen_->metrics->finish(completion);
  std::shared_ptr<Session> self = std::move(gen_self_);  // released when this returns
  keepalive_timer_.cancel();
  if (gen_->client_gone || phase_ == Phase::Closed) {
    gen_.reset();
    return close();
  }
  if (gen_->stream_started) {
    if (completion.finish == FinishReason::Error) {
      stream_send(sse_error_event(ApiError::internal(completion.error)));
      close_after_ = true;
    } else {
      send_last_logprobs();
      stream_send(sse_finish_chunk(gen_->meta, completion));
      if (gen_->include_usage) stream_send(sse_usage_chunk(gen_->meta, completion));
      if (gen_->meta.endpoint != Endpoint::Infill) stream_send(kSseDone);  // llama.cpp's native stream has none
    }
    return stream_finish();
  }
  // No byte of the response is out yet: the rejection or failure is a plain error response.
  if (completion.rejected) return respond_error(*completion.rejected);
  if (completion.finish == FinishReason::Error) return respond_error(ApiError::internal(completion.error));
  if (completion.finish == FinishReason::Cancelled && (state_.shutting_down || !gen_->accepted))
    return respond_error(ApiError::unavailable("the server is shutting down; the request was cancelled", "shutting_down"));
  if (gen_->stream) {
    // Accepted and finished before on_accepted reached this strand cannot happen (the mailbox
    // keeps the order), but a streaming client must still get a stream.
    stream_begin();
    gen_->stream_started = true;
    if (gen_->meta.endpoint == Endpoint::ChatCompletions) stream_send(sse_role_chunk(gen_->meta));
    send_last_logprobs();
    stream_send(sse_finish_chunk(gen_->meta, completion));
    if (gen_->include_usage) stream_send(sse_usage_chunk(gen_->meta, completion));
    if (gen_->meta.endpoint != Endpoint::Infill) stream_send(kSseDone);
    return stream_finish();
  }
  if (gen_->utility != GenerationJob::Utility::None)
    return respond(http::status::ok, utility_body(gen_->utility, gen_->with_pieces, completion.utility));
  LogprobsView lp;
  if (gen_->logprobs) lp.entries = &gen_->token_logprobs;
  respond(http::status::ok, completion_body(gen_->meta, gen_->text, gen_->reasoning, completion, lp));
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
  body["status"] = state_.shutting_down ? "draining" : "unavailable";
  body["models"] = models;
  respond(http::status::service_unavailable, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

// GET /props[?model=NAME]: llama-server's shape (default_generation_settings, total_slots,
// model_path, chat_template, build_info) for one model; the query names it when several are
// served.
// The model a GET names with ?model=NAME, or the only one served.
const ModelService& Session::model_from_query(const char* route) const {
  std::string_view target = request_.target();
  std::string name;
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
      std::string_view pair = query.substr(0, query.find('&'));
      query = pair.size() < query.size() ? query.substr(pair.size() + 1) : std::string_view{};
      if (pair.starts_with("model=")) name = percent_decode(pair.substr(6));
    }
  }
  return served_model(name, fmt::format("Name the model: {}?model=NAME", route));
}

// The model `name` names (404 if none), or with no name the only one served (400 saying
// `missing` and the names when there are several).
ModelService& Session::served_model(const std::string& name, std::string_view missing) const {
  if (name.empty()) {
    if (state_.models.size() != 1) {
      std::string names;
      for (const auto& m : state_.models) names += (names.empty() ? "" : ", ") + m->name();
      throw ApiError::bad_request(fmt::format("{} (this server serves {}).", missing, names), "model",
                                  "missing_required_parameter");
    }
    return *state_.models.front();
  }
  auto it = state_.by_name.find(name);
  if (it == state_.by_name.end())
    throw ApiError(404, "invalid_request_error", "The model '" + name + "' does not exist", "model", "model_not_found");
  return *it->second;
}

// GET /slots[?model=NAME]: llama-server's per-slot list (id, n_ctx, is_processing) with the
// slot's cached, prompt and generated token counts as of the last step.
void Session::handle_slots() {
  const ModelService& m = model_from_query("/slots");
  const ServiceStats st = m.stats();
  json slots = json::array();
  for (size_t i = 0; i < st.slots.size(); ++i) {
    const SlotState& s = st.slots[i];
    slots.push_back({{"id", i},
                     {"n_ctx", m.n_ctx()},
                     {"is_processing", s.busy},
                     {"n_past", s.n_cached},
                     {"n_prompt_tokens", s.n_prompt},
                     {"next_token", {{"n_decoded", s.n_decoded}}}});
  }
  respond(http::status::ok, slots.dump());
}

void Session::handle_props() {
  const ModelService& m = model_from_query("/props");
  const SamplingDefaults& d = m.sampling_defaults();
  std::string message;
  const ModelService::State st = m.state(&message);
  json params = {{"temperature", d.temperature},
                 {"top_p", d.top_p},
                 {"top_k", d.top_k},
                 {"min_p", d.min_p},
                 {"repeat_penalty", d.repeat_penalty},
                 {"repeat_last_n", d.repeat_last_n},
                 {"presence_penalty", d.presence_penalty},
                 {"frequency_penalty", d.frequency_penalty},
                 {"seed", d.seed ? json(*d.seed) : json(-1)},
                 {"n_predict", d.max_tokens}};
  json body = {{"model", m.name()},
               {"state", state_name(st)},
               {"default_generation_settings", {{"n_ctx", m.n_ctx()}, {"params", params}}},
               {"total_slots", m.stats().n_slots},
               {"model_path", m.model_path()},
               {"chat_template", m.chat_template_source()},
               {"build_info", "velocity " VELOCITY_VERSION}};
  respond(http::status::ok, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

// GET / (and HEAD /): the built-in chat page. Like /health it needs no key, since it holds nothing
// but the UI and the API calls it makes carry the key its user types; it passes the Host and Origin
// checks like every route. The policy lets it run only its own inline script and style, fetch only
// from this origin, and not be framed by another page.
void Session::handle_page() {
  respond(http::status::ok, std::string(chat_page()), "text/html; charset=utf-8",
          {{"Cache-Control", "no-cache"},
           {"Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
           {"X-Content-Type-Options", "nosniff"},
           {"Referrer-Policy", "no-referrer"}});
}

// GET /version: the server's version.
void Session::handle_version() {
  respond(http::status::ok, json{{"version", VELOCITY_VERSION}}.dump());
}

void Session::handle_metrics() {
  respond(http::status::ok, state_.metrics.render(state_.models), "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace velocity::server
