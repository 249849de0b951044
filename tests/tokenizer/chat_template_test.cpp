// Every fixture chat template × a set of conversations, rendered by velocity and by Python
// jinja2 the way transformers does; outputs must match byte for byte (or both must raise).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "jinja_reference.h"
#include "tokenizer/chat_template.h"

using nlohmann::ordered_json;
using velocity::test::ReferenceCase;

namespace {

ordered_json msg(const char* role, const std::string& content) { return {{"role", role}, {"content", content}}; }

ordered_json weather_tools() {
  return ordered_json::parse(R"([
    {"type": "function", "function": {
      "name": "get_weather",
      "description": "Get the current weather for a city.",
      "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit", "default": "celsius"},
        "days": {"type": "integer", "description": "Forecast days"},
        "hourly": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
        "note": {"type": "string", "nullable": true, "description": "Optional note"},
        "location": {"type": "object", "description": "Coordinates", "properties": {
          "lat": {"type": "number"}, "lon": {"type": "number"}}, "required": ["lat", "lon"]}
      }, "required": ["city"]}}},
    {"type": "function", "function": {
      "name": "search",
      "description": "Search the web. Returns snippets — 中文 ok.",
      "parameters": {"type": "object", "properties": {
        "query": {"type": "string"},
        "filters": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}}}}
      }, "required": ["query"]}}}
  ])");
}

ordered_json tool_call(const std::string& id, const std::string& name, ordered_json arguments) {
  return {{"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", std::move(arguments)}}}};
}

struct Conversation {
  std::string name;
  ordered_json messages;
  ordered_json tools = nullptr;
  ordered_json extra = ordered_json::object();
};

std::vector<Conversation> conversations() {
  std::vector<Conversation> c;
  c.push_back({"system_user", {msg("system", "You are a helpful assistant."), msg("user", "Hello!")}});
  c.push_back({"user_only", {msg("user", "What is 2+2?")}});
  c.push_back({"multi_turn",
               {msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello! How can I help?"),
                msg("user", "Tell me a joke."), msg("assistant", "Why did the chicken cross the road?"),
                msg("user", "Why?")}});
  c.push_back({"prefill", {msg("user", "Write a haiku."), msg("assistant", "Autumn moonlight—")}});
  c.push_back({"non_ascii",
               {msg("system", "你是一个乐于助人的助手。"), msg("user", "こんにちは 👋🏽 Ünïcödé — “quotes” ‘x’"),
                msg("assistant", "你好！😀"), msg("user", "Ça va? 한국어\ttab")}});
  c.push_back({"jinja_looking_content",
               {msg("user", "Render {{ x }} and {% if y %}z{% endif %} {# c #} literally"),
                msg("assistant", "It prints {{ x }}."), msg("user", "'quote' \"dq\" \\ backslash\nnewline")}});
  c.push_back({"whitespace_content", {msg("system", "  padded system  \n"), msg("user", "\n\n  spaced user \n")}});
  c.push_back({"tools_user", {msg("system", "You can call tools."), msg("user", "Weather in Paris?")}, weather_tools()});
  c.push_back({"tools_no_system", {msg("user", "Weather in 東京?")}, weather_tools()});
  {
    Conversation t{"tool_call_roundtrip", {}, weather_tools()};
    t.messages = ordered_json::array();
    t.messages.push_back(msg("system", "Use tools when needed."));
    t.messages.push_back(msg("user", "What's the weather in Paris?"));
    ordered_json a = {{"role", "assistant"}, {"content", ""}};
    a["tool_calls"] = ordered_json::array({tool_call("call12345", "get_weather", {{"city", "Paris"}, {"unit", "celsius"}})});
    t.messages.push_back(a);
    t.messages.push_back({{"role", "tool"}, {"tool_call_id", "call12345"}, {"name", "get_weather"},
                          {"content", "{\"temperature\": 21, \"sky\": \"clear\"}"}});
    t.messages.push_back(msg("assistant", "It is 21°C and clear in Paris."));
    t.messages.push_back(msg("user", "Thanks!"));
    c.push_back(t);
  }
  {
    Conversation t{"parallel_tool_calls", {}, weather_tools()};
    t.messages = ordered_json::array({msg("user", "Weather in Paris and Rome, and search news.")});
    ordered_json a = {{"role", "assistant"}, {"content", nullptr}};
    a["tool_calls"] = ordered_json::array(
        {tool_call("abcDEF123", "get_weather", {{"city", "Paris"}, {"days", 3}, {"tags", {"a", "b"}}}),
         tool_call("xyzXYZ789", "search", {{"query", "news \"today\""}, {"filters", {{{"key", "k"}}}}})});
    t.messages.push_back(a);
    t.messages.push_back({{"role", "tool"}, {"tool_call_id", "abcDEF123"}, {"content", "sunny"}});
    t.messages.push_back({{"role", "tool"}, {"tool_call_id", "xyzXYZ789"}, {"content", "no news"}});
    c.push_back(t);
  }
  {
    Conversation t{"tool_call_string_args", {}, weather_tools()};
    t.messages = ordered_json::array({msg("user", "Weather?")});
    ordered_json a = {{"role", "assistant"}, {"content", "Let me check."}};
    a["tool_calls"] = ordered_json::array({tool_call("idA123456", "get_weather", "{\"city\": \"Oslo\"}")});
    t.messages.push_back(a);
    t.messages.push_back({{"role", "tool"}, {"tool_call_id", "idA123456"}, {"content", "cold"}});
    t.messages.push_back(msg("assistant", "It's cold."));
    c.push_back(t);
  }
  {
    Conversation t{"reasoning_content"};
    t.messages = ordered_json::array({msg("user", "Solve 3*7.")});
    t.messages.push_back({{"role", "assistant"}, {"content", "21"}, {"reasoning_content", "3 times 7 is 21."}});
    t.messages.push_back(msg("user", "And 4*5?"));
    c.push_back(t);
  }
  c.push_back({"think_in_content",
               {msg("user", "Hi"), msg("assistant", "<think>\nThe user greets.\n</think>\n\nHello there!"),
                msg("user", "Again")}});
  c.push_back({"think_last_assistant", {msg("user", "Hi"), msg("assistant", "<think>\nhmm\n</think>\n\nHey")}});
  c.push_back({"enable_thinking_false", {msg("user", "Quick answer please")}, nullptr, {{"enable_thinking", false}}});
  c.push_back({"enable_thinking_true", {msg("user", "Think hard")}, nullptr, {{"enable_thinking", true}, {"thinking", true}}});
  {
    Conversation t{"gpt_oss_thinking", {}, weather_tools(), {{"reasoning_effort", "high"}, {"builtin_tools", {"browser", "python"}}}};
    t.messages = ordered_json::array({msg("developer", "Answer in French."), msg("user", "Weather?")});
    ordered_json a = {{"role", "assistant"}, {"thinking", "Need the weather tool."}};
    a["tool_calls"] = ordered_json::array({tool_call("call00001", "get_weather", {{"city", "Lyon"}})});
    t.messages.push_back(a);
    t.messages.push_back({{"role", "tool"}, {"content", "{\"t\": 18}"}});
    t.messages.push_back({{"role", "assistant"}, {"content", "Il fait 18°C."}, {"thinking", "Report it."}});
    c.push_back(t);
  }
  c.push_back({"model_identity", {msg("user", "Who are you?")}, nullptr, {{"model_identity", "You are Velocity."}}});
  c.push_back({"roles_not_alternating", {msg("user", "a"), msg("user", "b")}});
  c.push_back({"empty_messages", ordered_json::array()});
  c.push_back({"llama_builtin_tools", {msg("user", "Search it")}, nullptr, {{"builtin_tools", {"brave_search", "wolfram_alpha"}}}});
  c.push_back({"custom_date", {msg("system", "Sys"), msg("user", "date?")}, nullptr, {{"date_string", "01 Jan 2025"}}});
  return c;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::filesystem::path fixtures_dir() {
  return std::filesystem::path(VELOCITY_SOURCE_DIR) / ".." / "shared" / "fixtures" / "templates";
}

}  // namespace

