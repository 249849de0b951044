#include "server/openai.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/sse.h"

namespace velocity::server {
namespace {

TEST(OpenAIRequest, ChatFieldsMapToTheJob) {
  OpenAIRequest r = parse_request(Endpoint::ChatCompletions, R"({
    "model": "m", "messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": "bob"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "x"}]},
      {"role": "tool", "content": "42", "tool_call_id": "x"}],
    "max_tokens": 10, "max_completion_tokens": 12, "temperature": 0, "top_p": 0.5, "top_k": 7,
    "min_p": 0.1, "repeat_penalty": 1.1, "presence_penalty": -1, "frequency_penalty": 2,
    "seed": -1, "stop": ["x", "yy"], "logit_bias": {"15": -100, "7": 2.5},
    "stream": true, "stream_options": {"include_usage": true}, "n": 1, "ignore_eos": true,
    "user": "ignored", "tools": [], "response_format": null})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1].content, "a\nb");
  EXPECT_EQ(r.messages[1].name, "bob");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].tool_call_id, "x");
  EXPECT_EQ(r.max_tokens, 12);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.ignore_eos);

  SamplingDefaults d;
  GenerationJob job = make_job(r, d, 99);
  EXPECT_TRUE(job.is_chat);
  EXPECT_EQ(job.messages[0].role, "system");  // developer -> system
  EXPECT_EQ(job.max_tokens, 12);
  EXPECT_FLOAT_EQ(job.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(job.sampling.top_p, 0.5f);
  EXPECT_EQ(job.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(job.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(job.sampling.repeat_penalty, 1.1f);
  EXPECT_FLOAT_EQ(job.sampling.presence_penalty, -1.0f);
  EXPECT_FLOAT_EQ(job.sampling.frequency_penalty, 2.0f);
  EXPECT_EQ(job.sampling.seed, UINT64_MAX);
  EXPECT_EQ(job.stop, (std::vector<std::string>{"x", "yy"}));
  EXPECT_TRUE(job.ignore_eos);
  ASSERT_EQ(job.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(job.sampling.logit_bias[0].token, 15);
  EXPECT_FLOAT_EQ(job.sampling.logit_bias[0].bias, -100.0f);
}

// logprobs: chat's bool + top_logprobs, completions' count of alternatives; -1 when not asked.
TEST(OpenAIRequest, LogprobsFields) {
  const char* chat = R"({"model": "m", "messages": [{"role": "user", "content": "x"}], )";
  EXPECT_EQ(parse_request(Endpoint::ChatCompletions, std::string(chat) + R"("logprobs": true, "top_logprobs": 5})").logprobs, 5);
  EXPECT_EQ(parse_request(Endpoint::ChatCompletions, std::string(chat) + R"("logprobs": true})").logprobs, 0);
  EXPECT_EQ(parse_request(Endpoint::ChatCompletions, std::string(chat) + R"("logprobs": false, "top_logprobs": 0})").logprobs, -1);
  EXPECT_EQ(parse_request(Endpoint::ChatCompletions, std::string(chat) + R"("stream": false})").logprobs, -1);
  EXPECT_EQ(parse_request(Endpoint::Completions, R"({"model": "m", "prompt": "x", "logprobs": 3})").logprobs, 3);
  EXPECT_EQ(parse_request(Endpoint::Completions, R"({"model": "m", "prompt": "x", "logprobs": 0})").logprobs, 0);
  EXPECT_EQ(parse_request(Endpoint::Completions, R"({"model": "m", "prompt": "x", "logprobs": null})").logprobs, -1);
  // echo: the prompt first; max_tokens 0 (score the prompt only) is allowed with it
  const OpenAIRequest echo = parse_request(Endpoint::Completions, R"({"prompt": "x", "echo": true, "max_tokens": 0, "logprobs": 1})");
  EXPECT_TRUE(echo.echo);
  EXPECT_EQ(echo.max_tokens, 0);
  const SamplingDefaults defaults;
  EXPECT_TRUE(make_job(echo, defaults, 1).echo);
  EXPECT_EQ(make_job(echo, defaults, 1).max_tokens, 0);
  EXPECT_EQ(make_job(parse_request(Endpoint::Completions, R"({"model": "m", "prompt": "x", "logprobs": 2})"), defaults, 1)
                .logprobs,
            2);
}

// /infill in llama.cpp's field names: prefix, suffix, cursor text, extra files, n_predict.
TEST(OpenAIRequest, InfillFields) {
  const OpenAIRequest r = parse_request(Endpoint::Infill, R"({"input_prefix": "def f(", "input_suffix": "):",
      "prompt": "a", "input_extra": [{"filename": "x.py", "text": "y = 1"}, {"text": "z"}], "n_predict": 12,
      "temperature": 0, "stream": true})");
  EXPECT_EQ(r.prompt, "def f(");
  EXPECT_EQ(r.suffix, "):");
  EXPECT_EQ(r.infill_cursor, "a");
  ASSERT_EQ(r.infill_extra.size(), 2u);
  EXPECT_EQ(r.infill_extra[0].filename, "x.py");
  EXPECT_EQ(r.infill_extra[1].text, "z");
  EXPECT_EQ(r.max_tokens, 12);
  EXPECT_TRUE(r.stream);
  const GenerationJob job = make_job(r, SamplingDefaults{}, 1);
  ASSERT_TRUE(job.infill.has_value());
  EXPECT_FALSE(job.is_chat);
  EXPECT_EQ(job.infill->cursor, "a");
  EXPECT_FALSE(parse_request(Endpoint::Infill, R"({"n_predict": -1})").max_tokens.has_value());  // -1: no limit
  for (const char* bad : {R"({"input_prefix": 3})", R"({"input_extra": {"text": "a"}})", R"({"input_extra": [{"text": 1}]})",
                          R"({"n_predict": 0})"}) {
    try {
      parse_request(Endpoint::Infill, bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400) << bad;
      EXPECT_FALSE(e.param.empty()) << bad;
    }
  }
}

// The unsupported fields in their "off" forms are accepted, as clients send them by default.
TEST(OpenAIRequest, UnsupportedFieldsSwitchedOffAreAccepted) {
  EXPECT_NO_THROW(parse_request(Endpoint::ChatCompletions,
                                R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": false,
                                    "top_logprobs": 0})"));
  EXPECT_NO_THROW(parse_request(Endpoint::ChatCompletions,
                                R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": null})"));
  EXPECT_NO_THROW(parse_request(Endpoint::Completions, R"({"model": "m", "prompt": "x", "logprobs": null, "echo": false,
                                                           "suffix": "", "best_of": 1})"));
  // suffix is fill-in-the-middle (the service refuses it for a model without FIM markers).
  EXPECT_EQ(parse_request(Endpoint::Completions, R"({"model": "m", "prompt": "def f(", "suffix": "  return x"})").suffix,
            "  return x");
  EXPECT_NO_THROW(parse_request(Endpoint::ChatCompletions,
                                R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [],
                                    "tool_choice": "none", "response_format": {"type": "text"}, "functions": null,
                                    "grammar": "", "json_schema": null})"));
  try {
    parse_request(Endpoint::Completions, R"({"model": "m", "prompt": "x", "best_of": 3})");
    ADD_FAILURE() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "unsupported_parameter");
    EXPECT_EQ(e.param, "best_of");
  }
}

TEST(OpenAIRequest, DefaultsFillWhatTheRequestLeavesOut) {
  OpenAIRequest r = parse_request(Endpoint::Completions, R"({"model": "m", "prompt": ["hi"], "temperature": null})");
  EXPECT_EQ(r.prompt, "hi");
  SamplingDefaults d;
  d.temperature = 0.3f;
  d.top_k = 5;
  d.max_tokens = 77;
  GenerationJob job = make_job(r, d, 1234);
  EXPECT_FALSE(job.is_chat);
  EXPECT_EQ(job.prompt, "hi");
  EXPECT_FLOAT_EQ(job.sampling.temperature, 0.3f);
  EXPECT_EQ(job.sampling.top_k, 5);
  EXPECT_EQ(job.max_tokens, 77);
  EXPECT_EQ(job.sampling.seed, 1234u);  // no seed anywhere: the random one
  d.seed = 5;
  EXPECT_EQ(make_job(r, d, 1234).sampling.seed, 5u);
}

TEST(OpenAIRequest, IntegerExtremes) {
  OpenAIRequest r = parse_request(Endpoint::Completions,
                                  R"({"model": "m", "prompt": "", "max_tokens": 64, "seed": 18446744073709551615})");
  EXPECT_EQ(r.max_tokens, 64);
  EXPECT_EQ(r.seed, UINT64_MAX);
  r = parse_request(Endpoint::Completions, R"({"model": "m", "prompt": "", "seed": -9223372036854775808})");
  EXPECT_EQ(r.seed, 1ull << 63);
}

// OpenAI rejects a decimal number where an integer is due, even an integral one like 4.0.
TEST(OpenAIRequest, IntegerFieldsRejectDecimalNumbers) {
  const char* chat = R"({"model": "m", "messages": [{"role": "user", "content": "x"}], )";
  for (const char* field : {"max_tokens", "max_completion_tokens", "n", "top_k", "seed"}) {
    for (const char* value : {"4.0", "1.0", "4.5", "1e2"}) {
      const std::string body = std::string(chat) + "\"" + field + "\": " + value + "}";
      try {
        parse_request(Endpoint::ChatCompletions, body);
        ADD_FAILURE() << "accepted: " << body;
      } catch (const ApiError& e) {
        EXPECT_EQ(e.status, 400) << body;
        EXPECT_EQ(e.param, field) << body;
        EXPECT_EQ(e.code, "invalid_type") << body;
        EXPECT_EQ(std::string(e.what()), std::string("Invalid type for '") + field +
                                             "': expected an integer, but got a decimal number instead.")
            << body;
      }
    }
  }
  for (const char* body : {R"({"model": "m", "prompt": "x", "max_tokens": 16.0})",
                           R"({"model": "m", "prompt": "x", "best_of": 1.0})"}) {
    try {
      parse_request(Endpoint::Completions, body);
      ADD_FAILURE() << "accepted: " << body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.code, "invalid_type") << body << " -> " << e.what();
    }
  }
  try {
    parse_request(Endpoint::ChatCompletions, std::string(chat) + R"("top_logprobs": 0.0})");
    ADD_FAILURE() << "accepted top_logprobs 0.0";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param, "top_logprobs") << e.what();
  }
  // Numbers that are numbers in OpenAI's API keep accepting integers and decimals alike.
  OpenAIRequest r = parse_request(Endpoint::ChatCompletions,
                                  std::string(chat) + R"("temperature": 1, "top_p": 1, "logit_bias": {"3": 2.5, "4": 1}})");
  EXPECT_FLOAT_EQ(*r.temperature, 1.0f);
  ASSERT_EQ(r.logit_bias.size(), 2u);
}

