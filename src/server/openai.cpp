// OpenAI request parsing. Error messages follow OpenAI's wording where there is one
// ("Missing required parameter: 'messages'.", "Invalid type for 'top_p': expected a number, but
// got a string instead."), with param = the JSON path of the field ("messages[2].content").
#include "server/openai.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>

#include "runtime/logprobs.h"
#include "runtime/stop_strings.h"

namespace velocity::server {

namespace {

using json = nlohmann::json;

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a decimal number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

[[noreturn]] void invalid_type(const std::string& param, const char* expected, const json& got) {
  throw ApiError::bad_request("Invalid type for '" + param + "': expected " + expected + ", but got " +
                                  type_name(got) + " instead.",
                              param, "invalid_type");
}

[[noreturn]] void invalid_value(const std::string& param, const std::string& why) {
  throw ApiError::bad_request("Invalid value for '" + param + "': " + why, param, "invalid_value");
}

std::string fmt_num(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "?";
}

// The field's value, or null when absent or null.
const json* field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

double number(const json& v, const std::string& param) {
  if (!v.is_number()) invalid_type(param, "a number", v);
  double d = v.get<double>();
  if (!std::isfinite(d)) invalid_value(param, "must be a finite number.");
  return d;
}

std::optional<float> number_in(const json& object, const char* key, double lo, double hi, bool lo_open = false) {
  const json* v = field(object, key);
  if (!v) return std::nullopt;
  double d = number(*v, key);
  if ((lo_open ? d <= lo : d < lo) || d > hi)
    invalid_value(key, "must be in " + std::string(lo_open ? "(" : "[") + fmt_num(lo) + ", " + fmt_num(hi) +
                           "], got " + fmt_num(d) + ".");
  return (float)d;
}

// An integer in [lo, hi]; int64 range. A decimal number is a type error even when integral (4.0),
// as in OpenAI's API: "Invalid type for 'max_tokens': expected an integer, but got a decimal
// number instead."
std::optional<int64_t> integer_in(const json& object, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(object, key);
  if (!v) return std::nullopt;
  int64_t i = 0;
  if (v->is_number_integer() && !v->is_number_unsigned()) {
    i = v->get<int64_t>();
  } else if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (hi < 0 || u > (uint64_t)hi)
      invalid_value(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(u) + ".");
    i = (int64_t)u;
  } else {
    invalid_type(key, "an integer", *v);
  }
  if (i < lo || i > hi)
    invalid_value(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(i) + ".");
  return i;
}

// Fields whose answer velocity cannot give yet: asked for, they are a 400 naming the field rather
// than a response without what the client counts on (an evaluation reading logprobs or echo
// would get wrong numbers, not an error).
[[noreturn]] void unsupported(const std::string& param, const std::string& why) {
  throw ApiError::bad_request("Unsupported parameter: '" + param + "' " + why, param, "unsupported_parameter");
}

void reject_unsupported(Endpoint endpoint, const json& j) {
  // Constrained output and tool calls: a client that sends them parses what comes back as JSON or
  // as tool calls, so plain text would fail it later and less clearly.
  if (const json* v = field(j, "response_format");
      v && !(v->is_object() && v->contains("type") && (*v)["type"] == "text"))
    unsupported("response_format", "is not supported yet (no structured output); send {\"type\": \"text\"} or omit it.");
  for (const char* key : {"grammar", "json_schema"})
    if (const json* v = field(j, key); v && !v->is_null() && !(v->is_string() && v->get_ref<const std::string&>().empty()))
      unsupported(key, "is not supported yet (no constrained output); omit it.");
  if (const json* v = field(j, "tools"); v && !v->is_null() && !(v->is_array() && v->empty()))
    unsupported("tools", "is not supported yet (no tool calls); omit it.");
  if (const json* v = field(j, "functions"); v && !v->is_null() && !(v->is_array() && v->empty()))
    unsupported("functions", "is not supported yet (no function calls); omit it.");
  if (const json* v = field(j, "tool_choice"); v && !v->is_null() && !(v->is_string() && *v == "none"))
    unsupported("tool_choice", "is not supported yet (no tool calls); send \"none\" or omit it.");
  if (const json* v = field(j, "function_call"); v && !v->is_null() && !(v->is_string() && *v == "none"))
    unsupported("function_call", "is not supported yet (no function calls); send \"none\" or omit it.");
  if (endpoint == Endpoint::Completions) {
    if (const json* v = field(j, "best_of"); v && !v->is_number_integer()) invalid_type("best_of", "an integer", *v);
    if (const json* v = field(j, "best_of"); v && v->get<int64_t>() != 1) unsupported("best_of", "must be 1 (or omitted).");
  }
}

bool boolean(const json& object, const char* key, const std::string& param) {
  const json* v = field(object, key);
  if (!v) return false;
  if (!v->is_boolean()) invalid_type(param, "a boolean", *v);
  return v->get<bool>();
}

std::string content_text(const json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) invalid_type(param, "a string or an array of content parts", content);
  std::string text;
  for (size_t j = 0; j < content.size(); ++j) {
    const json& part = content[j];
    std::string p = param + "[" + std::to_string(j) + "]";
    if (!part.is_object()) invalid_type(p, "an object", part);
    const json* type = field(part, "type");
    if (!type) throw ApiError::bad_request("Missing required parameter: '" + p + ".type'.", p + ".type",
                                           "missing_required_parameter");
    if (!type->is_string()) invalid_type(p + ".type", "a string", *type);
    if (type->get<std::string>() != "text")
      throw ApiError::bad_request("Content part type '" + type->get<std::string>() +
                                      "' is not supported; only 'text' is.",
                                  p + ".type", "unsupported_value");
    const json* t = field(part, "text");
    if (!t) throw ApiError::bad_request("Missing required parameter: '" + p + ".text'.", p + ".text",
                                        "missing_required_parameter");
    if (!t->is_string()) invalid_type(p + ".text", "a string", *t);
    if (j > 0) text += '\n';
    text += t->get<std::string>();
  }
  return text;
}

