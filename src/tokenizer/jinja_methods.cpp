// Methods of str, dict and list values as CPython defines them, and argument binding.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja_filters.h"
#include "tokenizer/jinja_render.h"

namespace velocity::jinja {

ArgReader::ArgReader(Interpreter& interp, CallArgs& args, const char* function)
    : interp_(interp), args_(args), function_(function), used_keywords_(args.keyword.size(), false) {}

bool ArgReader::has(size_t index, const char* name) const {
  if (index < args_.positional.size()) return true;
  for (const auto& [k, v] : args_.keyword)
    if (k == name) return true;
  return false;
}

Value ArgReader::get(size_t index, const char* name, Value fallback) {
  for (size_t i = 0; i < args_.keyword.size(); ++i) {
    if (args_.keyword[i].first != name) continue;
    if (index < args_.positional.size())
      interp_.error(fmt::format("{}() got multiple values for argument '{}'", function_, name));
    used_keywords_[i] = true;
    return args_.keyword[i].second;
  }
  if (index < args_.positional.size()) return args_.positional[index];
  return fallback;
}

void ArgReader::done(size_t n_params) {
  if (args_.positional.size() > n_params)
    interp_.error(fmt::format("{}() takes at most {} arguments ({} given)", function_, n_params,
                              args_.positional.size()));
  for (size_t i = 0; i < args_.keyword.size(); ++i)
    if (!used_keywords_[i])
      interp_.error(fmt::format("{}() got an unexpected keyword argument '{}'", function_, args_.keyword[i].first));
}

namespace {

uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
uint32_t ascii_upper(uint32_t c) { return c >= 'a' && c <= 'z' ? c - 32 : c; }
bool is_alpha(uint32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xc0 && c != 0xd7 && c != 0xf7 && !is_python_space(c)); }
bool is_digit(uint32_t c) { return c >= '0' && c <= '9'; }

std::string map_chars(const std::string& s, uint32_t (*f)(uint32_t)) {
  std::string out = s;
  for (char& c : out) c = static_cast<char>(f(static_cast<unsigned char>(c)));
  return out;
}

std::string str_title(const std::string& s) {
  std::string out;
  bool previous_cased = false;
  for (uint32_t cp : utf8_decode(s)) {
    bool cased = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    utf8_append(out, cased ? (previous_cased ? ascii_lower(cp) : ascii_upper(cp)) : cp);
    previous_cased = cased || (cp >= 0xc0 && is_alpha(cp));
  }
  return out;
}

std::string str_capitalize(const std::string& s) {
  std::string out = map_chars(s, [](uint32_t c) { return ascii_lower(c); });
  if (!out.empty()) out[0] = static_cast<char>(ascii_upper(static_cast<unsigned char>(out[0])));
  return out;
}

// Python str.find over code points; returns the code point index or -1.
int64_t str_find(const std::string& hay, const std::string& needle, const Value& start_v, const Value& end_v, bool reverse) {
  auto h = utf8_decode(hay);
  auto n = static_cast<int64_t>(h.size());
  auto bound = [&](const Value& v, int64_t fallback) {
    if (v.type != Type::Int && v.type != Type::Bool) return fallback;
    int64_t x = v.type == Type::Bool ? v.boolean : v.integer;
    if (x < 0) x = std::max<int64_t>(0, x + n);
    return std::min(x, n);
  };
  int64_t start = bound(start_v, 0), end = bound(end_v, n);
  if (start > end) return -1;
  std::string window = utf8_encode(h, static_cast<size_t>(start), static_cast<size_t>(end));
  size_t pos = reverse ? rfind_text(window, needle) : find_text(window, needle);
  if (pos == std::string::npos) return -1;
  return start + static_cast<int64_t>(utf8_length(std::string_view(window).substr(0, pos)));
}

bool affix_match(Interpreter& interp, const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) {
    if (!a.is_string()) interp.error(fmt::format("{} first arg must be str or a tuple of str, not {}", prefix ? "startswith" : "endswith", type_name(a)));
    if (a.string.size() > s.size()) return false;
    return prefix ? s.compare(0, a.string.size(), a.string) == 0
                  : s.compare(s.size() - a.string.size(), a.string.size(), a.string) == 0;
  };
  if (affix.type == Type::Tuple) {
    for (const auto& a : *affix.list)
      if (one(a)) return true;
    return false;
  }
  return one(affix);
}

