// Chat templates as Hugging Face renders them: the Jinja source a model ships in GGUF
// `tokenizer.chat_template`, rendered with jinja2's ImmutableSandboxedEnvironment(trim_blocks,
// lstrip_blocks, loopcontrols), transformers' tojson / raise_exception / strftime_now.
//
//   velocity::ChatTemplate t(source);              // parses; throws velocity::Error
//   std::string prompt = t.render(context);        // context: messages, tools,
//                                                  // add_generation_prompt, bos_token, ...
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/jinja_render.h"

namespace velocity {

namespace jinja {
struct Template;
}

class ChatTemplate {
 public:
  // Parses `source`; syntax errors throw velocity::Error("template:L:C: ...").
  explicit ChatTemplate(std::string_view source, jinja::RenderOptions options = {});
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders with every key of `context` (a JSON object) as a template variable. Errors
  // (raise_exception, undefined use, limits) throw velocity::Error; a set control.cancel throws
  // velocity::Cancelled; control.stats receives the steps and bytes used (also on failure).
  std::string render(const nlohmann::ordered_json& context) const;
  std::string render(const nlohmann::ordered_json& context, const jinja::RenderControl& control) const;

  const jinja::RenderOptions& options() const { return options_; }

 private:
  std::unique_ptr<jinja::Template> template_;
  jinja::RenderOptions options_;
};

namespace jinja {
// JSON → template value (objects keep their key order).
Value from_json(const nlohmann::ordered_json& json);
}  // namespace jinja

}  // namespace velocity