std::string optional_string(const json& object, const char* key, const std::string& param) {
  const json* v = field(object, key);
  if (!v) return {};
  if (!v->is_string()) invalid_type(param, "a string", *v);
  return v->get<std::string>();
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* messages = field(body, "messages");
  if (!messages)
    throw ApiError::bad_request("Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
  if (!messages->is_array()) invalid_type("messages", "an array", *messages);
  if (messages->empty())
    throw ApiError::bad_request("Invalid 'messages': empty array. Expected an array with minimum length 1.",
                                "messages", "empty_array");
  std::vector<ChatMessage> out;
  out.reserve(messages->size());
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    std::string p = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) invalid_type(p, "an object", m);
    ChatMessage msg;
    const json* role = field(m, "role");
    if (!role)
      throw ApiError::bad_request("Missing required parameter: '" + p + ".role'.", p + ".role",
                                  "missing_required_parameter");
    if (!role->is_string()) invalid_type(p + ".role", "a string", *role);
    msg.role = role->get<std::string>();
    if (msg.role != "system" && msg.role != "developer" && msg.role != "user" && msg.role != "assistant" &&
        msg.role != "tool")
      throw ApiError::bad_request("Invalid value for '" + p + ".role': '" + msg.role +
                                      "'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.",
                                  p + ".role", "invalid_value");
    const json* content = field(m, "content");
    if (content) {
      msg.content = content_text(*content, p + ".content");
    } else if (msg.role != "assistant") {
      throw ApiError::bad_request("Missing required parameter: '" + p + ".content'.", p + ".content",
                                  "missing_required_parameter");
    }
    msg.name = optional_string(m, "name", p + ".name");
    msg.tool_call_id = optional_string(m, "tool_call_id", p + ".tool_call_id");
    msg.reasoning_content = optional_string(m, "reasoning_content", p + ".reasoning_content");
    out.push_back(std::move(msg));
  }
  return out;
}

std::string parse_prompt(const json& body) {
  const json* prompt = field(body, "prompt");
  if (!prompt)
    throw ApiError::bad_request("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter");
  if (prompt->is_string()) return prompt->get<std::string>();
  if (!prompt->is_array()) invalid_type("prompt", "a string or an array of one string", *prompt);
  if (prompt->size() == 1 && (*prompt)[0].is_string()) return (*prompt)[0].get<std::string>();
  if (!prompt->empty() && ((*prompt)[0].is_number_integer() || (*prompt)[0].is_array()))
    throw ApiError::bad_request("Token arrays as 'prompt' are not supported; send the prompt as a string.",
                                "prompt", "unsupported_value");
  throw ApiError::bad_request("'prompt' must be a string or an array of exactly one string (got " +
                                  std::to_string(prompt->size()) + " elements).",
                              "prompt", "invalid_value");
}

