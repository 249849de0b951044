// jinja2 3.1 builtin filters and tests (plus transformers' tojson override).
#include "tokenizer/jinja_filters.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/jinja_render.h"

namespace velocity::jinja {
namespace {

using Filter = Value (*)(Interpreter&, const Value&, CallArgs&);

std::string lower_ascii(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return s;
}

// Python's len().
int64_t length_of(Interpreter& interp, const Value& v) {
  switch (v.type) {
    case Type::Undefined: return 0;
    case Type::String: return static_cast<int64_t>(utf8_length(v.string));
    case Type::List:
    case Type::Tuple: return static_cast<int64_t>(v.list->size());
    case Type::Dict: return static_cast<int64_t>(v.dict->items.size());
    default: interp.error(fmt::format("object of type '{}' has no len()", type_name(v)));
  }
}

// Items a filter walks (list(value)); raises on non-iterables like Python's iter(). Charged by
// iterate().
std::vector<Value> items_of(Interpreter& interp, const Value& v) {
  if (v.is_number() || v.is_none() || v.type == Type::Namespace || v.type == Type::Callable)
    interp.error(fmt::format("'{}' object is not iterable", type_name(v)));
  return interp.iterate(v);
}

// Copying a dict's items: a step per pair and the bytes of its string keys and values.
void charge_pairs(Interpreter& interp, const Dict& d) {
  uint64_t string_bytes = 0;
  for (const auto& [k, v] : d.items) string_bytes += k.string.size() + v.string.size();
  interp.step(d.items.size() + string_bytes / kBytesPerStep);
}

// jinja2's make_attrgetter: `a.b.0` looks up each part with environment.getitem.
Value attribute_of(Interpreter& interp, const Value& item, const Value& attribute, const Value& fallback = Value::undefined()) {
  if (!attribute.is_string()) return interp.get_item(item, attribute);
  interp.charge_bytes(attribute.string.size());  // split per item: map and sort call this per element
  Value v = item;
  const std::string& path = attribute.string;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = interp.get_item(v, numeric && part.size() < 18 ? Value::from_int(std::stoll(part)) : Value::from_string(part));
    if (v.is_undefined() && !fallback.is_undefined()) return fallback;
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// ---- filters ----------------------------------------------------------------------------------

Value f_tojson(Interpreter& interp, const Value& v, CallArgs& args) {
  // transformers' override: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  ArgReader r(interp, args, "tojson");
  JsonOptions o;
  o.ensure_ascii = r.get(0, "ensure_ascii", Value::from_bool(false)).truthy();
  Value indent = r.get(1, "indent", Value::none());
  Value separators = r.get(2, "separators", Value::none());
  o.sort_keys = r.get(3, "sort_keys", Value::from_bool(false)).truthy();
  r.done(4);
  if (indent.type == Type::Int || indent.type == Type::Bool) {
    int64_t n = indent.type == Type::Bool ? indent.boolean : indent.integer;
    if (n > 1024) interp.error("tojson indent too large");
    o.indent = std::max<int64_t>(0, n);
    o.item_separator.resize(1);  // "," (assigning a literal trips a GCC 12 -Wrestrict false positive)
  } else if (!indent.is_none()) {
    interp.error("tojson: indent must be an integer or None");
  }
  if (separators.is_sequence() && separators.list->size() == 2 && (*separators.list)[0].is_string() &&
      (*separators.list)[1].is_string()) {
    o.item_separator = (*separators.list)[0].string;
    o.key_separator = (*separators.list)[1].string;
  } else if (!separators.is_none()) {
    interp.error("tojson: separators must be a pair of strings");
  }
  try {
    std::string out = to_json(v, o, interp.meter());
    interp.check_size(out.size());
    return Value::from_string(std::move(out));
  } catch (const Error& e) {
    interp.error(e.what());
  }
}

Value f_length(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "length").done(0);
  return Value::from_int(length_of(interp, v));
}

Value f_default(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "default");
  Value fallback = r.get(0, "default_value", Value::from_string(""));
  bool boolean = r.get(1, "boolean", Value::from_bool(false)).truthy();
  r.done(2);
  if (v.is_undefined() || (boolean && !v.truthy())) return fallback;
  return v;
}

Value f_first(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "first").done(0);
  std::vector<Value> items = items_of(interp, v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "last").done(0);
  if (v.type == Type::Generator) interp.error("'generator' object is not reversible");
  std::vector<Value> items = items_of(interp, v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_join(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "join");
  std::string sep = to_str(r.get(0, "d", Value::from_string("")), interp.meter());
  Value attribute = r.get(1, "attribute", Value::none());
  r.done(2);
  std::string out;
  bool first = true;
  for (const Value& item : items_of(interp, v)) {
    if (!first) out += sep;
    first = false;
    out += to_str(attribute.is_none() ? item : attribute_of(interp, item, attribute), interp.meter());
    interp.check_size(out.size());
  }
  return Value::from_string(std::move(out));
}

Value f_string_transform(Interpreter& interp, const Value& v, CallArgs& args, const char* method) {
  CallArgs none;
  Value s = Value::from_string(to_str(v, interp.meter()));
  Value m = get_method(interp, s, method);
  ArgReader(interp, args, method).done(0);
  return interp.call(m, none);
}
Value f_upper(Interpreter& i, const Value& v, CallArgs& a) { return f_string_transform(i, v, a, "upper"); }
Value f_lower(Interpreter& i, const Value& v, CallArgs& a) { return f_string_transform(i, v, a, "lower"); }
Value f_capitalize(Interpreter& i, const Value& v, CallArgs& a) { return f_string_transform(i, v, a, "capitalize"); }

Value f_title(Interpreter& interp, const Value& v, CallArgs& args) {
  // jinja's do_title: split before runs of [-\s({[<], capitalise each piece.
  ArgReader(interp, args, "title").done(0);
  auto cps = utf8_decode(to_str(v, interp.meter()));
  std::string out;
  bool word_start = true;
  for (uint32_t c : cps) {
    bool boundary = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_python_space(c);
    if (boundary) {
      utf8_append(out, c);
      word_start = true;
      continue;
    }
    uint32_t mapped = word_start ? (c >= 'a' && c <= 'z' ? c - 32 : c) : (c >= 'A' && c <= 'Z' ? c + 32 : c);
    utf8_append(out, mapped);
    word_start = false;
  }
  return Value::from_string(std::move(out));
}

Value f_trim(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "trim");
  Value chars = r.get(0, "chars", Value::none());
  r.done(1);
  return Value::from_string(python_strip(to_str(v, interp.meter()), chars, true, true));
}

