// The built-in chat templates render llama.cpp's built-in formats of the same names, over the
// conversation llama.cpp's own test uses; unknown names are errors; Jinja source passes through.
#include "tokenizer/builtin_templates.h"

#include <gtest/gtest.h>

#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "jinja_reference.h"
#include "tokenizer/chat_template.h"

namespace velocity::tokenizer {
namespace {

using nlohmann::ordered_json;

ordered_json msg(const char* role, const char* content) { return {{"role", role}, {"content", content}}; }

// llama.cpp tests/test-chat-template.cpp, main_automated_tests(): `conversation`.
ordered_json llama_cpp_conversation() {
  return ordered_json::array({msg("system", "You are a helpful assistant"), msg("user", "Hello"),
                              msg("assistant", "Hi there"), msg("user", "Who are you"),
                              msg("assistant", "   I am an assistant   "), msg("user", "Another question")});
}

std::string render(std::string_view name, const ordered_json& messages, bool add_generation_prompt = true) {
  const std::string* source = builtin_template(name);
  if (!source) throw Error("no built-in template " + std::string(name));
  ordered_json context = {{"messages", messages},
                          {"add_generation_prompt", add_generation_prompt},
                          {"bos_token", "<s>"},
                          {"eos_token", "</s>"}};
  return ChatTemplate(*source).render(context);
}

struct Expected {
  const char* name;
  const char* prompt;
};

// The expected prompts are llama.cpp's, for the template its test detects as that format and
// renders with llm_chat_apply_template (tests/test-chat-template.cpp, `expected_output` of the
// named case; ggml-org/llama.cpp, 2025). deepseek is not among that file's cases: its prompt is
// what llm_chat_apply_template writes for LLM_CHAT_TEMPLATE_DEEPSEEK_3 (src/llama-chat.cpp),
// checked against llama-server's own logged example in DeepseekMatchesLlamaServersExample.
const Expected kExpected[] = {
    // "teknium/OpenHermes-2.5-Mistral-7B"
    {"chatml",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
     "<|im_start|>assistant\n"},
    // The conversation opens with a system message, so qwen is chatml here (the same case).
    {"qwen",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
     "<|im_start|>assistant\n"},
    // "Llama-3"
    {"llama3",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
     "\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    // "mistralai/Mistral-7B-Instruct-v0.2 (NOTE: Old pre-v1 without a system prompt)"
    {"llama2",
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   "
     "</s>[INST] Another question [/INST]"},
    // "Mistral-Large-Instruct-2407 (mistralai 'v3' template; modified to have system prompt at start)"
    {"mistral",
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>"
     "[INST] Another question[/INST]"},
    {"mistral-v3",
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>"
     "[INST] Another question[/INST]"},
    // "mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)"
    {"mistral-v1",
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an "
     "assistant   </s> [INST] Another question [/INST]"},
    // "Mistral-Nemo-Instruct-2407 (mistralai 'v3-tekken' template; modified to have system prompt at start)"
    {"mistral-v3-tekken",
     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   "
     "</s>[INST]Another question[/INST]"},
    // "mistralai/Mistral-Large-Instruct-2411 (mistralai 'v7' template)"
    {"mistral-v7",
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] Who are you"
     "[/INST]    I am an assistant   </s>[INST] Another question[/INST]"},
    // LLM_CHAT_TEMPLATE_DEEPSEEK_3 ("deepseek3" in llama.cpp)
    {"deepseek",
     "You are a helpful assistant\n\n<｜User｜>Hello<｜Assistant｜>Hi there<｜end▁of▁sentence｜><｜User｜>Who are you"
     "<｜Assistant｜>   I am an assistant   <｜end▁of▁sentence｜><｜User｜>Another question<｜Assistant｜>"},
    {"deepseek3",
     "You are a helpful assistant\n\n<｜User｜>Hello<｜Assistant｜>Hi there<｜end▁of▁sentence｜><｜User｜>Who are you"
     "<｜Assistant｜>   I am an assistant   <｜end▁of▁sentence｜><｜User｜>Another question<｜Assistant｜>"},
    // "google/gemma-7b-it"
    {"gemma",
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there"
     "<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant"
     "<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"},
    // "Phi-3-small"
    {"phi3",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
     "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n"
     "<|assistant|>\n"},
};

TEST(BuiltinTemplates, RenderLlamaCppsFormats) {
  for (const Expected& e : kExpected) EXPECT_EQ(render(e.name, llama_cpp_conversation()), e.prompt) << e.name;
}

TEST(BuiltinTemplates, EveryNameIsTestedAndListed) {
  std::string listed;
  for (const Expected& e : kExpected) listed += (listed.empty() ? "" : ", ") + std::string(e.name);
  const std::string names = builtin_template_names();
  for (const char* required : {"chatml", "llama3", "llama2", "mistral", "qwen", "deepseek", "gemma", "phi3"})
    EXPECT_NE(names.find(required), std::string::npos) << required << " not in " << names;
  // Each listed name is a template with a case above (same count; every case's name resolves).
  size_t n_names = 1;
  for (char c : names) n_names += c == ',';
  EXPECT_EQ(n_names, std::size(kExpected)) << names << " vs the cases " << listed;
  EXPECT_EQ(builtin_template("ChatML"), nullptr);
  EXPECT_EQ(builtin_template(""), nullptr);
}

// Qwen2.5's template writes its default system turn when the conversation has none.
TEST(BuiltinTemplates, QwenAddsItsDefaultSystemTurn) {
  EXPECT_EQ(render("qwen", ordered_json::array({msg("user", "Hello")})),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render("chatml", ordered_json::array({msg("user", "Hello")}), /*add_generation_prompt=*/false),
            "<|im_start|>user\nHello<|im_end|>\n");
}

// llama-server logs an example of the template it uses ("chat_example" / "chat template
// example"): with the built-in deepseek3 format it is this string (llama.cpp server logs quoted
// in ik_llama.cpp and llama.cpp issues).
TEST(BuiltinTemplates, DeepseekMatchesLlamaServersExample) {
  const ordered_json example = ordered_json::array({msg("system", "You are a helpful assistant"), msg("user", "Hello"),
                                                    msg("assistant", "Hi there"), msg("user", "How are you?")});
  EXPECT_EQ(render("deepseek", example),
            "You are a helpful assistant\n\n<｜User｜>Hello<｜Assistant｜>Hi there<｜end▁of▁sentence｜>"
            "<｜User｜>How are you?<｜Assistant｜>");
}

TEST(BuiltinTemplates, ResolveNamesJinjaAndErrors) {
  EXPECT_EQ(resolve_chat_template("chatml"), *builtin_template("chatml"));
  const std::string jinja = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
  EXPECT_EQ(resolve_chat_template(jinja), jinja);
  EXPECT_EQ(resolve_chat_template("{{ bos_token }}"), "{{ bos_token }}");
  EXPECT_EQ(ChatTemplate(resolve_chat_template(jinja)).render({{"messages", llama_cpp_conversation()}}),
            "You are a helpful assistantHelloHi thereWho are you   I am an assistant   Another question");
  for (const char* bad : {"chatml2", "ChatML", "llama-3", "hello world", "{ bos_token }"}) {
    try {
      resolve_chat_template(bad);
      ADD_FAILURE() << bad << ": no error";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(std::string("'") + bad + "'"), std::string::npos) << what;
      EXPECT_NE(what.find(builtin_template_names()), std::string::npos) << what;
      EXPECT_NE(what.find("nor Jinja"), std::string::npos) << what;
    }
  }
  // A long value is shown by its start.
  try {
    resolve_chat_template(std::string(500, 'x'));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 400u) << e.what();
  }
}