std::vector<std::string> splitlines(Interpreter& interp, const std::string& s, bool keepends) {
  std::vector<std::string> lines;
  auto cps = utf8_decode(s);
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    uint32_t c = cps[i];
    bool is_break = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d ||
                    c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!is_break) continue;
    size_t end = i;
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    interp.step();  // per line, as they are built
    lines.push_back(utf8_encode(cps, start, keepends ? i + 1 : end));
    start = i + 1;
  }
  if (start < cps.size()) lines.push_back(utf8_encode(cps, start, cps.size()));
  return lines;
}

Value string_list(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::from_string(std::move(p)));
  return Value::new_list(std::move(items));
}

// Python's format(value, spec) for the common mini-language: [[fill]align][sign][0][width]
// [,][.precision][type] with types s d x X o b f F e E g G %.
std::string apply_format_spec(Interpreter& interp, const Value& v, const std::string& spec) {
  if (spec.empty()) return to_str(v, interp.meter());
  size_t i = 0;
  std::string fill = " ";
  char align = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '=' || c == '^'; };
  auto cps = utf8_decode(spec);
  if (cps.size() >= 2 && cps[1] < 0x80 && is_align(static_cast<char>(cps[1]))) {
    fill.clear();
    utf8_append(fill, cps[0]);
    std::string first;
    utf8_append(first, cps[0]);
    i = first.size();
    align = spec[i++];
  } else if (is_align(spec[0])) {
    align = spec[i++];
  }
  char sign = 0;
  if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) sign = spec[i++];
  if (i < spec.size() && spec[i] == '#') interp.error("'#' in format specs is not supported");
  if (i < spec.size() && spec[i] == '0') {
    if (!align) {
      fill = "0";
      align = '=';
    }
    ++i;
  }
  size_t width = 0;
  while (i < spec.size() && is_digit(static_cast<unsigned char>(spec[i]))) width = std::min<size_t>(width * 10 + static_cast<size_t>(spec[i++] - '0'), 100000);
  bool grouping = i < spec.size() && spec[i] == ',';
  if (grouping) ++i;
  int precision = -1;
  if (i < spec.size() && spec[i] == '.') {
    precision = 0;
    ++i;
    while (i < spec.size() && is_digit(static_cast<unsigned char>(spec[i]))) precision = std::min(precision * 10 + (spec[i++] - '0'), 1000);
  }
  char type = i < spec.size() ? spec[i++] : 0;
  if (i != spec.size()) interp.error("Invalid format specifier");
  std::string body, prefix;
  if (v.is_string() && (type == 0 || type == 's')) {
    body = v.string;
    if (precision >= 0) {
      auto chars = utf8_decode(body);
      if (chars.size() > static_cast<size_t>(precision)) body = utf8_encode(chars, 0, static_cast<size_t>(precision));
    }
    if (!align) align = '<';
  } else if (v.is_number() && !(v.type == Type::Bool && type == 0)) {
    bool as_float = v.type == Type::Float || std::string_view("fFeEgG%").find(type) != std::string_view::npos;
    if (type == 's' || (!as_float && std::string_view("dxXobn").find(type) == std::string_view::npos && type != 0))
      interp.error(fmt::format("Unknown format code '{}' for object of type '{}'", type, type_name(v)));
    double d = v.as_double();
    bool negative = as_float ? std::signbit(d) : (v.type == Type::Int && v.integer < 0);
    if (as_float) {
      double x = std::fabs(d);
      char conv = type == 0 ? 'r' : type == '%' ? 'f' : type;
      if (type == '%') x *= 100;
      if (conv == 'r') body = precision < 0 ? python_float_repr(x) : fmt::format("{:.{}g}", x, precision);
      else body = fmt::format(fmt::runtime(fmt::format("{{:.{}{}}}", precision < 0 ? 6 : precision, conv)), x);
      if (type == '%') body += "%";
    } else {
      uint64_t magnitude = v.type == Type::Bool ? static_cast<uint64_t>(v.boolean)
                           : negative ? 0 - static_cast<uint64_t>(v.integer) : static_cast<uint64_t>(v.integer);
      char conv = type == 0 || type == 'n' ? 'd' : type;
      body = fmt::format(fmt::runtime(fmt::format("{{:{}}}", conv)), magnitude);
    }
    if (grouping) {
      size_t end = body.find_first_of(".eE%");
      if (end == std::string::npos) end = body.size();
      for (size_t k = end; k > 3; k -= 3) body.insert(k - 3, ",");
    }
    prefix = negative ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
    if (!align) align = '>';
  } else {
    if (type != 0 && type != 's') interp.error(fmt::format("Unknown format code '{}' for object of type '{}'", type, type_name(v)));
    body = to_str(v, interp.meter());
    if (!align) align = '<';
  }
  size_t len = utf8_length(prefix) + utf8_length(body);
  size_t pad = width > len ? width - len : 0;
  auto fill_n = [&](size_t n) { return repeat_text(fill, n); };
  switch (align) {
    case '<': return prefix + body + fill_n(pad);
    case '^': return fill_n(pad / 2) + prefix + body + fill_n(pad - pad / 2);
    case '=': return prefix + fill_n(pad) + body;
    default: return fill_n(pad) + prefix + body;
  }
}