struct Bad {
  Endpoint endpoint;
  const char* body;
  const char* param;  // expected param ("" = null)
};

TEST(OpenAIRequest, InvalidRequestsNameTheField) {
  const Bad cases[] = {
      {Endpoint::ChatCompletions, "", ""},
      {Endpoint::ChatCompletions, "[]", "body"},
      {Endpoint::ChatCompletions, R"({"model": "", "messages": [{"role": "user", "content": "x"}]})", "model"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1e999})", ""},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": -1e999})", ""},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 99999999999999999999})", "max_tokens"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1.5})", "seed"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]})", "stop"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages[0].content[0].type"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user"}]})", "messages[0].content"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x", "name": 3}]})", "messages[0].name"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"-1": 1}})", "logit_bias"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": 1}})", "stream_options.include_usage"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "ignore_eos": "yes"})", "ignore_eos"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": 1})", "logprobs"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3})", "top_logprobs"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21})", "top_logprobs"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "logprobs": 21})", "logprobs"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "logprobs": true})", "logprobs"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "echo": "yes"})", "echo"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "echo": true, "suffix": "y"})", "echo"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "max_tokens": 0})", "max_tokens"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "suffix": 3})", "suffix"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "best_of": 2})", "best_of"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})", "response_format"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]})", "tools"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})", "tool_choice"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "functions": [{"name": "f"}]})", "functions"},
      {Endpoint::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "function_call": "auto"})", "function_call"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "grammar": "root ::= \"a\""})", "grammar"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "json_schema": {"type": "object"}})", "json_schema"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "response_format": {"type": "json_schema"}})", "response_format"},
      {Endpoint::Completions, R"({"model": "m"})", "prompt"},
      {Endpoint::Completions, R"({"model": "m", "prompt": ["a", "b"]})", "prompt"},
      {Endpoint::Completions, R"({"model": "m", "prompt": [1, 2, 3]})", "prompt"},
      {Endpoint::Completions, R"({"model": "m", "prompt": "x", "stop": ""})", "stop"},
  };
  for (const Bad& c : cases) {
    try {
      parse_request(c.endpoint, c.body);
      ADD_FAILURE() << "accepted: " << c.body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400) << c.body;
      EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.what();
      auto j = nlohmann::json::parse(error_body(e));
      EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    }
  }
}