Value f_replace(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "replace");
  CallArgs call;
  call.positional.push_back(Value::from_string(to_str(r.get(0, "old"), interp.meter())));
  call.positional.push_back(Value::from_string(to_str(r.get(1, "new"), interp.meter())));
  Value count = r.get(2, "count", Value::none());
  if (!count.is_none()) call.positional.push_back(count);
  r.done(3);
  return interp.call(get_method(interp, Value::from_string(to_str(v, interp.meter()), v.markup), "replace"), call);
}

Value f_list(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "list").done(0);
  return Value::new_list(items_of(interp, v));
}

Value f_string(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "string").done(0);
  if (v.is_string()) return v;
  std::string s = to_str(v, interp.meter());
  interp.check_size(s.size());
  return Value::from_string(std::move(s));
}

// Python float(str): strips whitespace, accepts underscores between digits, inf/nan.
bool parse_float(const std::string& text, double& out) {
  std::string s = python_strip(text, Value::none(), true, true);
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1])))
        return false;
      continue;
    }
    clean.push_back(s[i]);
  }
  if (clean.empty()) return false;
  std::string lower = lower_ascii(clean);
  std::string body = lower[0] == '+' || lower[0] == '-' ? lower.substr(1) : lower;
  if (body == "inf" || body == "infinity" || body == "nan") {
    out = body == "nan" ? NAN : (lower[0] == '-' ? -INFINITY : INFINITY);
    return true;
  }
  for (char c : body)
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.' && c != 'e' && c != '+' && c != '-') return false;
  char* end = nullptr;
  out = std::strtod(clean.c_str(), &end);
  return end && *end == '\0';
}

