// OpenAI request bodies -> plain structs, with every field validated.
//
//   POST /v1/chat/completions   {"model", "messages": [...], sampling fields, "stream", ...}
//   POST /v1/completions        {"model", "prompt": "..." | ["..."], sampling fields, "stream", ...}
//
// What is accepted (anything else -> ApiError 400 naming the field in `param`):
//   model                 non-empty string
//   messages              non-empty array of {role, content}; role system|developer|user|assistant|
//                         tool; content a string, an array of {"type": "text", "text"} parts, or
//                         null for an assistant message (e.g. one that carried tool_calls)
//   prompt                a string or an array of exactly one string (token arrays: unsupported)
//   max_tokens            integer in [1, kMaxTokens]; max_completion_tokens wins when both are given
//   temperature [0, 2]    top_p (0, 1]    top_k >= 0    min_p [0, 1]    repeat_penalty (0, 100]
//   presence_penalty, frequency_penalty [-2, 2]    seed any 64-bit integer
//   stop                  string or array of <= 4 non-empty strings of <= 256 bytes
//   logit_bias            {"<token id>": number in [-100, 100]}, <= 1024 entries
//   stream                bool;  stream_options.include_usage bool;  n must be 1
//   ignore_eos            bool (llama.cpp's extension: end-of-generation tokens are never sampled)
//   logprobs              chat: bool, with top_logprobs in [0, 20] (top_logprobs needs logprobs
//                         true); completions: integer in [0, 20] (alternatives per token)
//   suffix                completions: fill in the middle (the service checks the FIM markers)
//   echo                  completions: bool, the prompt comes first in the text (and its tokens
//                         in logprobs); max_tokens may then be 0; not with suffix
// Not supported yet, and a 400 (code unsupported_parameter) when asked for, since a response
// without them would be silently wrong: completions best_of != 1; tools,
// tool_choice other than "none", response_format other than text. user is accepted and ignored.
// null counts as absent for every optional field; unknown fields are ignored (clients send
// extras). Numbers must be finite (JSON has no NaN; 1e999 parses to infinity and is rejected);
// integer fields (max_tokens, max_completion_tokens, n, top_k, seed, top_logprobs, best_of) take
// JSON integers only: a decimal number, even an integral one like 64.0, is a 400 as in OpenAI's
// API. logit_bias values are numbers (fractional biases are meaningful). Strings must be valid
// UTF-8 (the JSON parser rejects invalid bytes and unpaired surrogate escapes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"
#include "server/service.h"

namespace velocity::server {

// Infill: llama.cpp's POST /infill (input_prefix, input_suffix, prompt, input_extra, n_predict),
// answered in llama.cpp's native shape (content, stop, tokens_predicted, ...; sse.h).
enum class Endpoint { ChatCompletions, Completions, Infill };

constexpr int64_t kMaxTokens = 1 << 24;
constexpr size_t kMaxStops = 4;
constexpr size_t kMaxLogitBias = 1024;

struct OpenAIRequest {
  Endpoint endpoint = Endpoint::ChatCompletions;
  std::string model;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions
  std::string suffix;                 // completions: fill in the middle between prompt and suffix

  std::optional<int64_t> max_tokens;
  std::optional<float> temperature, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
  std::optional<int32_t> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<runtime::LogitBias> logit_bias;
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  bool ignore_eos = false;
  int32_t logprobs = -1;              // >= 0: logprobs with this many top alternatives per token
  bool echo = false;                  // completions: the prompt's text (and logprobs) first
  // Infill: prompt = input_prefix, suffix = input_suffix, these the rest (GenerationJob::infill)
  std::string infill_cursor;
  std::vector<tokenizer::Tokenizer::InfillChunk> infill_extra;
};

// Parses and validates a request body. Throws ApiError (400) for anything invalid, including
// JSON syntax errors and a body that is not an object.
OpenAIRequest parse_request(Endpoint endpoint, std::string_view body);

// The job for a request: sampling fields merged over the model's defaults, max_tokens, stop,
// input (the "developer" role is passed as "system", which every chat template knows). No
// callbacks are set. `random_seed` is used when neither the request nor the defaults fix a seed.
GenerationJob make_job(const OpenAIRequest& request, const SamplingDefaults& defaults, uint64_t random_seed);

}  // namespace velocity::server