// Python str.format with positional / named fields, !s / !r conversions and format specs.
std::string str_format(Interpreter& interp, const std::string& format, CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c == '}' ) {
      if (i + 1 < format.size() && format[i + 1] == '}') ++i;
      else interp.error("Single '}' encountered in format string");
      out.push_back('}');
      continue;
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    size_t close = format.find('}', i);
    if (close == std::string::npos) interp.error("Single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    i = close;
    std::string spec;
    char conversion = 0;
    if (size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 2 != field.size() || (field[bang + 1] != 's' && field[bang + 1] != 'r'))
        interp.error("Invalid conversion specifier in str.format");
      conversion = field[bang + 1];
      field.resize(bang);
    }
    if (field.find_first_of(".[{") != std::string::npos || spec.find('{') != std::string::npos)
      interp.error("attribute, index and nested fields in str.format are not supported");
    Value v;
    if (field.empty() || std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      size_t index = field.empty() ? auto_index++ : std::stoul(field.substr(0, 9));
      if (index >= args.positional.size()) interp.error("Replacement index out of range for positional args tuple");
      v = args.positional[index];
    } else {
      bool found = false;
      for (auto& [k, val] : args.keyword)
        if (k == field) {
          v = val;
          found = true;
        }
      if (!found) interp.error("KeyError: '" + field + "'");
    }
    if (conversion) v = Value::from_string(conversion == 'r' ? to_repr(v, interp.meter()) : to_str(v, interp.meter()));
    out += apply_format_spec(interp, v, spec);
    interp.check_size(out.size());
  }
  return out;
}

Value unsafe(const Value& object, const std::string& name) {
  return Value::undefined(fmt::format("access to attribute '{}' of '{}' object is unsafe.", name, type_name(object)));
}

using Method = Value (*)(Interpreter&, const Value&, CallArgs&);

