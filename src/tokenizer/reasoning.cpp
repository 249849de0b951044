#include "tokenizer/reasoning.h"

#include <algorithm>
#include <array>

namespace velocity::tok {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";

// Harmony control tokens as they appear in decoded text.
constexpr std::string_view kStart = "<|start|>";
constexpr std::string_view kChannel = "<|channel|>";
constexpr std::string_view kMessage = "<|message|>";
constexpr std::array<std::string_view, 3> kMessageEnds = {"<|end|>", "<|return|>", "<|call|>"};

// Length of the longest suffix of `text` that is a proper prefix of `tag` (text that may become
// the tag once more arrives).
size_t partial_suffix(std::string_view text, std::string_view tag) {
  const size_t max = std::min(text.size(), tag.size() - 1);
  for (size_t n = max; n > 0; --n)
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

struct Found {
  size_t pos = std::string_view::npos;
  std::string_view tag;
};

// Earliest occurrence of any of `tags` in `text`.
template <class Tags> Found find_first(std::string_view text, const Tags& tags) {
  Found best;
  for (std::string_view tag : tags) {
    const size_t pos = text.find(tag);
    if (pos < best.pos) best = {pos, tag};
  }
  return best;
}

template <class Tags> size_t partial_suffix_any(std::string_view text, const Tags& tags) {
  size_t n = 0;
  for (std::string_view tag : tags) n = std::max(n, partial_suffix(text, tag));
  return n;
}

}  // namespace

ReasoningFormat reasoning_format_of_template(std::string_view source) {
  if (source.find("<|channel|>") != std::string_view::npos) return ReasoningFormat::Harmony;
  if (source.find("<think>") != std::string_view::npos || source.find("</think>") != std::string_view::npos)
    return ReasoningFormat::Think;
  return ReasoningFormat::None;
}

ReasoningParser::ReasoningParser(ReasoningFormat format, bool starts_in_reasoning) : format_(format) {
  switch (format) {
    case ReasoningFormat::None: state_ = State::Content; break;
    case ReasoningFormat::Think:
      state_ = starts_in_reasoning ? State::Reasoning : State::Content;
      seen_think_ = starts_in_reasoning;
      break;
    case ReasoningFormat::Harmony:
      // The generation prompt ends with "<|start|>assistant": a header (channel) comes first.
      state_ = State::HarmonyHeader;
      break;
  }
}

void ReasoningParser::emit(ReasoningDelta& out, std::string_view text) const {
  if (state_ == State::Reasoning) out.reasoning += text;
  else out.content += text;
}

ReasoningDelta ReasoningParser::push(std::string_view text) {
  ReasoningDelta out;
  if (format_ == ReasoningFormat::None) {
    out.content.assign(text);
    return out;
  }
  pending_ += text;
  run(out, false);
  return out;
}

ReasoningDelta ReasoningParser::finish() {
  ReasoningDelta out;
  run(out, true);
  if (!pending_.empty()) emit(out, pending_);  // an unfinished tag is just text
  pending_.clear();
  return out;
}

void ReasoningParser::run(ReasoningDelta& out, bool at_end) {
  while (true) {
    std::string_view text = pending_;
    if (format_ == ReasoningFormat::Think) {
      // Only one think block: once it has closed, everything is content.
      const std::string_view tag =
          state_ == State::Reasoning ? kThinkClose : (seen_think_ ? std::string_view{} : kThinkOpen);
      if (tag.empty()) {
        emit(out, text);
        pending_.clear();
        return;
      }
      const size_t pos = text.find(tag);
      if (pos == std::string_view::npos) {
        const size_t keep = at_end ? 0 : partial_suffix(text, tag);
        emit(out, text.substr(0, text.size() - keep));
        pending_.erase(0, text.size() - keep);
        return;
      }
      emit(out, text.substr(0, pos));
      if (state_ == State::Reasoning) {
        state_ = State::Content;
      } else {
        state_ = State::Reasoning;
        seen_think_ = true;
      }
      pending_.erase(0, pos + tag.size());
      continue;
    }

    // Harmony.
    if (state_ == State::HarmonyHeader) {
      // Read the header up to <|message|>; its text is never emitted.
      const size_t pos = text.find(kMessage);
      if (pos == std::string_view::npos) {
        if (at_end) {  // generation stopped inside a header: nothing to show
          pending_.clear();
        }
        return;
      }
      header_.assign(text.substr(0, pos));
      // "<|channel|>analysis", possibly preceded by "<|start|>assistant" and followed by
      // " to=functions.x" and "<|constrain|>json".
      std::string_view channel;
      if (size_t c = header_.find(kChannel); c != std::string::npos) {
        channel = std::string_view(header_).substr(c + kChannel.size());
        channel = channel.substr(0, std::min(channel.find(' '), channel.find("<|")));
      }
      harmony_reasoning_ = channel == "analysis";
      state_ = harmony_reasoning_ ? State::Reasoning : State::Content;
      pending_.erase(0, pos + kMessage.size());
      continue;
    }
    // Inside a message body: up to an end token, or a <|start|>/<|channel|> that begins the next
    // message without one.
    const std::array<std::string_view, 5> stops = {kMessageEnds[0], kMessageEnds[1], kMessageEnds[2], kStart,
                                                   kChannel};
    const Found found = find_first(text, stops);
    if (found.pos == std::string_view::npos) {
      const size_t keep = at_end ? 0 : partial_suffix_any(text, stops);
      emit(out, text.substr(0, text.size() - keep));
      pending_.erase(0, text.size() - keep);
      return;
    }
    emit(out, text.substr(0, found.pos));
    // An end token is dropped; a start/channel token begins the next header.
    const bool is_end = std::find(kMessageEnds.begin(), kMessageEnds.end(), found.tag) != kMessageEnds.end();
    pending_.erase(0, found.pos + (is_end ? found.tag.size() : 0));
    state_ = State::HarmonyHeader;
  }
}

}  // namespace velocity::tok