std::vector<std::string> parse_stop(const json& body) {
  const json* stop = field(body, "stop");
  std::vector<std::string> out;
  if (!stop) return out;
  auto add = [&](const json& s, const std::string& param) {
    if (!s.is_string()) invalid_type(param, "a string", s);
    std::string text = s.get<std::string>();
    if (text.empty()) invalid_value(param, "stop strings must not be empty.");
    if (text.size() > runtime::StopStrings::kMaxStopBytes)
      invalid_value(param, "a stop string may have at most " + std::to_string(runtime::StopStrings::kMaxStopBytes) +
                               " bytes, got " + std::to_string(text.size()) + ".");
    out.push_back(std::move(text));
  };
  if (stop->is_string()) {
    add(*stop, "stop");
  } else if (stop->is_array()) {
    if (stop->size() > kMaxStops)
      invalid_value("stop", "at most " + std::to_string(kMaxStops) + " stop strings, got " +
                                std::to_string(stop->size()) + ".");
    for (size_t i = 0; i < stop->size(); ++i) add((*stop)[i], "stop[" + std::to_string(i) + "]");
  } else {
    invalid_type("stop", "a string or an array of strings", *stop);
  }
  return out;
}

std::vector<runtime::LogitBias> parse_logit_bias(const json& body) {
  const json* bias = field(body, "logit_bias");
  std::vector<runtime::LogitBias> out;
  if (!bias) return out;
  if (!bias->is_object()) invalid_type("logit_bias", "an object", *bias);
  if (bias->size() > kMaxLogitBias)
    invalid_value("logit_bias", "at most " + std::to_string(kMaxLogitBias) + " entries, got " +
                                    std::to_string(bias->size()) + ".");
  for (auto it = bias->begin(); it != bias->end(); ++it) {
    const std::string& key = it.key();
    int32_t token = -1;
    auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), token);
    if (key.empty() || ec != std::errc() || end != key.data() + key.size() || token < 0)
      invalid_value("logit_bias", "keys must be token ids (non-negative integers as strings), got '" + key + "'.");
    double v = number(it.value(), "logit_bias");
    if (v < -100 || v > 100) invalid_value("logit_bias", "values must be in [-100, 100], got " + fmt_num(v) + ".");
    out.push_back({token, (float)v});
  }
  return out;
}

// /infill, as llama.cpp's server reads it: input_prefix, input_suffix, prompt (the text at the
// cursor) strings, all optional; input_extra [{filename, text}]; n_predict (-1: no limit) or
// max_tokens.
void parse_infill(const json& j, OpenAIRequest& r) {
  r.prompt = optional_string(j, "input_prefix", "input_prefix");
  r.suffix = optional_string(j, "input_suffix", "input_suffix");
  r.infill_cursor = optional_string(j, "prompt", "prompt");
  if (const json* extra = field(j, "input_extra")) {
    if (!extra->is_array()) invalid_type("input_extra", "an array of {filename, text} objects", *extra);
    for (size_t i = 0; i < extra->size(); ++i) {
      const json& chunk = (*extra)[i];
      const std::string p = "input_extra[" + std::to_string(i) + "]";
      if (!chunk.is_object()) invalid_type(p, "an object", chunk);
      r.infill_extra.push_back(
          {optional_string(chunk, "filename", p + ".filename"), optional_string(chunk, "text", p + ".text")});
    }
  }
  if (auto n = integer_in(j, "n_predict", -1, kMaxTokens); n && *n != -1) {
    if (*n == 0) invalid_value("n_predict", "must be -1 (no limit) or at least 1, got 0.");
    r.max_tokens = n;
  }
  if (auto m = integer_in(j, "max_tokens", 1, kMaxTokens)) r.max_tokens = m;
}

// Chat: logprobs (bool) and top_logprobs (0..20, only with logprobs true); completions:
// logprobs (0..20 alternatives, null = none). -1: no logprobs.
int32_t parse_logprobs(Endpoint endpoint, const json& j) {
  if (endpoint == Endpoint::Infill) return -1;  // llama.cpp's n_probs: not supported, ignored
  if (endpoint == Endpoint::Completions) {
    const auto n = integer_in(j, "logprobs", 0, runtime::kMaxTopLogprobs);
    return n ? static_cast<int32_t>(*n) : -1;
  }
  const bool on = boolean(j, "logprobs", "logprobs");
  const auto top = integer_in(j, "top_logprobs", 0, runtime::kMaxTopLogprobs);
  if (top && *top > 0 && !on)  // 0 is what some clients send by default
    throw ApiError::bad_request("'top_logprobs' needs 'logprobs' set to true.", "top_logprobs", "invalid_value");
  return on ? static_cast<int32_t>(top.value_or(0)) : -1;
}

}  // namespace