TEST(OpenAIResponse, ShapesOfBodiesAndChunks) {
  ResponseMeta meta{"chatcmpl-1", 100, "m", Endpoint::ChatCompletions};
  Completion c;
  c.finish = FinishReason::Length;
  c.usage = {3, 2};
  auto j = nlohmann::json::parse(completion_body(meta, "hi", "because", c));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(j["choices"][0]["message"]["reasoning_content"], "because");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
  EXPECT_TRUE(j.contains("timings"));

  std::string chunk = sse_delta_chunk(meta, "a", "");
  ASSERT_EQ(chunk.substr(0, 6), "data: ");
  ASSERT_EQ(chunk.substr(chunk.size() - 2), "\n\n");
  auto d = nlohmann::json::parse(chunk.substr(6));
  EXPECT_EQ(d["object"], "chat.completion.chunk");
  EXPECT_EQ(d["choices"][0]["delta"]["content"], "a");
  EXPECT_TRUE(d["choices"][0]["finish_reason"].is_null());

  meta.endpoint = Endpoint::Completions;
  auto t = nlohmann::json::parse(completion_body(meta, "hi", "", c));
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["text"], "hi");
  EXPECT_EQ(make_response_id(Endpoint::Completions).substr(0, 5), "cmpl-");
}

}  // namespace
}  // namespace velocity::server
