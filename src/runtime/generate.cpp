#include "runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "runtime/stop_strings.h"
#include "tokenizer/stream_decode.h"

namespace velocity::runtime {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Texts of tokens that end a turn in the model families we load (llama.cpp's list in
// llama-vocab.cpp, for vocabularies whose eot_token_id is missing or that have several).
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>",     "<|eom_id|>",  "<|im_end|>",  "<|endoftext|>", "<|end|>",     "<end_of_turn>",
    "<|return|>",     "<|call|>",    "<EOT>",       "_<EOT>",        "<|end▁of▁sentence|>",
    "<｜end▁of▁sentence｜>", "</s>",
};

}  // namespace

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::EndOfGeneration:
    case FinishReason::StopString: return "stop";
    case FinishReason::MaxTokens:
    case FinishReason::ContextFull: return "length";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "unknown";
}

std::string_view finish_reason_detail(FinishReason reason) {
  switch (reason) {
    case FinishReason::EndOfGeneration: return "eog";
    case FinishReason::StopString: return "stop string";
    case FinishReason::MaxTokens: return "n_predict";
    case FinishReason::ContextFull: return "context full";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "unknown";
}

std::vector<uint8_t> end_of_generation_tokens(const tokenizer::Vocab& vocab) {
  std::vector<uint8_t> eog(vocab.size(), 0);
  for (const int32_t id : {vocab.eos, vocab.eot, vocab.eom})
    if (id >= 0 && (size_t)id < eog.size()) eog[(size_t)id] = 1;
  for (size_t i = 0; i < vocab.size(); ++i) {
    const tokenizer::TokenType type = i < vocab.types.size() ? vocab.types[i] : tokenizer::TokenType::Normal;
    if (type != tokenizer::TokenType::Control && type != tokenizer::TokenType::UserDefined) continue;
    for (const std::string_view text : kEndOfGenerationTexts)
      if (vocab.tokens[i] == text) eog[i] = 1;
  }
  return eog;
}

engine::StepOutput prefill(model::Model& model, engine::Batch& batch, std::span<const int32_t> tokens,
                           int32_t seq_id, int32_t start_pos, engine::Output last) {
  VELOCITY_CHECK(!tokens.empty(), "prefill of no tokens");
  const int64_t chunk = std::max<int64_t>(1, model.max_batch());
  engine::StepOutput out;
  for (size_t begin = 0; begin < tokens.size(); begin += (size_t)chunk) {
    const size_t end = std::min(tokens.size(), begin + (size_t)chunk);
    batch.clear();
    for (size_t i = begin; i < end; ++i)
      batch.add(tokens[i], start_pos + (int32_t)i, seq_id, i + 1 == tokens.size() ? last : engine::Output::None);
    out = model.step(batch);
  }
  return out;
}

int32_t sample_row(Sampler& sampler, const engine::StepOutput& out, int64_t row, engine::Output kind) {
  VELOCITY_CHECK(row >= 0 && row < out.n_rows, "output row {} of {}", row, out.n_rows);
  if (kind != engine::Output::Token) return sampler.sample(out.row(row));
  const int32_t token = out.tokens[row];
  if (token < 0 || token >= sampler.n_vocab())
    fail("sampling: the logits hold NaN or +inf, or every token is -inf (the model computed no argmax)");
  return token;
}

Generator::Generator(model::Model& model, const tokenizer::Tokenizer& tokenizer)
    : model_(model), tokenizer_(tokenizer), eog_(end_of_generation_tokens(tokenizer.vocab())) {
  batch_.tokens.reserve((size_t)std::max<int64_t>(1, model.max_batch()));
  batch_.positions.reserve(batch_.tokens.capacity());
  batch_.seq_ids.reserve(batch_.tokens.capacity());
  batch_.outputs.reserve(batch_.tokens.capacity());
}

GenerationResult Generator::generate(std::span<const int32_t> prompt, Sampler& sampler,
                                     const GenerateOptions& options, const TextCallback& on_text) {
  const int64_t n_ctx = model_.n_ctx();
  if (prompt.empty()) fail("the prompt is empty (no tokens)");
  if ((int64_t)prompt.size() > n_ctx)
    fail("the prompt has {} tokens, more than the context length {} (raise it with --ctx)", prompt.size(), n_ctx);
  if (options.seq_id < 0 || options.seq_id >= model_.n_slots())
    fail("sequence id {} is outside the model's {} slots", options.seq_id, model_.n_slots());
  const int64_t n_vocab = model_.config().n_vocab;
  if (sampler.n_vocab() != n_vocab)
    fail("the sampler is for {} tokens but the model has {}", sampler.n_vocab(), n_vocab);

  StopStrings stops(options.stop);
  // The generated tokens continue the prompt: keep a leading SentencePiece space.
  tokenizer::StreamDecoder decoder(tokenizer_, options.skip_special, /*at_text_start=*/false);

  GenerationResult result;
  result.n_prompt_tokens = (int64_t)prompt.size();
  const int64_t room = n_ctx - (int64_t)prompt.size();
  result.tokens.reserve((size_t)(options.n_predict >= 0 ? std::min(options.n_predict, room) : room));

  auto emit = [&](std::string_view text) {
    if (text.empty()) return;
    result.text.append(text);
    if (on_text) on_text(text);
  };
  // Sends decoded text through the stop strings; true when one matched.
  auto push_text = [&](std::string_view text) {
    if (text.empty() || stops.stopped()) return stops.stopped();
    StopStrings::Pushed pushed = stops.push(text);
    emit(pushed.text);
    if (pushed.stopped) result.stop_index = pushed.stop_index;
    return pushed.stopped;
  };

  const Clock::time_point prompt_start = Clock::now();
  const engine::Output output = output_for(sampler);
  engine::StepOutput out = prefill(model_, batch_, prompt, options.seq_id, 0, output);
  result.prompt_ms = ms_since(prompt_start);

  const Clock::time_point decode_start = Clock::now();
  int64_t pos = (int64_t)prompt.size();  // where the next sampled token goes
  for (;;) {
    if (options.cancel && options.cancel->load(std::memory_order_relaxed)) {
      result.finish = FinishReason::Cancelled;
      break;
    }
    if (options.n_predict >= 0 && result.n_generated >= options.n_predict) {
      result.finish = FinishReason::MaxTokens;
      break;
    }
    if (pos >= n_ctx) {
      result.finish = FinishReason::ContextFull;
      break;
    }
    const int32_t token = sample_row(sampler, out, 0, output);
    sampler.accept(token);
    result.tokens.push_back(token);
    ++result.n_generated;
    if (!options.ignore_eos && is_end_of_generation(token)) {
      result.finish = FinishReason::EndOfGeneration;
      break;
    }
    if (push_text(decoder.push(token))) {
      result.finish = FinishReason::StopString;
      break;
    }
    // No forward when its logits would not be used.
    if (options.n_predict >= 0 && result.n_generated >= options.n_predict) {
      result.finish = FinishReason::MaxTokens;
      break;
    }
    if (pos + 1 >= n_ctx) {  // the token just sampled took the last position
      result.finish = FinishReason::ContextFull;
      break;
    }
    batch_.clear();
    batch_.add(token, (int32_t)pos, options.seq_id, output);
    batch_.n_decode = 1;
    out = model_.step(batch_);
    ++result.n_decode_steps;
    ++pos;
  }
  if (result.finish != FinishReason::StopString) {
    // Text still held: an incomplete character (U+FFFD), then a possible stop-string prefix.
    if (push_text(decoder.flush())) {
      result.finish = FinishReason::StopString;
    } else {
      emit(stops.flush());
    }
  }
  result.decode_ms = ms_since(decode_start);
  return result;
}

BatchedResult generate_batched(model::Model& model, std::span<const std::vector<int32_t>> prompts,
                               std::span<Sampler> samplers, int64_t n_predict) {
  const size_t n_seq = prompts.size();
  if (n_seq == 0) fail("batched generation of no sequences");
  if (samplers.size() != n_seq) fail("{} samplers for {} sequences", samplers.size(), n_seq);
  if ((int64_t)n_seq > model.n_slots()) fail("{} sequences need {} slots; the model has {}", n_seq, n_seq, model.n_slots());
  if ((int64_t)n_seq > model.max_batch())
    fail("{} sequences do not fit one step of {} tokens", n_seq, model.max_batch());
  const int64_t n_ctx = model.n_ctx();
  const int64_t n_vocab = model.config().n_vocab;
  for (size_t s = 0; s < n_seq; ++s) {
    if (prompts[s].empty()) fail("prompt {} is empty", s);
    if ((int64_t)prompts[s].size() > n_ctx)
      fail("prompt {} has {} tokens, more than the context length {}", s, prompts[s].size(), n_ctx);
    if (samplers[s].n_vocab() != n_vocab) fail("sampler {} is for {} tokens but the model has {}", s, samplers[s].n_vocab(), n_vocab);
  }

  BatchedResult result;
  result.tokens.resize(n_seq);
  for (auto& t : result.tokens) t.reserve((size_t)std::max<int64_t>(0, n_predict));
  std::vector<engine::Output> kinds(n_seq);
  for (size_t s = 0; s < n_seq; ++s) kinds[s] = output_for(samplers[s]);
  std::vector<float> last_logits(n_seq * (size_t)n_vocab);  // [n_seq, n_vocab] of the prompts' last tokens
  std::vector<int32_t> last_token(n_seq, -1);               // or their argmax (Output::Token)
  std::vector<int32_t> logit_owner;                          // sequence of each output row of a step
  logit_owner.reserve(n_seq);
  engine::Batch batch;
  const int64_t max_batch = model.max_batch();

  // Prefill, packed: sequences one after another, split wherever a step is full.
  const Clock::time_point prompt_start = Clock::now();
  auto flush = [&] {
    if (batch.size() == 0) return;
    const engine::StepOutput out = model.step(batch);
    for (size_t r = 0; r < logit_owner.size(); ++r) {
      const size_t s = (size_t)logit_owner[r];
      if (kinds[s] == engine::Output::Token)
        last_token[s] = out.tokens[r];
      else
        std::memcpy(&last_logits[s * (size_t)n_vocab], out.row((int64_t)r).data(), (size_t)n_vocab * sizeof(float));
    }
    batch.clear();
    logit_owner.clear();
  };
  for (size_t s = 0; s < n_seq; ++s) {
    for (size_t i = 0; i < prompts[s].size(); ++i) {
      const bool last = i + 1 == prompts[s].size();
      batch.add(prompts[s][i], (int32_t)i, (int32_t)s, last ? kinds[s] : engine::Output::None);
      if (last) logit_owner.push_back((int32_t)s);
      if (batch.size() == max_batch) flush();
    }
  }
  flush();
  result.prompt_ms = ms_since(prompt_start);

  // Decode: one token per live sequence per step.
  const Clock::time_point decode_start = Clock::now();
  std::vector<int64_t> pos(n_seq);
  std::vector<int32_t> row(n_seq, -1);  // logits row of each sequence in the last step; -1: prefill's
  for (size_t s = 0; s < n_seq; ++s) pos[s] = (int64_t)prompts[s].size();
  engine::StepOutput step_out;
  for (;;) {
    batch.clear();
    for (size_t s = 0; s < n_seq; ++s) {
      if ((int64_t)result.tokens[s].size() >= n_predict || pos[s] >= n_ctx) continue;
      int32_t token = -1;
      if (row[s] >= 0) {
        token = sample_row(samplers[s], step_out, row[s], kinds[s]);
      } else if (kinds[s] == engine::Output::Token) {
        engine::StepOutput prompt_out;
        prompt_out.n_rows = 1;
        prompt_out.tokens = &last_token[s];
        token = sample_row(samplers[s], prompt_out, 0, kinds[s]);
      } else {
        token = samplers[s].sample(std::span<const float>(&last_logits[s * (size_t)n_vocab], (size_t)n_vocab));
      }
      samplers[s].accept(token);
      result.tokens[s].push_back(token);
      ++result.n_generated;
      if ((int64_t)result.tokens[s].size() < n_predict && pos[s] + 1 < n_ctx) {
        row[s] = (int32_t)batch.size();
        batch.add(token, (int32_t)pos[s], (int32_t)s, kinds[s]);
      }
      ++pos[s];
    }
    if (batch.size() == 0) break;
    batch.n_decode = batch.size();
    step_out = model.step(batch);
    ++result.n_decode_steps;
  }
  result.decode_ms = ms_since(decode_start);
  return result;
}

}  // namespace velocity::runtime