OpenAIRequest parse_request(Endpoint endpoint, std::string_view body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw ApiError::bad_request(std::string("We could not parse the JSON body of your request. (") + e.what() + ")",
                                {}, "invalid_json");
  }
  if (!j.is_object()) invalid_type("body", "a JSON object", j);

  OpenAIRequest r;
  r.endpoint = endpoint;
  // Absent: the server's only model (routes.cpp); curl users often leave it out.
  if (const json* model = field(j, "model")) {
    if (!model->is_string()) invalid_type("model", "a string", *model);
    r.model = model->get<std::string>();
    if (r.model.empty()) invalid_value("model", "must not be empty.");
  }

  if (endpoint == Endpoint::ChatCompletions) {
    r.messages = parse_messages(j);
    r.max_tokens = integer_in(j, "max_tokens", 1, kMaxTokens);
    if (auto m = integer_in(j, "max_completion_tokens", 1, kMaxTokens)) r.max_tokens = m;
  } else if (endpoint == Endpoint::Infill) {
    parse_infill(j, r);
  } else {
    r.prompt = parse_prompt(j);
    if (const json* v = field(j, "suffix"); v && !v->is_null()) {
      if (!v->is_string()) invalid_type("suffix", "a string", *v);
      r.suffix = v->get<std::string>();
    }
    r.echo = boolean(j, "echo", "echo");
    // 0 scores the prompt and generates nothing: only with echo (lm-eval's loglikelihood).
    r.max_tokens = integer_in(j, "max_tokens", r.echo ? 0 : 1, kMaxTokens);
    if (r.echo && !r.suffix.empty())
      throw ApiError::bad_request("'echo' cannot be used with 'suffix'.", "echo", "invalid_value");
  }
  r.temperature = number_in(j, "temperature", 0, 2);
  r.top_p = number_in(j, "top_p", 0, 1, /*lo_open=*/true);
  if (auto k = integer_in(j, "top_k", 0, INT32_MAX)) r.top_k = (int32_t)*k;
  r.min_p = number_in(j, "min_p", 0, 1);
  r.repeat_penalty = number_in(j, "repeat_penalty", 0, 100, /*lo_open=*/true);
  r.presence_penalty = number_in(j, "presence_penalty", -2, 2);
  r.frequency_penalty = number_in(j, "frequency_penalty", -2, 2);
  if (const json* seed = field(j, "seed")) {
    if (seed->is_number_unsigned()) r.seed = seed->get<uint64_t>();
    else if (seed->is_number_integer()) r.seed = (uint64_t)seed->get<int64_t>();  // two's complement
    else invalid_type("seed", "an integer", *seed);
  }
  r.stop = parse_stop(j);
  r.logit_bias = parse_logit_bias(j);
  if (auto n = integer_in(j, "n", INT64_MIN, INT64_MAX); n && *n != 1)
    invalid_value("n", "only n = 1 is supported, got " + std::to_string(*n) + ".");
  r.logprobs = parse_logprobs(endpoint, j);
  r.stream = boolean(j, "stream", "stream");
  r.ignore_eos = boolean(j, "ignore_eos", "ignore_eos");
  reject_unsupported(endpoint, j);
  if (const json* options = field(j, "stream_options"); options && endpoint != Endpoint::Infill) {
    if (!options->is_object()) invalid_type("stream_options", "an object", *options);
    r.include_usage = boolean(*options, "include_usage", "stream_options.include_usage");
  }
  return r;
}

GenerationJob make_job(const OpenAIRequest& request, const SamplingDefaults& defaults, uint64_t random_seed) {
  GenerationJob job;
  job.is_chat = request.endpoint == Endpoint::ChatCompletions;
  job.messages = request.messages;
  for (ChatMessage& m : job.messages)
    if (m.role == "developer") m.role = "system";
  job.prompt = request.prompt;
  job.suffix = request.suffix;
  runtime::SamplingParams& s = job.sampling;
  s.temperature = request.temperature.value_or(defaults.temperature);
  s.top_p = request.top_p.value_or(defaults.top_p);
  s.top_k = request.top_k.value_or(defaults.top_k);
  s.min_p = request.min_p.value_or(defaults.min_p);
  s.repeat_penalty = request.repeat_penalty.value_or(defaults.repeat_penalty);
  s.repeat_last_n = defaults.repeat_last_n;
  s.presence_penalty = request.presence_penalty.value_or(defaults.presence_penalty);
  s.frequency_penalty = request.frequency_penalty.value_or(defaults.frequency_penalty);
  s.logit_bias = request.logit_bias;
  s.seed = request.seed ? *request.seed : defaults.seed.value_or(random_seed);
  job.max_tokens = request.max_tokens.value_or(defaults.max_tokens);
  job.stop = request.stop;
  job.ignore_eos = request.ignore_eos;
  job.logprobs = request.logprobs;
  job.echo = request.echo;
  if (request.endpoint == Endpoint::Infill)
    job.infill = GenerationJob::Infill{request.infill_cursor, request.infill_extra};
  return job;
}

}  // namespace velocity::server
