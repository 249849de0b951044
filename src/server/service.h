// ModelService — what the HTTP server asks of one served model. The server knows no engine: it
// validates a request, turns it into a GenerationJob and submits it to the service of the model
// the request names; the service (the runtime's scheduler over a loaded model, or FakeService in
// tests) applies the chat template, tokenizes, queues, generates and reports back through the
// job's callbacks.
//
// Threads. submit(), state(), stats() and the other queries may be called from any I/O thread,
// concurrently, and return at once: submit() only checks what needs no work (the model's state,
// the queue limits) and hands the job to the service. Everything that costs time or depends on
// hostile input (the chat template, which comes from a downloaded GGUF, and tokenisation) runs on
// the service's own thread, never on an I/O thread, and is abandoned when the job is cancelled.
// The callbacks are invoked from the service's own thread(s); the server only copies what it
// needs and posts it to the connection's strand, so a callback never blocks, but it must not be
// invoked while the service holds a lock that submit() or cancel() also take. A callback may run
// before submit() has returned.
//
// Callback order for one job, each from one thread at a time (never concurrently):
//   on_accepted           at most once: the prompt is rendered, tokenised, valid and queued for
//                         generation; comes before any other callback but a rejecting on_done
//   on_prompt_processed   at most once, when the prefill is done (before any on_delta)
//   on_logprobs, on_delta zero or more times, in order (on_logprobs only for logprobs requests)
//   on_done               exactly once, always: after normal completion, after cancel(), after
//                         an engine error, and when the request is rejected before it was
//                         accepted (Completion::rejected: a 400 for a prompt too long for the
//                         context or a template that fails, a 429 when the generation queue is
//                         full). Nothing is invoked after it. The callbacks (and what they
//                         captured) are destroyed soon after on_done.
// No callback is invoked when submit() throws.
//
// Cancellation. JobHandle::cancel() may be called from any thread, any number of times, also
// after on_done. A job being prepared (template, tokeniser) stops within milliseconds; a queued
// job is dropped at once; a running one stops at the next token. Either way on_done follows
// promptly (milliseconds; the server waits for it at shutdown) with FinishReason::Cancelled. A
// client disconnect cancels at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"
#include "server/api_error.h"
#include "tokenizer/tokenizer.h"
#include "server/config.h"

namespace velocity::server {

// One chat message as the client sent it, text only (content parts joined with "\n").
struct ChatMessage {
  std::string role;                      // system, developer, user, assistant, tool
  std::string content;                   // "" for an assistant message with null content
  std::string name;                      // optional participant name ("" = none)
  std::string tool_call_id;              // tool messages: the call answered ("" = none)
  std::string reasoning_content;         // assistant messages of earlier turns, if sent back
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// llama.cpp's "timings" object, in milliseconds.
struct Timings {
  int64_t prompt_n = 0;           // prompt tokens actually prefilled (after prefix reuse)
  double prompt_ms = 0;
  int64_t predicted_n = 0;        // generated tokens
  double predicted_ms = 0;
  double prompt_per_second() const { return prompt_ms > 0 ? 1e3 * (double)prompt_n / prompt_ms : 0; }
  double predicted_per_second() const { return predicted_ms > 0 ? 1e3 * (double)predicted_n / predicted_ms : 0; }
};

enum class FinishReason {
  Stop,       // end-of-generation token or a stop string
  Length,     // max_tokens, or the context is full
  Cancelled,  // JobHandle::cancel() (client gone, shutdown)
  Error,      // the engine failed; Completion::error says why
};
// "stop", "length", "cancelled", "error".
std::string_view finish_reason_name(FinishReason reason);

// The answer of a text utility job (GenerationJob::utility).
struct UtilityResult {
  std::vector<int32_t> tokens;      // Tokenize
  std::vector<std::string> pieces;  // Tokenize: each token's bytes
  std::string text;                 // Detokenize: the text; ApplyTemplate: the rendered prompt
};

// One generated token's log probability and its step's most likely tokens (OpenAI's logprobs),
// of the raw logits (runtime/logprobs.h).
struct TokenLogprob {
  std::string token;  // the token's bytes (may be part of a UTF-8 character)
  float logprob = 0;  // NaN: none (an echoed prompt's first token)
  bool control = false;  // a control token: its piece is not in the text
  std::vector<std::pair<std::string, float>> top;  // most likely first
  size_t text_bytes() const { return control ? 0 : token.size(); }  // what it adds to the text
};

struct Completion {
  FinishReason finish = FinishReason::Stop;
  UtilityResult utility;  // utility jobs only
  Usage usage;
  Timings timings;
  std::string error;  // FinishReason::Error only: a message for the client (no internals needed)
  // Set when the job was refused before it was accepted (no on_accepted came): the answer to
  // the client is this error instead of a completion; `finish` is then Error.
  std::optional<ApiError> rejected;
};

struct GenerationJob {
  std::string id;                        // request id ("chatcmpl-..."), for logs
  // A text utility instead of a generation (/tokenize, /detokenize, /apply-template): prepared on
  // the service's thread like a prompt (the template and the tokeniser see hostile input) and
  // answered by on_done with Completion::utility (or a rejection); never queued, no other
  // callback. Tokenize reads `prompt`, Detokenize `tokens`, ApplyTemplate `messages` (rendered
  // with add_generation_prompt).
  enum class Utility { None, Tokenize, Detokenize, ApplyTemplate };
  Utility utility = Utility::None;
  bool add_special = false;              // Tokenize: the special tokens the model adds (BOS)
  bool parse_special = true;             // Tokenize: control-token text becomes control tokens
  std::vector<int32_t> tokens;           // Detokenize
  // Exactly one of the two inputs: chat messages (is_chat; the service renders the model's chat
  // template with add_generation_prompt and tokenizes) or a raw prompt (tokenized as is, with
  // BOS when the model wants one).
  bool is_chat = true;
  std::vector<ChatMessage> messages;
  std::string prompt;
  // Non-empty (raw prompts only): fill in the middle. The prompt is the text before the gap,
  // this the text after it; the service builds the model's FIM prompt (prefix marker, prompt,
  // suffix marker, suffix, middle marker) or refuses the request when the vocabulary has no
  // FIM markers.
  std::string suffix;
  // llama.cpp's /infill (raw prompts only): prompt is input_prefix, suffix input_suffix (either
  // may be empty), and these the text at the cursor and the extra files
  // (Tokenizer::encode_infill); the vocabulary must have FIM markers.
  struct Infill {
    std::string cursor;
    std::vector<tokenizer::Tokenizer::InfillChunk> extra;
  };
  std::optional<Infill> infill;