Value f_int(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "int");
  Value fallback = r.get(0, "default", Value::from_int(0));
  Value base_v = r.get(1, "base", Value::from_int(10));
  r.done(2);
  if (v.is_undefined()) interp.raise_undefined(v);
  if (v.type == Type::Int) return v;
  if (v.type == Type::Bool) return Value::from_int(v.boolean);
  if (v.type == Type::Float) {
    if (!std::isfinite(v.number) || std::fabs(v.number) >= 9.2e18) return fallback;
    return Value::from_int(static_cast<int64_t>(v.number));
  }
  if (v.is_string()) {
    std::string s = python_strip(v.string, Value::none(), true, true);
    std::string clean;
    for (char c : s)
      if (c != '_') clean.push_back(c);
    int base = base_v.type == Type::Int ? static_cast<int>(base_v.integer) : 10;
    if (base >= 2 && base <= 36 && !clean.empty()) {
      errno = 0;
      char* end = nullptr;
      long long n = std::strtoll(clean.c_str(), &end, base);
      if (end && *end == '\0' && errno == 0 && clean.find_first_of(" \t\n") == std::string::npos &&
          (base != 16 || clean.find('x') == std::string::npos || true))
        return Value::from_int(n);
    }
    double d;
    if (parse_float(v.string, d) && std::isfinite(d) && std::fabs(d) < 9.2e18)
      return Value::from_int(static_cast<int64_t>(d));
  }
  return fallback;
}

Value f_float(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "float");
  Value fallback = r.get(0, "default", Value::from_float(0.0));
  r.done(1);
  if (v.is_undefined()) interp.raise_undefined(v);
  if (v.is_number()) return Value::from_float(v.as_double());
  double d;
  if (v.is_string() && parse_float(v.string, d)) return Value::from_float(d);
  return fallback;
}

Value f_abs(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "abs").done(0);
  if (v.type == Type::Float) return Value::from_float(std::fabs(v.number));
  if (v.type == Type::Int || v.type == Type::Bool) {
    int64_t x = v.type == Type::Bool ? v.boolean : v.integer;
    if (x == INT64_MIN) interp.error("integer overflow");
    return Value::from_int(x < 0 ? -x : x);
  }
  interp.error(fmt::format("bad operand type for abs(): '{}'", type_name(v)));
}

