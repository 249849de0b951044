// Value construction, Python str()/repr() formatting, json.dumps, and comparisons.
#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace velocity::jinja {

void WorkMeter::check() const {
  if (steps > max_steps) fail("template exceeded the work limit of {} steps", max_steps);
  if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled("chat template rendering was cancelled");
}

void WorkMeter::check_bytes(uint64_t n) const {
  if (n > max_bytes) fail("template output exceeds the limit of {} bytes", max_bytes);
}

uint32_t nesting(const Value& v) {
  if (v.type == Type::Dict || v.type == Type::Namespace) return v.dict->depth;
  return v.depth;
}

static uint32_t checked_depth(uint32_t depth) {
  if (depth > static_cast<uint32_t>(kMaxValueDepth))
    fail("value nested deeper than {} levels", kMaxValueDepth);
  return depth;
}

size_t Dict::n_other_keys() const { return items.size() - string_index.size(); }

const Value* Dict::find(const Value& key, WorkMeter* meter) const {
  if (key.type == Type::String) {
    auto it = string_index.find(key.string);
    return it == string_index.end() ? nullptr : &items[it->second].second;
  }
  if (n_other_keys() == 0) return nullptr;
  for (const auto& [k, v] : items) {
    if (k.type != Type::String && values_equal(k, key, meter)) return &v;
  }
  return nullptr;
}

void Dict::set(const Value& key, Value value, WorkMeter* meter) {
  depth = std::max(depth, checked_depth(1 + std::max(nesting(key), nesting(value))));
  if (key.type == Type::String) return set(key.string, std::move(value));
  for (auto& [k, v] : items) {
    if (k.type != Type::String && values_equal(k, key, meter)) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(key, std::move(value));
}

void Dict::set(const std::string& key, Value value) {
  depth = std::max(depth, checked_depth(1 + nesting(value)));
  auto it = string_index.find(key);
  if (it != string_index.end()) {
    items[it->second].second = std::move(value);
    return;
  }
  string_index.emplace(key, items.size());
  items.emplace_back(Value::from_string(key), std::move(value));
}

Value Value::undefined(std::string hint) {
  Value v;
  v.string = std::move(hint);
  return v;
}
Value Value::none() {
  Value v;
  v.type = Type::None;
  return v;
}
Value Value::from_bool(bool b) {
  Value v;
  v.type = Type::Bool;
  v.boolean = b;
  return v;
}
Value Value::from_int(int64_t i) {
  Value v;
  v.type = Type::Int;
  v.integer = i;
  return v;
}
Value Value::from_float(double d) {
  Value v;
  v.type = Type::Float;
  v.number = d;
  return v;
}
Value Value::from_string(std::string s, bool is_markup) {
  Value v;
  v.type = Type::String;
  v.string = std::move(s);
  v.markup = is_markup;
  return v;
}
Value Value::new_list(std::vector<Value> items) {
  Value v;
  v.type = Type::List;
  uint32_t deepest = 0;
  for (const Value& item : items) deepest = std::max(deepest, nesting(item));
  v.depth = checked_depth(deepest + 1);
  v.list = std::make_shared<std::vector<Value>>(std::move(items));
  return v;
}
Value Value::new_tuple(std::vector<Value> items) {
  Value v = new_list(std::move(items));
  v.type = Type::Tuple;
  return v;
}
Value Value::new_generator(std::vector<Value> items) {
  Value v = new_list(std::move(items));
  v.type = Type::Generator;
  return v;
}
Value Value::new_dict() {
  Value v;
  v.type = Type::Dict;
  v.dict = std::make_shared<Dict>();
  return v;
}
Value Value::new_namespace() {
  Value v = new_dict();
  v.type = Type::Namespace;
  return v;
}
Value Value::function(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn) {
  Value v;
  v.type = Type::Callable;
  v.callable = std::make_shared<Callable>(Callable{std::move(name), false, std::move(fn)});
  return v;
}

bool Value::truthy() const {
  switch (type) {
    case Type::Undefined:
    case Type::None: return false;
    case Type::Bool: return boolean;
    case Type::Int: return integer != 0;
    case Type::Float: return number != 0.0;
    case Type::String: return !string.empty();
    case Type::List:
    case Type::Tuple: return !list->empty();
    case Type::Dict: return !dict->items.empty();
    case Type::Namespace:
    case Type::Callable:
    case Type::Generator: return true;
  }
  return false;
}

double Value::as_double() const {
  if (type == Type::Float) return number;
  if (type == Type::Bool) return boolean ? 1.0 : 0.0;
  return static_cast<double>(integer);
}

const char* type_name(const Value& v) {
  switch (v.type) {
    case Type::Undefined: return "Undefined";
    case Type::None: return "NoneType";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return "str";
    case Type::List: return "list";
    case Type::Tuple: return "tuple";
    case Type::Dict: return "dict";
    case Type::Namespace: return "Namespace";
    case Type::Callable: return "function";
    case Type::Generator: return "generator";
  }
  return "object";
}

// ---- UTF-8 -------------------------------------------------------------------------------
// Invalid bytes decode to U+DC80..U+DCFF (Python's surrogateescape) and encode back to the
// same byte, so hostile input round-trips unchanged.

std::vector<uint32_t> utf8_decode(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    uint32_t cp = n == 0 ? c : n == 1 ? (c & 0x1f) : n == 2 ? (c & 0x0f) : (c & 0x07);
    bool ok = n >= 0 && i + static_cast<size_t>(n) < s.size();
    if (ok && n > 0) {
      for (int k = 1; ok && k <= n; ++k) {
        auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc >> 6) != 2) ok = false;
        cp = (cp << 6) | (cc & 0x3f);
      }
      static const uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
      if (ok && (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
    }
    if (!ok) {
      out.push_back(0xdc00 + c);
      i += 1;
    } else {
      out.push_back(cp);
      i += static_cast<size_t>(n) + 1;
    }
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp >= 0xdc80 && cp <= 0xdcff) {
    out.push_back(static_cast<char>(cp - 0xdc00));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) utf8_append(out, cps[i]);
  return out;
}