// Every built-in renders the same under Python jinja2 as under velocity's interpreter, over
// conversations beyond llama.cpp's: no system turn, a trailing assistant turn, no generation
// prompt, two system turns, none at all.
TEST(BuiltinTemplates, MatchPythonJinja2) {
  if (auto why = velocity::test::reference_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const std::vector<ordered_json> conversations = {
      llama_cpp_conversation(),
      ordered_json::array({msg("user", "  Hi  ")}),
      ordered_json::array({msg("user", "Hi"), msg("assistant", "Hello!")}),
      ordered_json::array({msg("system", " One. "), msg("system", "Two."), msg("user", "Hi")}),
      ordered_json::array(),
  };
  std::vector<velocity::test::ReferenceCase> cases;
  for (const Expected& e : kExpected)
    for (size_t i = 0; i < conversations.size(); ++i)
      for (bool add_generation_prompt : {true, false})
        cases.push_back({std::string(e.name) + " #" + std::to_string(i) + (add_generation_prompt ? "" : " no prompt"),
                         *builtin_template(e.name),
                         {{"messages", conversations[i]},
                          {"add_generation_prompt", add_generation_prompt},
                          {"bos_token", "<s>"},
                          {"eos_token", "</s>"}}});
  const auto refs = velocity::test::render_reference(cases);
  ASSERT_EQ(refs.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(refs[i].ok) << cases[i].label << ": " << refs[i].error;
    EXPECT_EQ(velocity::test::compare_with_reference(cases[i], refs[i]), "") << cases[i].label;
  }
}

}  // namespace
}  // namespace velocity::tokenizer