Value f_round(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "round");
  Value precision_v = r.get(0, "precision", Value::from_int(0));
  std::string method = to_str(r.get(1, "method", Value::from_string("common")), interp.meter());
  r.done(2);
  if (!v.is_number()) interp.error(fmt::format("type {} doesn't define __round__ method", type_name(v)));
  if (precision_v.type != Type::Int) interp.error("precision must be an integer");
  int64_t precision = std::clamp<int64_t>(precision_v.integer, -400, 400);
  if (method != "common" && method != "ceil" && method != "floor")
    interp.error("method must be 'common', 'ceil' or 'floor'");
  if (method == "common") {
    if (v.type != Type::Float) {
      if (precision >= 0) return Value::from_int(v.type == Type::Bool ? v.boolean : v.integer);
      interp.error("round() of an integer with negative precision is not supported");
    }
    if (!std::isfinite(v.number) || precision < 0) {
      double scale = std::pow(10.0, static_cast<double>(-precision));
      return Value::from_float(std::isfinite(v.number) ? std::nearbyint(v.number / scale) * scale : v.number);
    }
    // printf rounds the exact binary value half-to-even, like CPython's round().
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::min<int64_t>(precision, 330)), v.number);
    return Value::from_float(std::strtod(buf, nullptr));
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v.as_double() * scale;
  return Value::from_float((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

Value f_items(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "items").done(0);
  if (v.is_undefined()) return Value::new_generator({});
  if (v.type != Type::Dict) interp.error("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  charge_pairs(interp, *v.dict);
  for (const auto& [k, val] : v.dict->items) out.push_back(Value::new_tuple({k, val}));
  return Value::new_generator(std::move(out));
}

// Sort key for case-insensitive filters: strings are lowered.
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::from_string(lower_ascii(v.string));
  return v;
}

void sort_values(Interpreter& interp, std::vector<Value>& items, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  try {
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return reverse ? values_less(keys[b], keys[a], interp.meter()) : values_less(keys[a], keys[b], interp.meter());
    });
  } catch (const Error& e) {
    interp.error(e.what());
  }
  std::vector<Value> sorted;
  for (size_t i : order) sorted.push_back(items[i]);
  items = std::move(sorted);
}

Value f_dictsort(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "dictsort");
  bool case_sensitive = r.get(0, "case_sensitive", Value::from_bool(false)).truthy();
  std::string by = to_str(r.get(1, "by", Value::from_string("key")), interp.meter());
  bool reverse = r.get(2, "reverse", Value::from_bool(false)).truthy();
  r.done(3);
  if (v.is_undefined()) interp.raise_undefined(v);
  if (v.type != Type::Dict) interp.error(fmt::format("'{}' object has no attribute 'items'", type_name(v)));
  if (by != "key" && by != "value") interp.error("You can only sort by either 'key' or 'value'");
  charge_pairs(interp, *v.dict);
  std::vector<Value> items, keys;
  for (const auto& [k, val] : v.dict->items) {
    items.push_back(Value::new_tuple({k, val}));
    keys.push_back(sort_key(by == "key" ? k : val, case_sensitive));
  }
  sort_values(interp, items, keys, reverse);
  return Value::new_list(std::move(items));
}

