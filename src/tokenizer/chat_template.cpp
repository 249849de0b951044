#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/jinja_parser.h"

namespace velocity {

namespace jinja {

static Value from_json_at(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxValueDepth) fail("template context nested deeper than {} levels", kMaxValueDepth);
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::from_bool(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::from_int(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      auto u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::from_float(static_cast<double>(u));
      return Value::from_int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::from_float(json.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::from_string(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(from_json_at(item, depth + 1));
      return Value::new_list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value d = Value::new_dict();
      for (const auto& [k, v] : json.items()) d.dict->set(k, from_json_at(v, depth + 1));
      return d;
    }
    default: return Value::none();
  }
}

Value from_json(const nlohmann::ordered_json& json) { return from_json_at(json, 0); }

}  // namespace jinja

ChatTemplate::ChatTemplate(std::string_view source, jinja::RenderOptions options)
    : template_(std::make_unique<jinja::Template>(jinja::parse(source))), options_(std::move(options)) {}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const { return render(context, {}); }

std::string ChatTemplate::render(const nlohmann::ordered_json& context, const jinja::RenderControl& control) const {
  if (!context.is_object()) fail("chat template context must be a JSON object");
  jinja::Interpreter interp(options_, control);
  return interp.render(*template_, jinja::from_json(context));
}

}  // namespace velocity