Value string_method(Interpreter& interp, const std::string& name, const Value& self, CallArgs& args) {
  const std::string& s = self.string;
  // Every method but an unbounded startswith/endswith walks or decodes the whole string.
  if (name != "startswith" && name != "endswith") interp.charge_decode(s.size());
  ArgReader r(interp, args, name.c_str());
  auto str_arg = [&](size_t i, const char* n) {
    Value v = r.get(i, n);
    if (!v.is_string()) interp.error(fmt::format("{}() argument must be str, not {}", name, type_name(v)));
    return v.string;
  };
  if (name == "startswith" || name == "endswith") {
    Value affix = r.get(0, "prefix");
    Value start = r.get(1, "start"), end = r.get(2, "end");
    r.done(3);
    std::string window = s;
    if (start.type == Type::Int || end.type == Type::Int) {
      interp.charge_decode(s.size());
      auto cps = utf8_decode(s);
      auto n = static_cast<int64_t>(cps.size());
      auto bound = [&](const Value& v, int64_t fallback) {
        if (v.type != Type::Int) return fallback;
        int64_t x = v.integer < 0 ? std::max<int64_t>(0, v.integer + n) : std::min(v.integer, n);
        return x;
      };
      int64_t a = bound(start, 0), b = bound(end, n);
      if (a > b) return Value::from_bool(false);
      window = utf8_encode(cps, static_cast<size_t>(a), static_cast<size_t>(b));
    }
    return Value::from_bool(affix_match(interp, window, affix, name == "startswith"));
  }
  if (name == "split" || name == "rsplit") {
    Value sep = r.get(0, "sep", Value::none());
    Value maxsplit = r.get(1, "maxsplit", Value::from_int(-1));
    r.done(2);
    if (maxsplit.type != Type::Int && maxsplit.type != Type::Bool) interp.error("maxsplit must be an integer");
    return string_list(python_split(interp, s, sep, maxsplit.type == Type::Bool ? maxsplit.boolean : maxsplit.integer, name == "rsplit"));  // charged there
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Value chars = r.get(0, "chars", Value::none());
    r.done(1);
    if (!chars.is_none() && !chars.is_string()) interp.error(fmt::format("{} arg must be None or str", name));
    return Value::from_string(python_strip(s, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "lower" || name == "upper" || name == "title" || name == "capitalize" || name == "swapcase") {
    r.done(0);
    if (name == "lower") return Value::from_string(map_chars(s, [](uint32_t c) { return ascii_lower(c); }));
    if (name == "upper") return Value::from_string(map_chars(s, [](uint32_t c) { return ascii_upper(c); }));
    if (name == "title") return Value::from_string(str_title(s));
    if (name == "capitalize") return Value::from_string(str_capitalize(s));
    return Value::from_string(map_chars(s, [](uint32_t c) { return c >= 'a' && c <= 'z' ? c - 32 : ascii_lower(c); }));
  }
  if (name == "replace") {
    std::string old_s = str_arg(0, "old"), new_s = str_arg(1, "new");
    Value count_v = r.get(2, "count", Value::from_int(-1));
    r.done(3);
    int64_t count = count_v.type == Type::Int ? count_v.integer : -1;
    std::string out;
    if (old_s.empty()) {
      auto cps = utf8_decode(s);
      int64_t done = 0;
      for (size_t i = 0; i <= cps.size(); ++i) {
        if (count < 0 || done < count) {
          out += new_s;
          ++done;
        }
        if (i < cps.size()) utf8_append(out, cps[i]);
        interp.check_size(out.size());
      }
      return Value::from_string(std::move(out));
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      size_t hit = find_text(s, old_s, pos);
      if (hit == std::string::npos) break;
      out.append(s, pos, hit - pos);
      out += new_s;
      interp.check_size(out.size());
      pos = hit + old_s.size();
      ++done;
    }
    out.append(s, pos, std::string::npos);
    interp.check_size(out.size());
    return Value::from_string(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    std::string sub = str_arg(0, "sub");
    Value start = r.get(1, "start"), end = r.get(2, "end");
    r.done(3);
    int64_t at = str_find(s, sub, start, end, name[0] == 'r');
    if (at < 0 && (name == "index" || name == "rindex")) interp.error("substring not found");
    return Value::from_int(at);
  }
  if (name == "count") {
    std::string sub = str_arg(0, "sub");
    r.done(1);
    if (sub.empty()) return Value::from_int(static_cast<int64_t>(utf8_length(s)) + 1);
    int64_t n = 0;
    for (size_t pos = find_text(s, sub); pos != std::string::npos; pos = find_text(s, sub, pos + sub.size())) ++n;
    return Value::from_int(n);
  }
  if (name == "join") {
    Value items = r.get(0, "iterable");
    r.done(1);
    std::string out;
    bool first = true;
    for (const Value& item : interp.iterate(items)) {
      if (!item.is_string()) interp.error(fmt::format("sequence item: expected str instance, {} found", type_name(item)));
      if (!first) out += s;
      first = false;
      out += item.string;
      interp.check_size(out.size());
    }
    return Value::from_string(std::move(out));
  }
  if (name == "splitlines") {
    Value keepends = r.get(0, "keepends", Value::from_bool(false));
    r.done(1);
    return string_list(splitlines(interp, s, keepends.truthy()));
  }
  if (name == "format") return Value::from_string(str_format(interp, s, args));
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric" || name == "isalpha" ||
      name == "isalnum" || name == "isspace" || name == "islower" || name == "isupper") {
    r.done(0);
    auto cps = utf8_decode(s);
    if (cps.empty()) return Value::from_bool(false);
    if (name == "islower" || name == "isupper") {
      bool lower = name == "islower", any_cased = false;
      for (uint32_t c : cps) {
        if (c >= 'a' && c <= 'z') {
          if (!lower) return Value::from_bool(false);
          any_cased = true;
        } else if (c >= 'A' && c <= 'Z') {
          if (lower) return Value::from_bool(false);
          any_cased = true;
        }
      }
      return Value::from_bool(any_cased);
    }
    for (uint32_t c : cps) {
      bool ok = name == "isspace" ? is_python_space(c)
              : name == "isalpha" ? is_alpha(c)
              : name == "isalnum" ? (is_alpha(c) || is_digit(c))
                                  : is_digit(c);
      if (!ok) return Value::from_bool(false);
    }
    return Value::from_bool(true);
  }
  if (name == "center" || name == "ljust" || name == "rjust" || name == "zfill") {
    Value width_v = r.get(0, "width");
    Value fill_v = name == "zfill" ? Value::from_string("0") : r.get(1, "fillchar", Value::from_string(" "));
    r.done(name == "zfill" ? 1 : 2);
    if (width_v.type != Type::Int) interp.error("width must be an integer");
    if (!fill_v.is_string() || utf8_length(fill_v.string) != 1) interp.error("The fill character must be exactly one character long");
    int64_t len = static_cast<int64_t>(utf8_length(s));
    int64_t pad = width_v.integer - len;
    if (pad <= 0) return self;
    interp.check_size(static_cast<uint64_t>(width_v.integer) * fill_v.string.size());
    auto fill = [&](int64_t n) { return repeat_text(fill_v.string, static_cast<size_t>(n)); };
    if (name == "ljust") return Value::from_string(s + fill(pad));
    if (name == "rjust") return Value::from_string(fill(pad) + s);
    if (name == "zfill") {
      if (!s.empty() && (s[0] == '-' || s[0] == '+')) return Value::from_string(s.substr(0, 1) + fill(pad) + s.substr(1));
      return Value::from_string(fill(pad) + s);
    }
    int64_t left = pad / 2 + (pad & width_v.integer & 1);
    return Value::from_string(fill(left) + s + fill(pad - left));
  }
  interp.error(fmt::format("'str' object has no attribute '{}'", name));
}

const char* const kStringMethods[] = {
    "startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip", "lower", "upper",
    "title", "capitalize", "swapcase", "replace", "find", "rfind", "index", "rindex", "count",
    "join", "splitlines", "format", "isdigit", "isdecimal", "isnumeric", "isalpha", "isalnum",
    "isspace", "islower", "isupper", "center", "ljust", "rjust", "zfill"};

}  // namespace

std::vector<std::string> python_split(Interpreter& interp, const std::string& s, const Value& sep,
                                      int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (sep.is_none() || sep.is_undefined()) {
    auto cps = utf8_decode(s);
    // Whitespace split: runs of whitespace separate, no empty strings.
    std::vector<std::pair<size_t, size_t>> words;
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && is_python_space(cps[i])) ++i;
      if (i >= cps.size()) break;
      size_t start = i;
      while (i < cps.size() && !is_python_space(cps[i])) ++i;
      interp.step();  // per word, as they are found
      words.emplace_back(start, i);
    }
    if (maxsplit < 0 || static_cast<size_t>(maxsplit) + 1 >= words.size()) {
      for (auto [a, b] : words) parts.push_back(utf8_encode(cps, a, b));
      return parts;
    }
    auto m = static_cast<size_t>(maxsplit);
    if (!from_right) {
      for (size_t w = 0; w < m; ++w) parts.push_back(utf8_encode(cps, words[w].first, words[w].second));
      parts.push_back(utf8_encode(cps, words[m].first, cps.size()));
    } else {
      size_t first = words.size() - m;
      parts.push_back(utf8_encode(cps, 0, words[first - 1].second));
      for (size_t w = first; w < words.size(); ++w) parts.push_back(utf8_encode(cps, words[w].first, words[w].second));
    }
    return parts;
  }
  if (!sep.is_string()) interp.error(fmt::format("must be str or None, not {}", type_name(sep)));
  const std::string& d = sep.string;
  if (d.empty()) interp.error("empty separator");
  const size_t limit = maxsplit < 0 ? SIZE_MAX : static_cast<size_t>(maxsplit);
  std::vector<size_t> hits;
  if (!from_right) {
    for (size_t pos = find_text(s, d); pos != std::string::npos && hits.size() < limit; pos = find_text(s, d, pos + d.size())) {
      interp.step();  // per part, as they are found
      hits.push_back(pos);
    }
  } else {
    // rsplit takes separators from the right (which differs for overlapping ones: 'aaa' by 'aa'):
    // the matches of the reversed separator in the reversed string, read back from the end.
    const std::string reversed(s.rbegin(), s.rend()), reversed_sep(d.rbegin(), d.rend());
    for (size_t pos = find_text(reversed, reversed_sep); pos != std::string::npos && hits.size() < limit;
         pos = find_text(reversed, reversed_sep, pos + d.size())) {
      interp.step();
      hits.push_back(s.size() - pos - d.size());
    }
    std::reverse(hits.begin(), hits.end());
  }
  size_t start = 0;
  for (size_t h : hits) {
    parts.push_back(s.substr(start, h - start));
    start = h + d.size();
  }
  parts.push_back(s.substr(start));
  return parts;
}

