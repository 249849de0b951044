// The generation loop over one model::Model, used by `velocity run`, `velocity bench` and (later)
// `velocity serve`.
//
//   Generator gen(*model, tokenizer);
//   Sampler sampler({.temperature = 0}, model->config().n_vocab);
//   GenerationResult r = gen.generate(prompt_ids, sampler, {.n_predict = 64},
//                                     [](std::string_view text) { std::cout << text; });
//
// A generation is: prefill the prompt in chunks of model.max_batch() tokens (logits only for the
// prompt's last token), then one decode step per token: sample from the last logits, stream the
// token's text, feed the token back at the next position. It stops at the first of
//   - an end-of-generation token (EOS, EOT, EOM and the control tokens models use as such, see
//     end_of_generation_tokens()); the token is returned in `tokens` but its text is not emitted;
//   - a stop string (runtime/stop_strings.h): the text up to it is emitted, the stop string is not;
//   - n_predict generated tokens;
//   - a full context: prompt + generated tokens == model.n_ctx() (reported as a finish reason,
//     never an exception);
//   - the cancel flag.
// Text is streamed through the UTF-8-safe detokenizer (tokenizer/stream_decode.h), so a
// callback never receives part of a character.
//
// KV cache: a generation writes positions [0, prompt + generated) of its sequence slot; what an
// earlier generation left there is overwritten (nothing needs clearing: attention only reads
// positions up to the current one). The Batch is reused across steps, so a step allocates
// nothing of its own; the text of a token (detokenizer, stop strings) is a short std::string.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/batch.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace velocity::runtime {

enum class FinishReason {
  EndOfGeneration,  // an end-of-generation token
  StopString,       // one of the stop strings
  MaxTokens,        // n_predict tokens
  ContextFull,      // the sequence reached the context length
  Cancelled,        // the cancel flag was set
};

// OpenAI's name: "stop" (end of generation, stop string), "length" (max tokens, context full),
// "cancelled".
std::string_view finish_reason_name(FinishReason reason);
// Which condition it was, for people: "eog", "stop string", "n_predict", "context full", "cancelled".
std::string_view finish_reason_detail(FinishReason reason);

struct GenerateOptions {
  int64_t n_predict = -1;             // most tokens to generate; < 0: until another condition
  std::vector<std::string> stop;      // stop strings (at most StopStrings::kMaxStops)
  bool ignore_eos = false;            // end-of-generation tokens do not stop (they are emitted)
  bool skip_special = false;          // control tokens produce no text
  int32_t seq_id = 0;                 // the KV slot, in [0, model.n_slots())
  const std::atomic<bool>* cancel = nullptr;  // checked before each token; may be null
};

struct GenerationResult {
  std::vector<int32_t> tokens;        // generated ids (the end-of-generation token included)
  std::string text;                   // everything passed to the callback, concatenated
  int64_t n_prompt_tokens = 0;
  double prompt_ms = 0;               // prefill: from the first forward to the prompt's logits
  int64_t n_generated = 0;            // == tokens.size()
  double decode_ms = 0;               // after the prefill: sampling, detokenizing, decode steps
  int64_t n_decode_steps = 0;         // forward() calls after the prefill (n_generated - 1 at most)
  FinishReason finish = FinishReason::MaxTokens;
  int32_t stop_index = -1;            // the stop string that matched (FinishReason::StopString)

  double prompt_tokens_per_second() const { return prompt_ms > 0 ? 1e3 * (double)n_prompt_tokens / prompt_ms : 0; }
  double decode_tokens_per_second() const { return decode_ms > 0 ? 1e3 * (double)n_generated / decode_ms : 0; }
};

// Called with each piece of text as soon as it is complete and cannot be part of a stop string.
using TextCallback = std::function<void(std::string_view text)>;

// [n_vocab of the tokenizer] 1 for the ids that end a generation: the vocabulary's EOS, EOT and
// EOM ids, and control / user-defined tokens whose text is one that models use as end of turn
// (<|eot_id|>, <|im_end|>, <|endoftext|>, <|end|>, <end_of_turn>, <|return|>, ... as llama.cpp).
std::vector<uint8_t> end_of_generation_tokens(const tokenizer::Vocab& vocab);

// Prefills `tokens` into sequence `seq_id` at positions [start_pos, start_pos + n), in chunks of
// model.max_batch() tokens; the last token's output is `last` (none, its logits or its argmax).
// Returns the last step's outputs (valid until the next step). `batch` is scratch (reused).
engine::StepOutput prefill(model::Model& model, engine::Batch& batch, std::span<const int32_t> tokens,
                           int32_t seq_id, int32_t start_pos, engine::Output last = engine::Output::Logits);

// What a sequence sampled by `sampler` asks of a step: its argmax token when that is all the
// sampler would compute (Sampler::is_argmax), its logits otherwise.
inline engine::Output output_for(const Sampler& sampler) {
  return sampler.is_argmax() ? engine::Output::Token : engine::Output::Logits;
}
// The token of output row `row` of a step: the argmax the model computed (Output::Token rows),
// or the sampler's pick from the row's logits. Throws velocity::Error as Sampler::sample does
// (a NaN or +inf logit, every token -inf).
int32_t sample_row(Sampler& sampler, const engine::StepOutput& out, int64_t row, engine::Output kind);

class Generator {
 public:
  // Both must outlive the Generator.
  Generator(model::Model& model, const tokenizer::Tokenizer& tokenizer);

  // Runs one generation of `prompt` (token ids, BOS included if wanted) in options.seq_id.
  // Throws velocity::Error for an empty prompt, a prompt longer than the context, a bad seq id
  // or bad stop strings; errors of the model and the sampler pass through.
  GenerationResult generate(std::span<const int32_t> prompt, Sampler& sampler, const GenerateOptions& options,
                            const TextCallback& on_text = {});

  const std::vector<uint8_t>& end_of_generation() const { return eog_; }
  bool is_end_of_generation(int32_t id) const { return id >= 0 && (size_t)id < eog_.size() && eog_[(size_t)id]; }

 private:
  model::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  std::vector<uint8_t> eog_;
  engine::Batch batch_;
};

// --- N independent sequences decoded together (bench's batched mode, tests) ------------------

struct BatchedResult {
  std::vector<std::vector<int32_t>> tokens;  // [n_seq] generated ids of each sequence
  double prompt_ms = 0;                      // prefill of all prompts
  double decode_ms = 0;                      // every step after the prefill, sampling included
  int64_t n_decode_steps = 0;                // forward() calls after the prefill
  int64_t n_generated = 0;                   // over all sequences
};

// Sequence i lives in slot i (n_seq <= model.n_slots(), n_seq <= model.max_batch()). The prompts
// are prefilled packed together (several sequences per forward when they fit), then every step is
// one forward carrying one token of each sequence; samplers[i] picks sequence i's tokens. Each
// sequence generates n_predict tokens, fewer only when its context fills (end-of-generation
// tokens do not stop it: this is for measuring and for comparing with generate(), ignore_eos).
BatchedResult generate_batched(model::Model& model, std::span<const std::vector<int32_t>> prompts,
                               std::span<Sampler> samplers, int64_t n_predict);

}  // namespace velocity::runtime