TEST(ChatTemplate, FixtureTemplatesMatchPythonJinja2) {
  if (auto why = velocity::test::reference_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto dir = fixtures_dir();
  if (!std::filesystem::is_directory(dir)) GTEST_SKIP() << "fixture templates absent: " << dir;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".jinja") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty());

  std::vector<ReferenceCase> cases;
  std::vector<std::string> template_of;
  for (const auto& file : files) {
    std::string source = read_file(file);
    for (const auto& conv : conversations()) {
      for (bool add_generation_prompt : {false, true}) {
        ordered_json ctx;
        ctx["messages"] = conv.messages;
        ctx["tools"] = conv.tools;
        ctx["documents"] = nullptr;
        ctx["add_generation_prompt"] = add_generation_prompt;
        ctx["bos_token"] = "<s>";
        ctx["eos_token"] = "</s>";
        for (const auto& [k, v] : conv.extra.items()) ctx[k] = v;
        cases.push_back({file.filename().string() + " × " + conv.name + (add_generation_prompt ? " +gen" : ""),
                         source, ctx});
        template_of.push_back(file.filename().string());
      }
    }
  }
  auto refs = velocity::test::render_reference(cases);
  std::map<std::string, std::pair<int, int>> tally;  // template → (agreed, run)
  std::map<std::string, int> python_raised;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string diff = velocity::test::compare_with_reference(cases[i], refs[i]);
    auto& t = tally[template_of[i]];
    ++t.second;
    if (diff.empty()) ++t.first;
    if (!refs[i].ok) ++python_raised[template_of[i]];
    EXPECT_TRUE(diff.empty()) << diff;
  }
  for (const auto& [name, t] : tally)
    std::printf("  %-50s %3d/%3d agree (%d where both raise)\n", name.c_str(), t.first, t.second, python_raised[name]);
}

TEST(ChatTemplate, ErrorsNameLineAndColumn) {
  try {
    velocity::ChatTemplate t("line one\n{% for x in y %}\n  {{ x }}\n{% endif %}");
    FAIL() << "expected a syntax error";
  } catch (const velocity::Error& e) {
    EXPECT_NE(std::string(e.what()).find("template:4:"), std::string::npos) << e.what();
  }
  try {
    velocity::ChatTemplate t("ok\n  {{ raise_exception('boom here') }}");
    t.render(ordered_json::object());
    FAIL() << "expected raise_exception to throw";
  } catch (const velocity::Error& e) {
    EXPECT_NE(std::string(e.what()).find("template:2:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("boom here"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, FixedTimeForStrftimeNow) {
  velocity::jinja::RenderOptions options;
  options.fixed_time = velocity::test::kFixedTime;
  velocity::ChatTemplate t("{{ strftime_now('%Y-%m-%d %d %b %Y') }}", options);
  EXPECT_EQ(t.render(ordered_json::object()), "2023-11-14 14 Nov 2023");
}
