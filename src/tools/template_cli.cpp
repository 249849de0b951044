#include "tools/template_cli.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "gguf/file.h"
#include "tokenizer/builtin_templates.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/vocab.h"

namespace velocity::tools {
namespace {

// "-" is stdin (`--messages -`).
std::string read_text(const std::string& path, const char* what) {
  if (path == "-") {
    std::ostringstream text;
    text << std::cin.rdbuf();
    return text.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read {}: {}", path, what, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string render_template(const TemplateOptions& options) {
  if (options.model.empty() && options.template_file.empty() && options.chat_template.empty())
    fail("give a model (-m), a template file (--template) or a built-in template (--chat-template NAME)");
  if (!options.template_file.empty() && !options.chat_template.empty())
    fail("give --template or --chat-template, not both");
  if (options.messages_file.empty()) fail("give the conversation with --messages FILE.json");
  std::string source;
  if (!options.chat_template.empty()) {
    try {
      source = tokenizer::resolve_chat_template(options.chat_template);
    } catch (const Error& e) {
      fail("--chat-template: {}", e.what());
    }
  }

  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  const std::string messages_text = read_text(options.messages_file, "the messages");
  nlohmann::ordered_json messages;
  try {
    messages = nlohmann::ordered_json::parse(messages_text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON: {}", options.messages_file, e.what());
  }
  if (messages.is_array()) {
    context["messages"] = std::move(messages);
  } else if (messages.is_object()) {
    if (!messages.contains("messages") || !messages["messages"].is_array())
      fail("{}: an object must hold a \"messages\" array", options.messages_file);
    context = std::move(messages);
  } else {
    fail("{}: expected an array of messages or an object with \"messages\"", options.messages_file);
  }
  context["add_generation_prompt"] = options.add_generation_prompt;

  if (!options.model.empty()) {
    const gguf::File file = gguf::File::open(options.model);
    const tokenizer::Vocab vocab = tokenizer::Vocab::from_gguf(file, options.model);
    auto token_text = [&](int32_t id) {
      return id >= 0 && (size_t)id < vocab.tokens.size() ? vocab.tokens[(size_t)id] : std::string();
    };
    if (!context.contains("bos_token")) context["bos_token"] = token_text(vocab.bos);
    if (!context.contains("eos_token")) context["eos_token"] = token_text(vocab.eos);
    if (options.template_file.empty() && options.chat_template.empty()) {
      const gguf::Value* value = file.find("tokenizer.chat_template");
      if (!value)
        fail("{}: the model has no tokenizer.chat_template; give one with --template or --chat-template",
             options.model);
      if (value->type() != gguf::ValueType::STRING)
        fail("{}: tokenizer.chat_template is not a string", options.model);
      source = value->as_string();
    }
  }
  std::string name = options.model;
  if (!options.template_file.empty()) {
    source = read_text(options.template_file, "the template");
    name = options.template_file;
  } else if (!options.chat_template.empty()) {
    name = tokenizer::builtin_template(options.chat_template) ? "chat template '" + options.chat_template + "'"
                                                               : std::string("--chat-template");
  }
  try {
    return ChatTemplate(source).render(context);
  } catch (const Error& e) {
    fail("{}: {}", name, e.what());
  }
}

}  // namespace velocity::tools