size_t utf8_length(std::string_view s) {
  bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return (c & 0x80) == 0; });
  return ascii ? s.size() : utf8_decode(s).size();
}

size_t find_text(std::string_view haystack, std::string_view needle, size_t from) {
  if (from > haystack.size()) return std::string_view::npos;
  if (needle.empty()) return from;
  // glibc's memmem is the two-way algorithm: O(n + m) whatever the input.
  const void* hit = memmem(haystack.data() + from, haystack.size() - from, needle.data(), needle.size());
  return hit ? static_cast<size_t>(static_cast<const char*>(hit) - haystack.data()) : std::string_view::npos;
}

std::string repeat_text(std::string_view s, size_t n) {
  const size_t total = s.size() * n;
  std::string out;
  out.reserve(total);
  out.append(s.substr(0, total));
  while (!out.empty() && out.size() * 2 <= total) out.append(out);
  out.append(out, 0, total - out.size());
  return out;
}

size_t rfind_text(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return std::string_view::npos;
  if (needle.empty()) return haystack.size();
  // The last occurrence is the first one in the reversed text.
  std::string reversed_haystack(haystack.rbegin(), haystack.rend());
  std::string reversed_needle(needle.rbegin(), needle.rend());
  size_t hit = find_text(reversed_haystack, reversed_needle);
  return hit == std::string_view::npos ? hit : haystack.size() - hit - needle.size();
}

bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

// str.isprintable(): false for control, format, separator (except ' '), private use.
static bool is_python_printable(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) return false;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f)) return false;
  if ((cp >= 0x205f && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206f) || cp == 0x3000) return false;
  if ((cp >= 0x600 && cp <= 0x605) || cp == 0x61c || cp == 0x6dd || cp == 0x70f || cp == 0x180e) return false;
  if (cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb) || (cp >= 0xd800 && cp <= 0xf8ff)) return false;
  if (cp >= 0xf0000 || cp == 0xe0001 || (cp >= 0xe0020 && cp <= 0xe007f)) return false;
  return true;
}

// ---- str / repr --------------------------------------------------------------------------

std::string python_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e+02"
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits.push_back(sci[i]);
  int exponent = std::stoi(sci.substr(e + 1));
  int decpt = exponent + 1;  // value = 0.digits * 10^decpt
  std::string out = negative ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
    } else if (static_cast<size_t>(decpt) >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(decpt) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exponent < 0 ? '-' : '+', std::abs(exponent));
  }
  return out;
}

std::string python_string_repr(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (uint32_t cp : utf8_decode(s)) {
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp >= 0xdc80 && cp <= 0xdcff) {
      out += fmt::format("\\udc{:02x}", cp & 0xff);
    } else if (!is_python_printable(cp)) {
      if (cp < 0x100) out += fmt::format("\\x{:02x}", cp);
      else if (cp < 0x10000) out += fmt::format("\\u{:04x}", cp);
      else out += fmt::format("\\U{:08x}", cp);
    } else {
      utf8_append(out, cp);
    }
  }
  out.push_back(quote);
  return out;
}

