// The built-in templates, written the way Hugging Face writes them (every line opens with "{%-"
// or "{{-", so the layout adds no text), each rendering llama.cpp's format of the same name; the
// expected prompts are in tests/tokenizer/builtin_templates_test.cpp.
#include "tokenizer/builtin_templates.h"

#include <vector>

#include "core/error.h"

namespace velocity::tokenizer {
namespace {

constexpr const char* kChatml = R"jinja({%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %})jinja";

// Qwen2.5's tokenizer_config.json: the same turns, and a default system turn when the
// conversation does not open with one.
constexpr const char* kQwen = R"jinja({%- if messages | length == 0 or messages[0]['role'] != 'system' %}
    {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %})jinja";

constexpr const char* kLlama3 = R"jinja({%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + (message['content'] | trim) + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %})jinja";

// One [INST] opens the prompt and another follows each assistant turn; a system message is
// written as a line of the turn it falls in. The prompt ends in " [/INST]", so the generation
// prompt adds nothing.
constexpr const char* kLlama2 = R"jinja({{- '[INST] ' }}
{%- set ns = namespace(in_turn=true) %}
{%- for message in messages %}
    {%- if not ns.in_turn %}
        {{- '[INST] ' }}
        {%- set ns.in_turn = true %}
    {%- endif %}
    {%- if message['role'] == 'system' %}
        {{- message['content'] + '\n' }}
    {%- elif message['role'] == 'user' %}
        {{- message['content'] + ' [/INST]' }}
    {%- else %}
        {{- message['content'] + eos_token }}
        {%- set ns.in_turn = false %}
    {%- endif %}
{%- endfor %})jinja";

// Mistral's v1, v3 and v3-tekken differ only in spaces around [INST] and in trimming the
// assistant's text; the system message goes inside the [INST] of its turn.
constexpr const char* kMistralV1 = R"jinja({%- set ns = namespace(in_turn=false) %}
{%- for message in messages %}
    {%- if not ns.in_turn %}
        {{- ' [INST] ' }}
        {%- set ns.in_turn = true %}
    {%- endif %}
    {%- if message['role'] == 'system' %}
        {{- message['content'] + '\n\n' }}
    {%- elif message['role'] == 'user' %}
        {{- message['content'] + ' [/INST]' }}
    {%- else %}
        {{- ' ' + message['content'] + eos_token }}
        {%- set ns.in_turn = false %}
    {%- endif %}
{%- endfor %})jinja";

constexpr const char* kMistralV3 = R"jinja({%- set ns = namespace(in_turn=false) %}
{%- for message in messages %}
    {%- if not ns.in_turn %}
        {{- '[INST] ' }}
        {%- set ns.in_turn = true %}
    {%- endif %}
    {%- if message['role'] == 'system' %}
        {{- message['content'] + '\n\n' }}
    {%- elif message['role'] == 'user' %}
        {{- message['content'] + '[/INST]' }}
    {%- else %}
        {{- ' ' + (message['content'] | trim) + eos_token }}
        {%- set ns.in_turn = false %}
    {%- endif %}
{%- endfor %})jinja";

constexpr const char* kMistralV3Tekken = R"jinja({%- set ns = namespace(in_turn=false) %}
{%- for message in messages %}
    {%- if not ns.in_turn %}
        {{- '[INST]' }}
        {%- set ns.in_turn = true %}
    {%- endif %}
    {%- if message['role'] == 'system' %}
        {{- message['content'] + '\n\n' }}
    {%- elif message['role'] == 'user' %}
        {{- message['content'] + '[/INST]' }}
    {%- else %}
        {{- message['content'] + eos_token }}
        {%- set ns.in_turn = false %}
    {%- endif %}
{%- endfor %})jinja";

constexpr const char* kMistralV7 = R"jinja({%- for message in messages %}
    {%- if message['role'] == 'system' %}
        {{- '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}
    {%- elif message['role'] == 'user' %}
        {{- '[INST] ' + message['content'] + '[/INST]' }}
    {%- else %}
        {{- ' ' + message['content'] + eos_token }}
    {%- endif %}
{%- endfor %})jinja";

constexpr const char* kDeepseek = R"jinja({%- for message in messages %}
    {%- if message['role'] == 'system' %}
        {{- message['content'] + '\n\n' }}
    {%- elif message['role'] == 'user' %}
        {{- '<｜User｜>' + message['content'] }}
    {%- elif message['role'] == 'assistant' %}
        {{- '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<｜Assistant｜>' }}
{%- endif %})jinja";

// Gemma has no system role: system text (trimmed, concatenated) opens the next turn that is not
// the model's.
constexpr const char* kGemma = R"jinja({%- set ns = namespace(system='') %}
{%- for message in messages %}
    {%- if message['role'] == 'system' %}
        {%- set ns.system = ns.system + (message['content'] | trim) %}
    {%- else %}
        {%- if message['role'] == 'assistant' %}
            {%- set role = 'model' %}
        {%- else %}
            {%- set role = message['role'] %}
        {%- endif %}
        {{- '<start_of_turn>' + role + '\n' }}
        {%- if ns.system and role != 'model' %}
            {{- ns.system + '\n\n' }}
            {%- set ns.system = '' %}
        {%- endif %}
        {{- (message['content'] | trim) + '<end_of_turn>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<start_of_turn>model\n' }}
{%- endif %})jinja";

constexpr const char* kPhi3 = R"jinja({%- for message in messages %}
    {{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|assistant|>\n' }}
{%- endif %})jinja";

struct Builtin {
  std::string name;
  std::string source;
};

const std::vector<Builtin>& builtins() {
  static const std::vector<Builtin> table = {
      {"chatml", kChatml},
      {"qwen", kQwen},
      {"llama3", kLlama3},
      {"llama2", kLlama2},
      {"mistral", kMistralV3},
      {"mistral-v1", kMistralV1},
      {"mistral-v3", kMistralV3},
      {"mistral-v3-tekken", kMistralV3Tekken},
      {"mistral-v7", kMistralV7},
      {"deepseek", kDeepseek},
      {"deepseek3", kDeepseek},
      {"gemma", kGemma},
      {"phi3", kPhi3},
  };
  return table;
}

}  // namespace

const std::string* builtin_template(std::string_view name) {
  for (const Builtin& b : builtins())
    if (b.name == name) return &b.source;
  return nullptr;
}

std::string builtin_template_names() {
  std::string names;
  for (const Builtin& b : builtins()) names += (names.empty() ? "" : ", ") + b.name;
  return names;
}

std::string resolve_chat_template(std::string_view value) {
  if (const std::string* source = builtin_template(value)) return *source;
  if (value.find("{{") != std::string_view::npos || value.find("{%") != std::string_view::npos)
    return std::string(value);
  constexpr size_t kShown = 60;  // of a long value, the start is enough to recognise it
  const std::string shown = value.size() > kShown ? std::string(value.substr(0, kShown)) + "..." : std::string(value);
  fail("'{}' is neither a built-in chat template ({}) nor Jinja source (it has no '{{{{' or '{{%')", shown,
       builtin_template_names());
}

}  // namespace velocity::tokenizer
