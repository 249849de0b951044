// Shared by the chat template tests: the fixture templates (../shared/fixtures/templates) and a
// long realistic conversation to render them with.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace velocity::test {

inline std::filesystem::path fixture_templates_dir() {
  return std::filesystem::path(VELOCITY_SOURCE_DIR) / ".." / "shared" / "fixtures" / "templates";
}

// The *.jinja files, sorted; empty when the fixtures are absent.
inline std::vector<std::filesystem::path> fixture_templates() {
  std::vector<std::filesystem::path> files;
  if (!std::filesystem::is_directory(fixture_templates_dir())) return files;
  for (const auto& e : std::filesystem::directory_iterator(fixture_templates_dir()))
    if (e.path().extension() == ".jinja") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

inline std::string read_text_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline nlohmann::ordered_json weather_and_search_tools() {
  return nlohmann::ordered_json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city.",
      "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
        "days": {"type": "integer", "description": "Forecast days"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "search", "description": "Search the web for a query and return snippets.",
      "parameters": {"type": "object", "properties": {"query": {"type": "string"},
        "limit": {"type": "integer"}}, "required": ["query"]}}}])");
}

// A context of `n_messages` messages: a system prompt, then rounds of a user question (~400
// bytes), an assistant tool call, its result and an assistant answer, ending on a user turn;
// tools given, add_generation_prompt set. Tool call ids are 9 characters (Mistral's rule).
inline nlohmann::ordered_json long_conversation(size_t n_messages = 64) {
  using nlohmann::ordered_json;
  const std::string para =
      "Could you look at this for me? I have been planning a trip and want to know what to pack, "
      "which neighbourhoods are worth a visit, and whether the museums are open on Mondays. ";
  ordered_json messages = ordered_json::array();
  messages.push_back({{"role", "system"},
                      {"content", "You are a helpful travel assistant. Answer briefly, cite sources, and use the tools "
                                  "when the user asks about weather or current events."}});
  for (int round = 0; messages.size() + 5 <= n_messages; ++round) {
    const std::string id = "call" + std::to_string(10000 + round);
    messages.push_back({{"role", "user"}, {"content", para + para + "Round " + std::to_string(round) + "."}});
    ordered_json call = {{"id", id},
                         {"type", "function"},
                         {"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}, {"days", round % 5 + 1}}}}}};
    messages.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", ordered_json::array({call})}});
    messages.push_back({{"role", "tool"},
                        {"tool_call_id", id},
                        {"name", "get_weather"},
                        {"content", "{\"temperature\": 18, \"sky\": \"partly cloudy\", \"wind_kmh\": 12}"}});
    messages.push_back({{"role", "assistant"}, {"content", "It will be 18 degrees and partly cloudy in Paris. " + para}});
  }
  while (messages.size() < n_messages)
    messages.push_back({{"role", messages.back()["role"] == "user" ? "assistant" : "user"}, {"content", para}});
  if (messages.back()["role"] != "user") messages.back() = {{"role", "user"}, {"content", para}};
  ordered_json context;
  context["messages"] = std::move(messages);
  context["tools"] = weather_and_search_tools();
  context["add_generation_prompt"] = true;
  context["bos_token"] = "<s>";
  context["eos_token"] = "</s>";
  return context;
}

}  // namespace velocity::test
