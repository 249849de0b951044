// Splits a model's reasoning from its answer, incrementally, on the decoded text stream.
//
// Formats:
//  - Think: DeepSeek-R1 / Qwen3 style "<think>reasoning</think>answer". With
//    starts_in_reasoning (the chat template's generation prompt already opened "<think>"), the
//    output begins inside the reasoning and the first "</think>" ends it.
//  - Harmony: gpt-oss channels. The assistant's output is a sequence of messages
//    "<|channel|>NAME[ to=RECIPIENT][<|constrain|>TYPE]<|message|>TEXT<|end|>" (or ending in
//    <|return|> / <|call|>), each later one introduced by "<|start|>assistant". Channel
//    "analysis" is reasoning; "final" and "commentary" are content. Header text is dropped.
//
// A tag may arrive split across pushes ("</thi" + "nk>"): text that could still be the start of
// a tag is held back until it is decided. The concatenation of all deltas never depends on how
// the stream was chunked.
#pragma once

#include <string>
#include <string_view>

namespace velocity::tok {

enum class ReasoningFormat { None, Think, Harmony };

// The reasoning format a chat template's source implies: Harmony for gpt-oss's channels, Think
// for templates that open or strip "<think>" blocks (DeepSeek-R1's first template only splits
// content at "</think>"; its later ones and Qwen3's write "<think>"), None otherwise.
ReasoningFormat reasoning_format_of_template(std::string_view source);

struct ReasoningDelta {
  std::string reasoning;
  std::string content;
  bool empty() const { return reasoning.empty() && content.empty(); }
};

class ReasoningParser {
 public:
  explicit ReasoningParser(ReasoningFormat format, bool starts_in_reasoning = false);

  // Feeds the next piece of decoded text; returns what can be emitted now.
  ReasoningDelta push(std::string_view text);
  // End of generation: emits what was held back (an unfinished tag is emitted as text).
  ReasoningDelta finish();

  bool in_reasoning() const { return state_ == State::Reasoning; }

 private:
  enum class State { Content, Reasoning, HarmonyHeader };
  void emit(ReasoningDelta& out, std::string_view text) const;
  void run(ReasoningDelta& out, bool at_end);

  ReasoningFormat format_;
  State state_;
  bool seen_think_ = false;     // Think: reasoning already happened once (only one block)
  std::string pending_;         // undecided text
  std::string header_;          // Harmony: header text of the message being read
  bool harmony_reasoning_ = false;  // Harmony: current message is on the analysis channel
};

}  // namespace velocity::tok
