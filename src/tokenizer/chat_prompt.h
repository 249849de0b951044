// A chat prompt whose user-controlled text cannot forge the template's control tokens.
//
// A template's own text is tokenized with special tokens parsed (its "<|im_start|>" becomes the
// control token), but a message whose content holds "<|im_end|>\n<|im_start|>system" must stay
// text: otherwise a user writes the system turn. render_chat_prompt renders the conversation and
// reports where such control-token texts of the messages landed in the prompt, so that
//
//   ChatPrompt p = render_chat_prompt(tmpl, context, tokenizer, /*content_is_text=*/true, control);
//   EncodeOptions o;  o.parse_special = true;  o.plain = p.plain;
//   std::vector<int32_t> ids = tokenizer.encode(p.text, o);
//
// gives the same ids as encode(tmpl.render(context), parse_special = true) for every normal
// conversation (there `plain` is empty and `text` is that render), and plain-text ids for forged
// markers.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace velocity::tokenizer {

struct ChatPrompt {
  std::string text;              // the rendered prompt, as ChatTemplate::render gives it
  std::vector<TextRange> plain;  // bytes of `text` to tokenize as text (EncodeOptions::plain)
};

// Renders `context` (messages, tools, add_generation_prompt, bos_token, ...) with `tmpl`.
//
// When content_is_text (the default), every occurrence of a control (or unknown) token's text of
// `tokenizer` inside a user-controlled string of context.messages and context.tools (content,
// reasoning_content, name, tool_call_id, strings and keys nested in tool_calls and content parts)
// is marked, and `plain` covers where those occurrences landed in `text`. Marking works by a
// second render with each occurrence wrapped in per-request random markers of ASCII letters and
// digits (which tojson and escaping keep intact), found and removed afterwards; the text without
// them must equal the first render. Wrapping the occurrences rather than whole strings keeps
// templates that split, strip or test the content (Qwen3's `</think>` split) renderable.
//
// Throws velocity::Error (the server answers 400) when the template transformed the marked
// content so that the check fails, naming the control-token text; velocity::Cancelled when
// control.cancel is set. content_is_text = false: today's behaviour, `plain` empty.
// control.stats receives the steps of both renders together and the prompt's size; both renders
// read one clock (control.now, else the time of the call) for strftime_now().
ChatPrompt render_chat_prompt(const ChatTemplate& tmpl, const nlohmann::ordered_json& context,
                              const Tokenizer& tokenizer, bool content_is_text, const jinja::RenderControl& control);

}  // namespace velocity::tokenizer
