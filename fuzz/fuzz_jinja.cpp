// libFuzzer target: parse the input as a chat template and render it with a small fixed
// conversation, under the default budgets (RenderOptions). Any velocity::Error is an accepted
// outcome; crashes, hangs, leaks, other exception types and sanitizer reports are findings.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json context = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi {{ x }} 你好"},
      {"role": "assistant", "content": "<think>\nhm\n</think>\n\nHello", "reasoning_content": "r",
       "tool_calls": [{"id": "abcDEF123", "type": "function",
                       "function": {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]},
      {"role": "tool", "tool_call_id": "abcDEF123", "content": "ok"}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
               "parameters": {"type": "object", "properties": {"a": {"type": "array"}}}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"
  })");
  // The server's budgets (the defaults): a run that is slow under them is a finding (-timeout).
  velocity::jinja::RenderOptions options;
  options.fixed_time = 1700000000;
  velocity::jinja::RenderStats stats;
  try {
    velocity::ChatTemplate t(std::string_view(reinterpret_cast<const char*>(data), size), options);
    t.render(context, {nullptr, &stats});
  } catch (const velocity::Error&) {
  }
  if (stats.output_bytes > options.max_output_bytes) __builtin_trap();
  return 0;
}