std::string python_strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto cps = utf8_decode(s);
  std::vector<uint32_t> set;
  bool whitespace = !chars.is_string();
  if (!whitespace) set = utf8_decode(chars.string);
  auto strip_it = [&](uint32_t c) {
    return whitespace ? is_python_space(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t a = 0, b = cps.size();
  if (left)
    while (a < b && strip_it(cps[a])) ++a;
  if (right)
    while (b > a && strip_it(cps[b - 1])) --b;
  return utf8_encode(cps, a, b);
}

Value get_method(Interpreter& interp, const Value& object, const std::string& name) {
  if (!name.empty() && name[0] == '_') {
    if (object.type == Type::Dict || object.type == Type::Namespace) return Value::undefined();
    return unsafe(object, name);
  }
  if (object.is_string()) {
    for (const char* m : kStringMethods) {
      if (name != m) continue;
      interp.step(kCallSteps);  // a bound method: a callable holding a copy of the string
      Value self = object;
      return Value::function(name, [self, name](Interpreter& in, CallArgs& args) {
        return string_method(in, name, self, args);
      });
    }
    return Value::undefined();
  }
  if (object.type == Type::Dict) {
    if (name == "pop" || name == "popitem" || name == "setdefault" || name == "update" || name == "clear")
      return unsafe(object, name);
    if (name != "items" && name != "keys" && name != "values" && name != "get" && name != "copy")
      return Value::undefined();
    interp.step(kCallSteps);
    Value self = object;
    return Value::function(name, [self, name](Interpreter& in, CallArgs& args) {
      ArgReader r(in, args, name.c_str());
      if (name == "get") {
        Value key = r.get(0, "key");
        Value fallback = r.get(1, "default", Value::none());
        r.done(2);
        if (key.type == Type::List || key.type == Type::Dict) in.error("unhashable type");
        const Value* v = self.dict->find(key, in.meter());
        return v ? *v : fallback;
      }
      r.done(0);
      // Every method left copies the items: a step per pair and its strings' bytes.
      uint64_t string_bytes = 0;
      for (const auto& [k, v] : self.dict->items) string_bytes += k.string.size() + v.string.size();
      in.step(self.dict->items.size() + string_bytes / kBytesPerStep);
      if (name == "copy") {
        Value d = Value::new_dict();
        *d.dict = *self.dict;
        return d;
      }
      std::vector<Value> out;
      for (const auto& [k, v] : self.dict->items) {
        if (name == "items") out.push_back(Value::new_tuple({k, v}));
        else out.push_back(name == "keys" ? k : v);
      }
      return Value::new_list(std::move(out));
    });
  }
  if (object.is_sequence()) {
    if (name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
        name == "reverse" || name == "sort" || name == "clear")
      return object.type == Type::List ? unsafe(object, name) : Value::undefined();
    if (name != "index" && name != "count" && !(name == "copy" && object.type == Type::List))
      return Value::undefined();
    interp.step(kCallSteps);
    Value self = object;
    return Value::function(name, [self, name](Interpreter& in, CallArgs& args) {
      ArgReader r(in, args, name.c_str());
      if (name == "copy") {
        r.done(0);
        in.charge_items(*self.list);
        return Value::new_list(*self.list);
      }
      Value needle = r.get(0, "value");
      r.done(1);
      in.step(self.list->size());
      int64_t count = 0;
      for (size_t i = 0; i < self.list->size(); ++i) {
        if (!values_equal((*self.list)[i], needle, in.meter())) continue;
        if (name == "index") return Value::from_int(static_cast<int64_t>(i));
        ++count;
      }
      if (name == "index") in.error(fmt::format("{} is not in list", to_repr(needle, in.meter())));
      return Value::from_int(count);
    });
  }
  return Value::undefined();
}

}  // namespace velocity::jinja