static void repr_into(std::string& out, const Value& v, int depth, WorkMeter* meter);

static void str_into(std::string& out, const Value& v, int depth, WorkMeter* meter) {
  switch (v.type) {
    case Type::Undefined: return;
    case Type::String: out += v.string; return;
    default: repr_into(out, v, depth, meter);
  }
}

// Shared sub-lists make a value's repr exponential in its size ([x, x] nested 40 deep), so every
// node is charged and the text is bounded as it grows.
static void repr_into(std::string& out, const Value& v, int depth, WorkMeter* meter) {
  if (depth > kMaxValueDepth) fail("maximum recursion depth exceeded while getting the repr of an object");
  if (meter) {
    meter->add(1);
    if (v.type == Type::String) meter->add_decode(v.string.size());
    meter->check_bytes(out.size());
  }
  switch (v.type) {
    case Type::Undefined: out += "Undefined"; return;
    case Type::None: out += "None"; return;
    case Type::Bool: out += v.boolean ? "True" : "False"; return;
    case Type::Int: out += std::to_string(v.integer); return;
    case Type::Float: out += python_float_repr(v.number); return;
    case Type::String:
      if (v.markup) out += "Markup(";
      out += python_string_repr(v.string);
      if (v.markup) out += ")";
      return;
    case Type::List:
    case Type::Tuple: {
      bool tuple = v.type == Type::Tuple;
      out += tuple ? '(' : '[';
      for (size_t i = 0; i < v.list->size(); ++i) {
        if (i) out += ", ";
        repr_into(out, (*v.list)[i], depth + 1, meter);
      }
      if (tuple && v.list->size() == 1) out += ',';
      out += tuple ? ')' : ']';
      return;
    }
    case Type::Dict: {
      out += '{';
      bool first = true;
      for (const auto& [k, val] : v.dict->items) {
        if (!first) out += ", ";
        first = false;
        repr_into(out, k, depth + 1, meter);
        out += ": ";
        repr_into(out, val, depth + 1, meter);
      }
      out += '}';
      return;
    }
    case Type::Namespace: out += "<Namespace>"; return;
    case Type::Callable:
      out += v.callable->is_macro ? "<Macro '" + v.callable->name + "'>" : "<function " + v.callable->name + ">";
      return;
    case Type::Generator: out += "<generator object>"; return;
  }
}

std::string to_str(const Value& v, WorkMeter* meter) {
  if (v.type == Type::String) return v.string;
  std::string out;
  str_into(out, v, 0, meter);
  if (meter) meter->check_bytes(out.size());
  return out;
}

std::string to_repr(const Value& v, WorkMeter* meter) {
  std::string out;
  repr_into(out, v, 0, meter);
  if (meter) meter->check_bytes(out.size());
  return out;
}

// ---- json.dumps --------------------------------------------------------------------------

static void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out.push_back('"');
  for (uint32_t cp : utf8_decode(s)) {
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) {
          if (cp >= 0x10000) {
            uint32_t u = cp - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", 0xd800 + (u >> 10), 0xdc00 + (u & 0x3ff));
          } else {
            out += fmt::format("\\u{:04x}", cp);
          }
        } else {
          utf8_append(out, cp);
        }
    }
  }
  out.push_back('"');
}

static std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return python_float_repr(d);
}

static void json_into(std::string& out, const Value& v, const JsonOptions& o, int depth, WorkMeter* meter) {
  if (depth > kMaxValueDepth) fail("maximum recursion depth exceeded while encoding a JSON object");
  if (meter) {
    // As repr: a node and its string per visit, the text bounded as it grows (indentation too).
    meter->add(1 + static_cast<uint64_t>(o.indent > 0 ? o.indent : 0) * static_cast<uint64_t>(depth) / kBytesPerStep);
    if (v.type == Type::String) meter->add_decode(v.string.size());
    meter->check_bytes(out.size());
  }
  auto newline = [&](int level) {
    if (o.indent < 0) return;
    out.push_back('\n');
    out.append(static_cast<size_t>(o.indent) * static_cast<size_t>(level), ' ');
  };
  switch (v.type) {
    case Type::None: out += "null"; return;
    case Type::Bool: out += v.boolean ? "true" : "false"; return;
    case Type::Int: out += std::to_string(v.integer); return;
    case Type::Float: out += json_float(v.number); return;
    case Type::String: json_string(out, v.string, o.ensure_ascii); return;
    case Type::List:
    case Type::Tuple: {
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.list->size(); ++i) {
        if (i) out += o.item_separator;
        newline(depth + 1);
        json_into(out, (*v.list)[i], o, depth + 1, meter);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Type::Dict: {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& item : v.dict->items) items.push_back(&item);
      if (o.sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [meter](auto* a, auto* b) { return values_less(a->first, b->first, meter); });
      }
      out += '{';
      bool first = true;
      for (const auto* item : items) {
        if (!first) out += o.item_separator;
        first = false;
        newline(depth + 1);
        const Value& k = item->first;
        switch (k.type) {
          case Type::String:
            if (meter) meter->add_decode(k.string.size());
            json_string(out, k.string, o.ensure_ascii);
            break;
          case Type::Int: out += '"' + std::to_string(k.integer) + '"'; break;
          case Type::Float: out += '"' + json_float(k.number) + '"'; break;
          case Type::Bool: out += k.boolean ? "\"true\"" : "\"false\""; break;
          case Type::None: out += "\"null\""; break;
          default:
            fail("keys must be str, int, float, bool or None, not {}", type_name(k));
        }
        out += o.key_separator;
        json_into(out, item->second, o, depth + 1, meter);
      }
      newline(depth);
      out += '}';
      return;
    }
    default: fail("Object of type {} is not JSON serializable", type_name(v));
  }
}

