// Response bodies in OpenAI's shapes: the non-streaming JSON object and, for "stream": true,
// the Server-Sent Events stream:
//
//   data: {"object":"chat.completion.chunk", ..., "choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}
//   data: {... "delta":{"content":"Hel"} ...}                 (reasoning: "delta":{"reasoning_content":"..."})
//   : keep-alive                                                (a comment while the prefill runs)
//   data: {... "delta":{},"finish_reason":"stop"}], "timings":{...}}
//   data: {... "choices":[],"usage":{...}}                      (only with stream_options.include_usage)
//   data: [DONE]
//
// With logprobs, a chunk's choice carries the entries of the tokens its text completes: chat
//   "logprobs":{"content":[{"token","logprob","bytes":[...],
//                           "top_logprobs":[{"token","logprob","bytes"}]}],"refusal":null}
// completions (the legacy shape)
//   "logprobs":{"tokens":[...],"token_logprobs":[...],"top_logprobs":[{"<token>":lp,...}],"text_offset":[...]}
// /infill answers in llama.cpp's native shape: {"index", "content", "stop": true, "model",
// "tokens_predicted", "tokens_evaluated", "stop_type" ("eos" | "limit"), "truncated", "timings"};
// streaming, data: {"index", "content", "stop": false} per delta, that object with empty content
// last, and no [DONE].
// Each event ends with a blank line. /v1/completions chunks are "text_completion" objects with
// choices[{index, text, finish_reason}] and no role chunk. An engine error ends the stream with
//   data: {"error":{"message","type":"server_error","param":null,"code":null}}   and no [DONE].
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server/openai.h"
#include "server/service.h"

namespace velocity::server {

inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
inline constexpr std::string_view kSseKeepAlive = ": keep-alive\n\n";

struct ResponseMeta {
  std::string id;        // "chatcmpl-<hex>" or "cmpl-<hex>"
  int64_t created = 0;   // unix seconds
  std::string model;
  Endpoint endpoint = Endpoint::ChatCompletions;
};

// "data: <json>\n\n".
std::string sse_event(std::string_view json);

// The logprobs of a response or chunk: entries of its tokens; text_offset is where the first one
// starts in the completion's text (bytes), for /v1/completions' text_offset.
struct LogprobsView {
  const std::vector<TokenLogprob>* entries = nullptr;  // null: the request did not ask ("logprobs": null)
  size_t text_offset = 0;
};

// The whole non-streaming response.
std::string completion_body(const ResponseMeta& meta, std::string_view text, std::string_view reasoning,
                            const Completion& completion, LogprobsView logprobs = {});

// Stream events (already framed as "data: ...\n\n").
std::string sse_role_chunk(const ResponseMeta& meta);  // chat only
std::string sse_delta_chunk(const ResponseMeta& meta, std::string_view text, std::string_view reasoning,
                            LogprobsView logprobs = {});
std::string sse_finish_chunk(const ResponseMeta& meta, const Completion& completion);
std::string sse_usage_chunk(const ResponseMeta& meta, const Completion& completion);
std::string sse_error_event(const ApiError& error);

// A fresh id with the endpoint's prefix and 24 random hex digits.
std::string make_response_id(Endpoint endpoint);

}  // namespace velocity::server