std::vector<Value> attribute_list(const Value& attribute) {
  std::vector<Value> parts;
  if (attribute.is_string()) {
    size_t start = 0;
    while (true) {
      size_t comma = attribute.string.find(',', start);
      std::string part = attribute.string.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      parts.push_back(Value::from_string(python_strip(part, Value::none(), true, true)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else if (!attribute.is_none()) {
    parts.push_back(attribute);
  }
  return parts;
}

Value f_sort(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "sort");
  bool reverse = r.get(0, "reverse", Value::from_bool(false)).truthy();
  bool case_sensitive = r.get(1, "case_sensitive", Value::from_bool(false)).truthy();
  Value attribute = r.get(2, "attribute", Value::none());
  r.done(3);
  std::vector<Value> items = items_of(interp, v);
  std::vector<Value> keys;
  const bool several_attributes = attribute.is_string() && attribute.string.find(',') != std::string::npos;
  const std::vector<Value> attributes = several_attributes ? attribute_list(attribute) : std::vector<Value>{};
  for (const Value& item : items) {
    if (attribute.is_none()) {
      keys.push_back(sort_key(item, case_sensitive));
    } else if (several_attributes) {
      std::vector<Value> parts;
      for (const Value& a : attributes) parts.push_back(sort_key(attribute_of(interp, item, a), case_sensitive));
      keys.push_back(Value::new_list(std::move(parts)));
    } else {
      keys.push_back(sort_key(attribute_of(interp, item, attribute), case_sensitive));
    }
  }
  sort_values(interp, items, keys, reverse);
  return Value::new_list(std::move(items));
}

Value f_unique(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "unique");
  bool case_sensitive = r.get(0, "case_sensitive", Value::from_bool(false)).truthy();
  Value attribute = r.get(1, "attribute", Value::none());
  r.done(2);
  std::vector<Value> out, seen;
  for (const Value& item : items_of(interp, v)) {
    Value key = sort_key(attribute.is_none() ? item : attribute_of(interp, item, attribute), case_sensitive);
    if (key.type == Type::List || key.type == Type::Dict) interp.error(fmt::format("unhashable type: '{}'", type_name(key)));
    bool dup = false;
    interp.step(seen.size());
    for (const Value& s : seen) dup = dup || values_equal(s, key, interp.meter());
    if (dup) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::new_list(std::move(out));
}

Value f_reverse(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "reverse").done(0);
  if (v.is_string()) {
    auto cps = utf8_decode(v.string);
    std::reverse(cps.begin(), cps.end());
    return Value::from_string(utf8_encode(cps, 0, cps.size()));
  }
  std::vector<Value> items = items_of(interp, v);
  std::reverse(items.begin(), items.end());
  return Value::new_list(std::move(items));
}

Value f_batch(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "batch");
  Value count = r.get(0, "linecount");
  Value fill = r.get(1, "fill_with", Value::none());
  r.done(2);
  if (count.type != Type::Int || count.integer <= 0) interp.error("batch: linecount must be a positive integer");
  std::vector<Value> out, current;
  for (const Value& item : items_of(interp, v)) {
    current.push_back(item);
    if (static_cast<int64_t>(current.size()) == count.integer) {
      out.push_back(Value::new_list(std::move(current)));
      current.clear();
    }
  }
  if (!current.empty()) {
    if (!fill.is_none()) {
      const auto n_fill = static_cast<uint64_t>(count.integer) - current.size();
      interp.step(n_fill);  // first: a huge count fails here, before any multiplication
      interp.check_size(n_fill * sizeof(Value));
      while (static_cast<int64_t>(current.size()) < count.integer) current.push_back(fill);
    }
    out.push_back(Value::new_list(std::move(current)));
  }
  return Value::new_list(std::move(out));
}

Value f_sum(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "sum");
  Value attribute = r.get(0, "attribute", Value::none());
  Value total = r.get(1, "start", Value::from_int(0));
  r.done(2);
  // Python's sum() refuses strings (it would be quadratic): "use ''.join(seq) instead".
  if (total.is_string()) interp.error("sum() can't sum strings [use ''.join(seq) instead]");
  for (const Value& item : items_of(interp, v))
    total = binary_operator(interp, "+", total, attribute.is_none() ? item : attribute_of(interp, item, attribute));
  return total;
}

Value min_max(Interpreter& interp, const Value& v, CallArgs& args, bool want_max) {
  ArgReader r(interp, args, want_max ? "max" : "min");
  bool case_sensitive = r.get(0, "case_sensitive", Value::from_bool(false)).truthy();
  Value attribute = r.get(1, "attribute", Value::none());
  r.done(2);
  std::vector<Value> items = items_of(interp, v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key;
  for (size_t i = 0; i < items.size(); ++i) {
    Value key = sort_key(attribute.is_none() ? items[i] : attribute_of(interp, items[i], attribute), case_sensitive);
    try {
      if (i == 0 || (want_max ? values_less(best_key, key, interp.meter()) : values_less(key, best_key, interp.meter()))) {
        best = i;
        best_key = key;
      }
    } catch (const Error& e) {
      interp.error(e.what());
    }
  }
  return items[best];
}
Value f_max(Interpreter& i, const Value& v, CallArgs& a) { return min_max(i, v, a, true); }
Value f_min(Interpreter& i, const Value& v, CallArgs& a) { return min_max(i, v, a, false); }

Value f_indent(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "indent");
  Value width = r.get(0, "width", Value::from_int(4));
  bool first = r.get(1, "first", Value::from_bool(false)).truthy();
  bool blank = r.get(2, "blank", Value::from_bool(false)).truthy();
  r.done(3);
  std::string indention;
  if (width.is_string()) indention = width.string;
  else if (width.type == Type::Int) indention = std::string(static_cast<size_t>(std::clamp<int64_t>(width.integer, 0, 1024)), ' ');
  else interp.error("indent: width must be an integer or a string");
  std::string s = to_str(v, interp.meter()) + "\n";
  CallArgs none;
  Value lines_v = interp.call(get_method(interp, Value::from_string(s), "splitlines"), none);
  std::vector<Value>& lines = *lines_v.list;
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += lines[i].string;
      interp.check_size(rv.size());
    }
  } else {
    rv = lines.empty() ? "" : lines[0].string;
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].string.empty()) rv += indention;
      rv += lines[i].string;
      interp.check_size(rv.size());
    }
  }
  if (first) rv = indention + rv;
  return Value::from_string(std::move(rv), v.markup);
}

