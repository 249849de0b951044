// `velocity template`: renders a model's chat template (GGUF `tokenizer.chat_template`, a Jinja
// file, or a built-in template by name) over a conversation, exactly as the model's Hugging Face
// tokenizer would.
#pragma once

#include <string>

namespace velocity::tools {

struct TemplateOptions {
  std::string model;            // GGUF whose tokenizer.chat_template and BOS/EOS are used
  std::string template_file;    // a .jinja file; overrides the model's template
  std::string chat_template;    // or a built-in template's name ("chatml"; tokenizer/builtin_templates.h)
                                // or inline Jinja; overrides the model's template
  std::string messages_file;    // JSON: an array of messages, or an object of template variables
                                // (messages, tools, and any extra kwargs such as enable_thinking)
  bool add_generation_prompt = true;
};

// Throws velocity::Error naming the file for unreadable or invalid input.
std::string render_template(const TemplateOptions& options);

}  // namespace velocity::tools
