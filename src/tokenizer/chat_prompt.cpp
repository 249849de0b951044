#include "tokenizer/chat_prompt.h"

#include <ctime>
#include <random>
#include <string_view>

#include "core/error.h"
#include "tokenizer/jinja_value.h"

namespace velocity::tokenizer {
namespace {

using nlohmann::ordered_json;

// The parts of the context a client writes.
constexpr const char* kUserKeys[] = {"messages", "tools"};

// Calls visit(string) for every string value and object key in `j`, depth first; stops (and
// returns true) as soon as one call returns true.
template <class Visit>
bool any_string(const ordered_json& j, const Visit& visit, int depth) {
  if (depth > jinja::kMaxValueDepth) fail("template context nested deeper than {} levels", jinja::kMaxValueDepth);
  if (j.is_string()) return visit(j.get_ref<const std::string&>());
  if (j.is_array()) {
    for (const auto& item : j)
      if (any_string(item, visit, depth + 1)) return true;
  } else if (j.is_object()) {
    for (const auto& [key, value] : j.items())
      if (visit(key) || any_string(value, visit, depth + 1)) return true;
  }
  return false;
}

// `j` with every string value and object key replaced by map(string).
template <class Map>
ordered_json map_strings(const ordered_json& j, const Map& map, int depth) {
  if (depth > jinja::kMaxValueDepth) fail("template context nested deeper than {} levels", jinja::kMaxValueDepth);
  if (j.is_string()) return map(j.get_ref<const std::string&>());
  if (j.is_array()) {
    ordered_json out = ordered_json::array();
    for (const auto& item : j) out.push_back(map_strings(item, map, depth + 1));
    return out;
  }
  if (j.is_object()) {
    ordered_json out = ordered_json::object();
    for (const auto& [key, value] : j.items()) out[map(key)] = map_strings(value, map, depth + 1);
    return out;
  }
  return j;
}

// Letters and digits only: tojson, HTML escaping, repr and trimming leave them as they are.
std::string random_nonce() {
  static constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<size_t> pick(0, kAlphabet.size() - 1);
  std::string nonce = "vlc";
  for (int i = 0; i < 20; ++i) nonce += kAlphabet[pick(rng)];  // 119 bits: a client cannot guess it
  return nonce;
}

// `marked` without its markers (nonce + 'B' begins a plain span, nonce + 'E' ends it) into
// `text`, the spans into `plain`. False when the markers are not begin/end pairs in order.
bool strip_markers(std::string_view marked, std::string_view nonce, std::string& text, std::vector<TextRange>& plain) {
  text.clear();
  text.reserve(marked.size());
  bool inside = false;
  size_t begin = 0, pos = 0;
  for (size_t hit; (hit = jinja::find_text(marked, nonce, pos)) != std::string_view::npos;) {
    text.append(marked.substr(pos, hit - pos));
    const size_t kind_at = hit + nonce.size();
    if (kind_at >= marked.size()) return false;
    if (marked[kind_at] == 'B' && !inside) {
      begin = text.size();
      inside = true;
    } else if (marked[kind_at] == 'E' && inside) {
      if (text.size() > begin) plain.push_back({begin, text.size()});
      inside = false;
    } else {
      return false;
    }
    pos = kind_at + 1;
  }
  text.append(marked.substr(pos));
  return !inside;
}

void add_steps(const jinja::RenderControl& control, const jinja::RenderStats& stats) {
  if (control.stats) control.stats->steps += stats.steps;
}

}  // namespace

ChatPrompt render_chat_prompt(const ChatTemplate& tmpl, const nlohmann::ordered_json& context,
                              const Tokenizer& tokenizer, bool content_is_text, const jinja::RenderControl& control) {
  if (control.stats) *control.stats = {};
  // Both renders read one clock: a template printing the time must not tell them apart.
  const int64_t now = control.now ? *control.now : static_cast<int64_t>(std::time(nullptr));
  jinja::RenderStats stats;
  ChatPrompt prompt;
  try {
    prompt.text = tmpl.render(context, {control.cancel, &stats, now});
  } catch (...) {
    add_steps(control, stats);
    throw;
  }
  add_steps(control, stats);
  if (control.stats) control.stats->output_bytes = prompt.text.size();
  if (!content_is_text || !context.is_object()) return prompt;

  // Find the first control-token text in a user-controlled string; most conversations have none.
  std::vector<TextRange> found;
  int32_t first_token = kNoToken;
  auto has_control_text = [&](const std::string& s) {
    found.clear();
    first_token = tokenizer.find_control_texts(s, found);
    return first_token != kNoToken;
  };
  bool any = false;
  for (const char* key : kUserKeys) {
    auto it = context.find(key);
    if (it != context.end() && any_string(*it, has_control_text, 0)) {
      any = true;
      break;
    }
  }
  if (!any) return prompt;
  const std::string token_text = tokenizer.vocab().tokens[static_cast<size_t>(first_token)];

  std::string nonce = random_nonce();
  while (prompt.text.find(nonce) != std::string::npos) nonce = random_nonce();
  const std::string begin_marker = nonce + "B", end_marker = nonce + "E";
  // Each occurrence (not the whole string) is wrapped, so a template may still split the content
  // around it, strip it or test how it starts.
  auto wrap = [&](const std::string& s) {
    std::vector<TextRange> ranges;
    if (tokenizer.find_control_texts(s, ranges) == kNoToken) return s;
    std::string out;
    size_t pos = 0;
    for (const TextRange& r : ranges) {
      out.append(s, pos, r.begin - pos);
      out += begin_marker;
      out.append(s, r.begin, r.end - r.begin);
      out += end_marker;
      pos = r.end;
    }
    out.append(s, pos, std::string::npos);
    return out;
  };
  ordered_json marked_context = context;
  for (const char* key : kUserKeys) {
    auto it = marked_context.find(key);
    if (it != marked_context.end()) *it = map_strings(*it, wrap, 0);
  }
  auto refuse = [&token_text](std::string_view why) {
    fail("the message content contains the model's control-token text '{}', which velocity keeps as plain text; "
         "this chat template cannot be rendered that way ({})",
         token_text, why);
  };
  stats = {};
  std::string marked;
  try {
    marked = tmpl.render(marked_context, {control.cancel, &stats, now});
  } catch (const Error& e) {
    add_steps(control, stats);
    refuse(std::string("with that text marked it failed: ") + e.what());
  }
  add_steps(control, stats);
  std::string text;
  if (!strip_markers(marked, nonce, text, prompt.plain) || text != prompt.text)
    refuse("it changes the content around that text");
  return prompt;
}

}  // namespace velocity::tokenizer