Value f_wordcount(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "wordcount").done(0);
  int64_t n = 0;
  bool in_word = false;
  for (uint32_t c : utf8_decode(to_str(v, interp.meter()))) {
    bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                (c >= 0xaa && !is_python_space(c) && c != 0xd7 && c != 0xf7 && !(c >= 0x2000 && c <= 0x206f) &&
                 !(c >= 0x3000 && c <= 0x303f) && !(c >= 0xff00 && c <= 0xff0f));
    if (word && !in_word) ++n;
    in_word = word;
  }
  return Value::from_int(n);
}

Value f_safe(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "safe").done(0);
  return Value::from_string(to_str(v, interp.meter()), true);
}

Value f_escape(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader(interp, args, "escape").done(0);
  if (v.is_string() && v.markup) return v;
  return Value::from_string(html_escape(to_str(v, interp.meter())), true);
}

Value f_center(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "center");
  CallArgs call;
  call.positional.push_back(r.get(0, "width", Value::from_int(80)));
  r.done(1);
  return interp.call(get_method(interp, Value::from_string(to_str(v, interp.meter())), "center"), call);
}

Value f_format(Interpreter& interp, const Value& v, CallArgs& args) {
  Value values;
  if (!args.keyword.empty()) {
    if (!args.positional.empty()) interp.error("can't handle positional and keyword arguments at the same time");
    values = Value::new_dict();
    for (auto& [k, val] : args.keyword) values.dict->set(k, val);
  } else {
    values = Value::new_tuple(args.positional);
  }
  return binary_operator(interp, "%", Value::from_string(to_str(v, interp.meter())), values);
}

Value f_attr(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader r(interp, args, "attr");
  Value name = r.get(0, "name");
  r.done(1);
  // do_attr uses getattr() only: a dict's keys are not attributes here.
  if (v.is_undefined()) interp.raise_undefined(v);
  const std::string attribute = to_str(name, interp.meter());
  Value method = get_method(interp, v, attribute);
  if (!method.is_undefined() || !method.string.empty()) return method;
  if (v.type == Type::Namespace) {
    if (const Value* found = v.dict->find(Value::from_string(attribute), interp.meter())) return *found;
  }
  return Value::undefined(fmt::format("'{} object' has no attribute '{}'", type_name(v), attribute));
}