  runtime::SamplingParams sampling;      // already merged with the model's defaults; valid ranges
                                         // checked, except logit_bias token ids against n_vocab
  int64_t max_tokens = -1;               // >= 1, or -1 = until the context is full
  std::vector<std::string> stop;         // <= 4 non-empty stop strings (runtime::StopStrings)
  bool ignore_eos = false;               // never sample end-of-generation tokens (runtime::Request)

  // >= 0: each generated token's logprob and this many of the most likely tokens of its step
  // (<= 20) come through on_logprobs. End-of-generation tokens have no entry; the tokens of a
  // stop string do (their entries come last, with no delta after them).
  int32_t logprobs = -1;
  // Raw prompts only: the output starts with the prompt's text (a delta once the prompt is
  // processed), with logprobs >= 0 preceded by its tokens' entries (the first one has none: NaN).
  // max_tokens may then be 0: the prompt scored, nothing generated.
  bool echo = false;

  std::function<void()> on_accepted;                                    // optional
  std::function<void(int64_t n_prompt_tokens)> on_prompt_processed;     // optional
  // Text since the last delta: answer text and reasoning text (the model's <think> part, split
  // off by tokenizer/reasoning.h); either may be empty, never both. Whole UTF-8 characters only.
  std::function<void(std::string_view text, std::string_view reasoning)> on_delta;
  // With logprobs >= 0: the entries of the tokens whose text the next on_delta carries, called
  // just before it (a token's text may arrive with a later token's: a character split over two
  // tokens, a control token with no text), and once more before on_done for tokens whose text
  // never came.
  std::function<void(std::vector<TokenLogprob> entries)> on_logprobs;
  std::function<void(const Completion& completion)> on_done;           // required
};

class JobHandle {
 public:
  virtual ~JobHandle() = default;
  // Stops the job (see the header comment); idempotent, any thread.
  virtual void cancel() = 0;
};

struct SlotState {                  // one slot, for /slots
  bool busy = false;                // a request holds it
  int64_t n_cached = 0;             // tokens in its KV cache
  int64_t n_prompt = 0;             // the current (or last) request's prompt tokens
  int64_t n_decoded = 0;            // tokens it has generated
};

struct ServiceStats {
  std::vector<SlotState> slots;     // [n_slots] (empty while loading)
  int64_t queue_depth = 0;          // jobs waiting for a slot
  int64_t busy_slots = 0;           // slots generating or prefilling
  int64_t n_slots = 0;
  double kv_cache_used = 0;         // fraction of the KV cache holding live tokens, [0, 1]
};

class ModelService {
 public:
  enum class State { Loading, Ready, Draining, Failed };

  virtual ~ModelService() = default;

  // The model name clients use (ModelEntry::name). Constant.
  virtual const std::string& name() const = 0;
  // Current state; `message` receives a reason for people (load progress, the load error).
  virtual State state(std::string* message = nullptr) const = 0;
  // Context length per sequence in tokens (0 while unknown, i.e. loading).
  virtual int64_t n_ctx() const = 0;
  // Sampling defaults from the config; request fields override them.
  virtual const SamplingDefaults& sampling_defaults() const = 0;

  // Queues a job; returns at once. Throws ApiError only for what needs no work:
  //   429 the model's queue is full (ApiError::queue_full)
  //   503 the model is not Ready (ApiError::unavailable)
  // What depends on the prompt comes later as on_done with Completion::rejected:
  //   400 prompt longer than the context ("the prompt has 9000 tokens but the context holds
  //       8192"; param "messages" or "prompt", code "context_length_exceeded"), a chat template
  //       that fails to render, a logit_bias token id >= n_vocab (param "logit_bias")
  //   429 the generation queue filled up meanwhile
  // On success the callbacks will be invoked as described above; the handle may be dropped
  // without cancelling (the job then runs to completion).
  virtual std::shared_ptr<JobHandle> submit(GenerationJob job) = 0;

  // For /metrics; cheap (a few atomics or one short lock).
  virtual ServiceStats stats() const = 0;

  // For /props: the model file and the chat template's source ("" while loading or unknown).
  virtual std::string model_path() const { return {}; }
  virtual std::string chat_template_source() const { return {}; }
};

std::string_view state_name(ModelService::State state);  // "loading", "ready", "draining", "failed"

}  // namespace velocity::server