std::string to_json(const Value& v, const JsonOptions& options, WorkMeter* meter) {
  std::string out;
  json_into(out, v, options, 0, meter);
  if (meter) meter->check_bytes(out.size());
  return out;
}

// ---- comparisons -------------------------------------------------------------------------

// Comparisons charge every node and string they visit: two equal values built separately with
// shared sub-lists compare in time exponential in their size.
static bool equal_at(const Value& a, const Value& b, int depth, WorkMeter* meter) {
  if (depth > kMaxValueDepth) fail("maximum recursion depth exceeded in comparison");
  if (meter) meter->add(1 + (a.type == Type::String && b.type == Type::String ? a.string.size() / kBytesPerStep : 0));
  if (a.is_number() && b.is_number()) {
    if (a.type == Type::Float || b.type == Type::Float) return a.as_double() == b.as_double();
    int64_t x = a.type == Type::Bool ? a.boolean : a.integer;
    int64_t y = b.type == Type::Bool ? b.boolean : b.integer;
    return x == y;
  }
  if (a.type != b.type) return false;
  switch (a.type) {
    case Type::Undefined:
    case Type::None: return true;
    case Type::String: return a.string == b.string;
    case Type::List:
    case Type::Tuple: {
      if (a.list == b.list) return true;
      if (a.list->size() != b.list->size()) return false;
      for (size_t i = 0; i < a.list->size(); ++i)
        if (!equal_at((*a.list)[i], (*b.list)[i], depth + 1, meter)) return false;
      return true;
    }
    case Type::Dict: {
      if (a.dict == b.dict) return true;
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, v] : a.dict->items) {
        const Value* other = b.dict->find(k, meter);
        if (!other || !equal_at(v, *other, depth + 1, meter)) return false;
      }
      return true;
    }
    case Type::Namespace: return a.dict == b.dict;
    case Type::Callable: return a.callable == b.callable;
    case Type::Generator: return a.list == b.list;
    default: return false;
  }
}

bool values_equal(const Value& a, const Value& b, WorkMeter* meter) { return equal_at(a, b, 0, meter); }

static bool less_at(const Value& a, const Value& b, int depth, WorkMeter* meter) {
  if (depth > kMaxValueDepth) fail("maximum recursion depth exceeded in comparison");
  if (meter) meter->add(1 + (a.type == Type::String && b.type == Type::String ? a.string.size() / kBytesPerStep : 0));
  if (a.is_number() && b.is_number()) {
    if (a.type == Type::Float || b.type == Type::Float) return a.as_double() < b.as_double();
    int64_t x = a.type == Type::Bool ? a.boolean : a.integer;
    int64_t y = b.type == Type::Bool ? b.boolean : b.integer;
    return x < y;
  }
  if (a.type == Type::String && b.type == Type::String) return a.string < b.string;
  if (a.type == b.type && a.is_sequence()) {
    size_t n = std::min(a.list->size(), b.list->size());
    for (size_t i = 0; i < n; ++i) {
      const Value& x = (*a.list)[i];
      const Value& y = (*b.list)[i];
      if (!equal_at(x, y, depth + 1, meter)) return less_at(x, y, depth + 1, meter);
    }
    return a.list->size() < b.list->size();
  }
  fail("'<' not supported between instances of '{}' and '{}'", type_name(a), type_name(b));
}

bool values_less(const Value& a, const Value& b, WorkMeter* meter) { return less_at(a, b, 0, meter); }

}  // namespace velocity::jinja
