#include "server/sse.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include <random>

namespace velocity::server {

namespace {

using json = nlohmann::ordered_json;

// Model text is whole UTF-8 characters by contract; replacing (not throwing) keeps a broken
// engine from turning into a broken response.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json head(const ResponseMeta& meta, bool chunk) {
  const char* object = meta.endpoint == Endpoint::ChatCompletions ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                                  : "text_completion";
  return json{{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model},
              {"system_fingerprint", "velocity"}};
}

json usage_json(const Usage& u) {
  return json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json timings_json(const Timings& t) {
  return json{{"prompt_n", t.prompt_n},
              {"prompt_ms", t.prompt_ms},
              {"prompt_per_token_ms", t.prompt_n > 0 ? t.prompt_ms / (double)t.prompt_n : 0.0},
              {"prompt_per_second", t.prompt_per_second()},
              {"predicted_n", t.predicted_n},
              {"predicted_ms", t.predicted_ms},
              {"predicted_per_token_ms", t.predicted_n > 0 ? t.predicted_ms / (double)t.predicted_n : 0.0},
              {"predicted_per_second", t.predicted_per_second()}};
}

// llama.cpp's native answer of /infill: the final object (whole response, or the last event).
json infill_final(const ResponseMeta& meta, std::string_view text, const Completion& c) {
  return json{{"index", 0},
              {"content", text},
              {"stop", true},
              {"model", meta.model},
              {"tokens_predicted", c.usage.completion_tokens},
              {"tokens_evaluated", c.usage.prompt_tokens},
              {"stop_type", c.finish == FinishReason::Length ? "limit" : "eos"},
              {"truncated", false},
              {"timings", timings_json(c.timings)}};
}

json bytes_json(const std::string& piece) {
  json b = json::array();
  for (const char c : piece) b.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  return b;
}

json logprobs_json(Endpoint endpoint, LogprobsView v) {
  if (v.entries == nullptr) return nullptr;
  if (endpoint == Endpoint::ChatCompletions) {
    json content = json::array();
    for (const TokenLogprob& e : *v.entries) {
      json top = json::array();
      for (const auto& [piece, lp] : e.top)
        top.push_back({{"token", piece}, {"logprob", lp}, {"bytes", bytes_json(piece)}});
      content.push_back({{"token", e.token},
                         {"logprob", e.logprob},
                         {"bytes", bytes_json(e.token)},
                         {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), offsets = json::array();
  size_t offset = v.text_offset;
  for (const TokenLogprob& e : *v.entries) {
    tokens.push_back(e.token);
    const bool none = std::isnan(e.logprob);  // an echoed prompt's first token
    token_logprobs.push_back(none ? json(nullptr) : json(e.logprob));
    json top = none ? json(nullptr) : json::object();
    for (const auto& [piece, lp] : e.top)
      if (!top.contains(piece)) top[piece] = lp;  // two ids with one piece: the likelier one
    top_logprobs.push_back(std::move(top));
    offsets.push_back(offset);
    offset += e.text_bytes();
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top_logprobs)},
          {"text_offset", std::move(offsets)}};
}

}  // namespace

std::string sse_event(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 8);
  out += "data: ";
  out += data;
  out += "\n\n";
  return out;
}

std::string completion_body(const ResponseMeta& meta, std::string_view text, std::string_view reasoning,
                            const Completion& completion, LogprobsView logprobs) {
  if (meta.endpoint == Endpoint::Infill) return dump(infill_final(meta, text, completion));
  json j = head(meta, false);
  json choice = {{"index", 0}};
  if (meta.endpoint == Endpoint::ChatCompletions) {
    json message = {{"role", "assistant"}, {"content", text}};
    if (!reasoning.empty()) message["reasoning_content"] = reasoning;
    choice["message"] = std::move(message);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs_json(meta.endpoint, logprobs);
  choice["finish_reason"] = finish_reason_name(completion.finish);
  j["choices"] = json::array({std::move(choice)});
  j["usage"] = usage_json(completion.usage);
  j["timings"] = timings_json(completion.timings);
  return dump(j);
}

std::string sse_role_chunk(const ResponseMeta& meta) {
  json j = head(meta, true);
  j["choices"] = json::array(
      {json{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  return sse_event(dump(j));
}

std::string sse_delta_chunk(const ResponseMeta& meta, std::string_view text, std::string_view reasoning,
                            LogprobsView logprobs) {
  if (meta.endpoint == Endpoint::Infill) return sse_event(dump(json{{"index", 0}, {"content", text}, {"stop", false}}));
  json j = head(meta, true);
  json choice = {{"index", 0}};
  if (meta.endpoint == Endpoint::ChatCompletions) {
    json delta = json::object();
    if (!text.empty()) delta["content"] = text;
    if (!reasoning.empty()) delta["reasoning_content"] = reasoning;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs_json(meta.endpoint, logprobs);
  choice["finish_reason"] = nullptr;
  j["choices"] = json::array({std::move(choice)});
  return sse_event(dump(j));
}

std::string sse_finish_chunk(const ResponseMeta& meta, const Completion& completion) {
  if (meta.endpoint == Endpoint::Infill) return sse_event(dump(infill_final(meta, "", completion)));
  json j = head(meta, true);
  json choice = {{"index", 0}};
  if (meta.endpoint == Endpoint::ChatCompletions) choice["delta"] = json::object();
  else choice["text"] = "";
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason_name(completion.finish);
  j["choices"] = json::array({std::move(choice)});
  j["timings"] = timings_json(completion.timings);
  return sse_event(dump(j));
}

std::string sse_usage_chunk(const ResponseMeta& meta, const Completion& completion) {
  json j = head(meta, true);
  j["choices"] = json::array();
  j["usage"] = usage_json(completion.usage);
  return sse_event(dump(j));
}

std::string sse_error_event(const ApiError& error) { return sse_event(error_body(error)); }

std::string make_response_id(Endpoint endpoint) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = endpoint == Endpoint::ChatCompletions ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) id += kHex[rng() & 15];
  return id;
}

}  // namespace velocity::server
