// Built-in chat templates by name, for a model whose GGUF carries no chat template or the wrong
// one: `chat_template = "chatml"` in a [[model]] table, `--chat-template llama3` on the command
// line. Each is a Jinja template that renders the same prompt as llama.cpp's built-in format of
// that name (llm_chat_apply_template), using only `messages`, `add_generation_prompt`,
// `bos_token` and `eos_token`, as Hugging Face templates do. Like llama.cpp's, none writes BOS:
// the tokenizer adds it when the vocabulary asks for it.
//
//   chatml             <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n
//   qwen               chatml; without a leading system message, Qwen2.5's default one
//   llama3             <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> (content trimmed)
//   llama2             [INST] system\nuser [/INST]assistant</s>[INST] ... (no <<SYS>>)
//   mistral-v1         " [INST] system\n\nuser [/INST] assistant</s>"
//   mistral-v3         "[INST] system\n\nuser[/INST] assistant</s>" (assistant trimmed); `mistral`
//   mistral-v3-tekken  "[INST]system\n\nuser[/INST]assistant</s>"
//   mistral-v7         "[SYSTEM_PROMPT] system[/SYSTEM_PROMPT][INST] user[/INST] assistant</s>"
//   deepseek           DeepSeek-V3/R1: system\n\n<｜User｜>user<｜Assistant｜>assistant<｜end▁of▁sentence｜>;
//                      llama.cpp calls it `deepseek3` (also accepted); its `deepseek` is the older
//                      deepseek-coder format, which is not built in here
//   gemma              <start_of_turn>user\n(system\n\n)content<end_of_turn>\n, assistant as "model"
//   phi3               <|role|>\ncontent<|end|>\n ... <|assistant|>\n
//
// The [INST] formats end assistant turns with eos_token ("</s>" in Llama 2 and Mistral
// vocabularies, where llama.cpp writes "</s>" itself).
#pragma once

#include <string>
#include <string_view>

namespace velocity::tokenizer {

// The Jinja source of the built-in template `name`; nullptr when there is none of that name.
const std::string* builtin_template(std::string_view name);

// Every built-in name, comma-separated: "chatml, qwen, llama3, ...".
std::string builtin_template_names();

// What a chat template setting means: a built-in name gives that template; a value holding "{{"
// or "{%" is itself Jinja source and is returned as it is. Anything else throws velocity::Error
// saying it is neither, with the list of names. Callers skip the empty value (the model's own).
std::string resolve_chat_template(std::string_view value);

}  // namespace velocity::tokenizer