// select / reject / selectattr / rejectattr: keep items where the test (or truthiness) holds.
Value select_impl(Interpreter& interp, const Value& v, CallArgs& args, bool by_attribute, bool keep) {
  size_t first = by_attribute ? 1 : 0;
  if (by_attribute && args.positional.empty()) interp.error("Missing parameter for attribute name");
  Value attribute = by_attribute ? args.positional[0] : Value::none();
  bool with_test = args.positional.size() > first;
  std::string test = with_test ? to_str(args.positional[first], interp.meter()) : "";
  if (with_test && !has_test(test)) interp.error(fmt::format("No test named '{}'.", test));
  CallArgs test_args;
  for (size_t i = first + 1; i < args.positional.size(); ++i) test_args.positional.push_back(args.positional[i]);
  test_args.keyword = args.keyword;
  std::vector<Value> out;
  for (const Value& item : items_of(interp, v)) {
    Value subject = by_attribute ? attribute_of(interp, item, attribute) : item;
    CallArgs call = test_args;
    bool ok = with_test ? apply_test(interp, test, subject, call) : subject.truthy();
    if (ok == keep) out.push_back(item);
  }
  return Value::new_generator(std::move(out));
}
Value f_select(Interpreter& i, const Value& v, CallArgs& a) { return select_impl(i, v, a, false, true); }
Value f_reject(Interpreter& i, const Value& v, CallArgs& a) { return select_impl(i, v, a, false, false); }
Value f_selectattr(Interpreter& i, const Value& v, CallArgs& a) { return select_impl(i, v, a, true, true); }
Value f_rejectattr(Interpreter& i, const Value& v, CallArgs& a) { return select_impl(i, v, a, true, false); }

Value f_map(Interpreter& interp, const Value& v, CallArgs& args) {
  std::vector<Value> out;
  if (args.positional.empty()) {
    ArgReader r(interp, args, "map");
    Value attribute = r.get(99, "attribute");
    Value fallback = r.get(99, "default");
    r.done(0);
    if (attribute.is_undefined()) interp.error("map requires a filter or an attribute");
    for (const Value& item : items_of(interp, v)) out.push_back(attribute_of(interp, item, attribute, fallback));
    return Value::new_generator(std::move(out));
  }
  std::string filter = to_str(args.positional[0], interp.meter());
  if (!has_filter(filter)) interp.error(fmt::format("No filter named '{}'.", filter));
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  filter_args.keyword = args.keyword;
  for (const Value& item : items_of(interp, v)) {
    CallArgs call = filter_args;
    out.push_back(apply_filter(interp, filter, item, call));
  }
  return Value::new_generator(std::move(out));
}

const std::unordered_map<std::string, Filter>& filters() {
  static const std::unordered_map<std::string, Filter> table = {
      {"tojson", f_tojson},       {"length", f_length},       {"count", f_length},
      {"default", f_default},     {"d", f_default},           {"first", f_first},
      {"last", f_last},           {"join", f_join},           {"upper", f_upper},
      {"lower", f_lower},         {"capitalize", f_capitalize}, {"title", f_title},
      {"trim", f_trim},           {"replace", f_replace},     {"list", f_list},
      {"string", f_string},       {"int", f_int},             {"float", f_float},
      {"abs", f_abs},             {"round", f_round},         {"items", f_items},
      {"dictsort", f_dictsort},   {"sort", f_sort},           {"unique", f_unique},
      {"reverse", f_reverse},     {"batch", f_batch},         {"sum", f_sum},
      {"max", f_max},             {"min", f_min},             {"indent", f_indent},
      {"wordcount", f_wordcount}, {"safe", f_safe},           {"escape", f_escape},
      {"e", f_escape},            {"center", f_center},       {"format", f_format},
      {"attr", f_attr},           {"select", f_select},       {"reject", f_reject},
      {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr}, {"map", f_map},
  };
  return table;
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}


bool has_filter(const std::string& name) { return filters().count(name) > 0; }

Value apply_filter(Interpreter& interp, const std::string& name, const Value& subject, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) interp.error(fmt::format("No filter named '{}'.", name));
  // Filters walk a string subject (decode, strip, count) and may build a string of any size;
  // map() calls them per element, outside eval().
  interp.step(kCallSteps);
  if (subject.type == Type::String) interp.charge_decode(subject.string.size());
  Value result = it->second(interp, subject, args);
  interp.charge_bytes(result.string.size());
  return result;
}

}  // namespace velocity::jinja
