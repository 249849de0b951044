// Python's arithmetic operators, `in`, printf-style `%` formatting, and the template globals
// (range, namespace, dict, joiner, raise_exception, strftime_now).
#include <cmath>
#include <ctime>

#include "core/error.h"
#include "tokenizer/jinja_filters.h"
#include "tokenizer/jinja_render.h"

// printf-style formatting and strftime take their format from the template by design; the
// specs are validated (flags, width, precision, one conversion) before use.
#pragma GCC diagnostic ignored "-Wformat-nonliteral"

namespace velocity::jinja {
namespace {

bool is_intlike(const Value& v) { return v.type == Type::Int || v.type == Type::Bool; }
int64_t as_int(const Value& v) { return v.type == Type::Bool ? v.boolean : v.integer; }

[[noreturn]] void unsupported(Interpreter& interp, const std::string& op, const Value& a, const Value& b) {
  interp.error(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b)));
}

Value repeat(Interpreter& interp, const Value& seq, int64_t count) {
  if (count <= 0) return seq.is_string() ? Value::from_string("") : seq.type == Type::List ? Value::new_list() : Value::new_tuple({});
  if (seq.is_string()) {
    uint64_t total = static_cast<uint64_t>(seq.string.size()) * static_cast<uint64_t>(count);
    if (!seq.string.empty() && total / seq.string.size() != static_cast<uint64_t>(count)) interp.check_size(UINT64_MAX);
    interp.check_size(total);
    interp.charge_bytes(total);
    return Value::from_string(repeat_text(seq.string, static_cast<size_t>(count)));
  }
  uint64_t total = static_cast<uint64_t>(seq.list->size()) * static_cast<uint64_t>(count);
  if (!seq.list->empty() && total / seq.list->size() != static_cast<uint64_t>(count)) interp.check_size(UINT64_MAX);
  // Each copy of a string item is a copy of its bytes: [s] * n holds n copies of s.
  uint64_t string_bytes = 0;  // strings, and undefined values' messages
  for (const Value& item : *seq.list) string_bytes += item.string.size();
  interp.step(total);  // first: bounds `total` before the multiplications below
  interp.check_size(total * 16);
  interp.check_size(string_bytes * static_cast<uint64_t>(count));
  interp.charge_bytes(string_bytes * static_cast<uint64_t>(count));
  std::vector<Value> out;
  for (int64_t i = 0; i < count; ++i) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return seq.type == Type::List ? Value::new_list(std::move(out)) : Value::new_tuple(std::move(out));
}

// CPython float_divmod.
void float_divmod(double vx, double wx, double& div, double& mod) {
  mod = std::fmod(vx, wx);
  div = (vx - mod) / wx;
  if (mod != 0.0) {
    if ((wx < 0) != (mod < 0)) {
      mod += wx;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, wx);
  }
  if (div != 0.0) {
    double floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
    div = floordiv;
  } else {
    div = std::copysign(0.0, vx / wx);
  }
}

// printf-style `format % values` (the subset of conversions templates use).
std::string percent_format(Interpreter& interp, const std::string& format, const Value& values) {
  if (values.type == Type::Tuple) interp.charge_items(*values.list);
  std::vector<Value> args = values.type == Type::Tuple ? *values.list : std::vector<Value>{values};
  const Value* mapping = values.type == Type::Dict ? &values : nullptr;
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (++i >= format.size()) interp.error("incomplete format");
    Value arg;
    bool have_arg = false;
    if (format[i] == '(') {
      size_t close = format.find(')', i);
      if (close == std::string::npos || !mapping) interp.error("format requires a mapping");
      const Value* v = mapping->dict->find(Value::from_string(format.substr(i + 1, close - i - 1)), interp.meter());
      if (!v) interp.error("format key not found");
      arg = *v;
      have_arg = true;
      i = close + 1;
    }
    std::string spec = "%";
    while (i < format.size() && std::string("-+ 0#").find(format[i]) != std::string::npos) spec.push_back(format[i++]);
    while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i]))) spec.push_back(format[i++]);
    if (i < format.size() && format[i] == '.') {
      spec.push_back(format[i++]);
      while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i]))) spec.push_back(format[i++]);
    }
    if (spec.size() > 12) interp.error("format specification too long");
    if (i >= format.size()) interp.error("incomplete format");
    char conv = format[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (!have_arg) {
      if (mapping) arg = values;
      else if (next < args.size()) arg = args[next++];
      else interp.error("not enough arguments for format string");
    }
    char buf[512];
    switch (conv) {
      case 's':
      case 'r': {
        std::string s = conv == 's' ? to_str(arg, interp.meter()) : to_repr(arg, interp.meter());
        // Width/precision apply to code points in Python; apply them by hand.
        std::string body = s;
        size_t dot = spec.find('.');
        if (dot != std::string::npos) {
          size_t precision = std::strtoul(spec.c_str() + dot + 1, nullptr, 10);
          auto cps = utf8_decode(body);
          if (cps.size() > precision) body = utf8_encode(cps, 0, precision);
        }
        size_t width = std::strtoul(spec.c_str() + 1 + std::strspn(spec.c_str() + 1, "-+ 0#"), nullptr, 10);
        interp.check_size(width);  // "%99999999999s" would allocate the padding first
        size_t len = utf8_length(body);
        std::string pad = len < width ? std::string(width - len, ' ') : "";
        out += spec.find('-') != std::string::npos ? body + pad : pad + body;
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o': {
        if (!arg.is_number()) interp.error(fmt::format("%{} format: a real number is required, not {}", conv, type_name(arg)));
        auto n = static_cast<long long>(arg.type == Type::Float ? std::trunc(arg.number) : as_int(arg));
        spec += "ll";
        spec.push_back(conv == 'i' ? 'd' : conv);
        std::snprintf(buf, sizeof buf, spec.c_str(), n);
        out += buf;
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!arg.is_number()) interp.error(fmt::format("must be real number, not {}", type_name(arg)));
        spec.push_back(conv);
        std::snprintf(buf, sizeof buf, spec.c_str(), arg.as_double());
        out += buf;
        break;
      }
      default: interp.error(fmt::format("unsupported format character '{}'", conv));
    }
    interp.check_size(out.size());
  }
  if (!mapping && next < args.size()) interp.error("not all arguments converted during string formatting");
  return out;
}

}  // namespace

Value binary_operator(Interpreter& interp, const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) interp.raise_undefined(a);
  if (b.is_undefined()) interp.raise_undefined(b);
  const bool numbers = a.is_number() && b.is_number();
  const bool floats = numbers && (a.type == Type::Float || b.type == Type::Float);
  if (op == "+") {
    if (floats) return Value::from_float(a.as_double() + b.as_double());
    if (numbers) {
      int64_t r;
      if (__builtin_add_overflow(as_int(a), as_int(b), &r)) interp.error("integer overflow");
      return Value::from_int(r);
    }
    if (a.is_string() && b.is_string()) {
      bool markup = a.markup || b.markup;
      std::string left = a.markup || !markup ? a.string : html_escape(a.string);
      std::string right = b.markup || !markup ? b.string : html_escape(b.string);
      interp.check_size(left.size() + right.size());
      interp.charge_bytes(left.size() + right.size());
      return Value::from_string(left + right, markup);
    }
    if (a.type == b.type && a.is_sequence()) {
      interp.charge_items(*a.list);
      interp.charge_items(*b.list);
      std::vector<Value> items = *a.list;
      items.insert(items.end(), b.list->begin(), b.list->end());
      return a.type == Type::List ? Value::new_list(std::move(items)) : Value::new_tuple(std::move(items));
    }
    if (a.is_string() && !b.is_string())
      interp.error(fmt::format("can only concatenate str (not \"{}\") to str", type_name(b)));
    unsupported(interp, op, a, b);
  }
  if (op == "-") {
    if (floats) return Value::from_float(a.as_double() - b.as_double());
    if (numbers) {
      int64_t r;
      if (__builtin_sub_overflow(as_int(a), as_int(b), &r)) interp.error("integer overflow");
      return Value::from_int(r);
    }
    unsupported(interp, op, a, b);
  }
  if (op == "*") {
    if (floats) return Value::from_float(a.as_double() * b.as_double());
    if (numbers) {
      int64_t r;
      if (__builtin_mul_overflow(as_int(a), as_int(b), &r)) interp.error("integer overflow");
      return Value::from_int(r);
    }
    if ((a.is_string() || a.is_sequence()) && is_intlike(b)) return repeat(interp, a, as_int(b));
    if ((b.is_string() || b.is_sequence()) && is_intlike(a)) return repeat(interp, b, as_int(a));
    unsupported(interp, op, a, b);
  }
  if (op == "/") {
    if (!numbers) unsupported(interp, op, a, b);
    if (b.as_double() == 0.0) interp.error("division by zero");
    return Value::from_float(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) return Value::from_string(percent_format(interp, a.string, b));
    if (!numbers) unsupported(interp, op, a, b);
    if (floats) {
      if (b.as_double() == 0.0) interp.error("float division by zero");
      double div, mod;
      float_divmod(a.as_double(), b.as_double(), div, mod);
      return Value::from_float(op == "//" ? div : mod);
    }
    int64_t x = as_int(a), y = as_int(b);
    if (y == 0) interp.error("integer division or modulo by zero");
    if (x == INT64_MIN && y == -1) {
      if (op == "%") return Value::from_int(0);
      interp.error("integer overflow");
    }
    int64_t q = x / y, r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) {
      q -= 1;
      r += y;
    }
    return Value::from_int(op == "//" ? q : r);
  }
  if (op == "**") {
    if (!numbers) unsupported(interp, op, a, b);
    if (!floats && as_int(b) >= 0) {
      int64_t base = as_int(a), exp = as_int(b), r = 1;
      while (exp > 0) {
        if (exp & 1) {
          if (__builtin_mul_overflow(r, base, &r)) interp.error("integer overflow");
        }
        exp >>= 1;
        if (exp > 0 && __builtin_mul_overflow(base, base, &base)) interp.error("integer overflow");
      }
      return Value::from_int(r);
    }
    if (a.as_double() == 0.0 && b.as_double() < 0) interp.error("0.0 cannot be raised to a negative power");
    double r = std::pow(a.as_double(), b.as_double());
    if (std::isnan(r) && !std::isnan(a.as_double()) && !std::isnan(b.as_double()))
      interp.error("math domain error (complex result)");
    if (std::isinf(r) && std::isfinite(a.as_double()) && std::isfinite(b.as_double()))
      interp.error("numerical result out of range");
    return Value::from_float(r);
  }
  interp.error("unknown operator " + op);
}

bool contains(Interpreter& interp, const Value& haystack, const Value& needle) {
  switch (haystack.type) {
    case Type::Undefined: return false;
    case Type::String:
      if (!needle.is_string())
        interp.error(fmt::format("'in <string>' requires string as left operand, not {}", type_name(needle)));
      // A search costs up to a few nanoseconds per byte on inputs like "aaa...ab".
      interp.charge_decode(haystack.string.size());
      return find_text(haystack.string, needle.string) != std::string::npos;
    case Type::List:
    case Type::Tuple:
      interp.step(haystack.list->size());
      for (const auto& item : *haystack.list)
        if (values_equal(item, needle, interp.meter())) return true;
      return false;
    case Type::Generator:
      for (const auto& item : interp.iterate(haystack))
        if (values_equal(item, needle, interp.meter())) return true;
      return false;
    case Type::Dict:
      if (needle.type == Type::List || needle.type == Type::Dict)
        interp.error(fmt::format("unhashable type: '{}'", type_name(needle)));
      return haystack.dict->find(needle, interp.meter()) != nullptr;
    default: interp.error(fmt::format("argument of type '{}' is not iterable", type_name(haystack)));
  }
}

void Interpreter::install_globals(Scope& scope) {
  scope.vars["range"] = Value::function("range", [](Interpreter& interp, CallArgs& args) {
    if (!args.keyword.empty()) interp.error("range() takes no keyword arguments");
    for (const auto& a : args.positional)
      if (!is_intlike(a)) interp.error(fmt::format("'{}' object cannot be interpreted as an integer", type_name(a)));
    int64_t start = 0, stop = 0, step_n = 1;
    const auto& p = args.positional;
    if (p.size() == 1) stop = as_int(p[0]);
    else if (p.size() == 2 || p.size() == 3) {
      start = as_int(p[0]);
      stop = as_int(p[1]);
      if (p.size() == 3) step_n = as_int(p[2]);
    } else {
      interp.error(fmt::format("range expected at most 3 arguments, got {}", p.size()));
    }
    if (step_n == 0) interp.error("range() arg 3 must not be zero");
    // The sandbox's limit (jinja2.sandbox.MAX_RANGE).
    constexpr long double kMaxRange = 100000;
    long double n = step_n > 0 ? std::ceil((static_cast<long double>(stop) - start) / step_n)
                               : std::ceil((static_cast<long double>(start) - stop) / -static_cast<long double>(step_n));
    if (n > kMaxRange)
      interp.error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    const int64_t count = n > 0 ? static_cast<int64_t>(n) : 0;
    interp.step(static_cast<uint64_t>(count));
    std::vector<Value> items;
    items.reserve(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) items.push_back(Value::from_int(start + i * step_n));
    return Value::new_list(std::move(items));
  });
  auto fill_dict = [](Interpreter& interp, CallArgs& args, Value& target) {
    if (args.positional.size() > 1) interp.error("expected at most 1 positional argument");
    if (!args.positional.empty()) {
      const Value& src = args.positional[0];
      // Each pair copied is a step and its strings' bytes; keys other than strings are compared
      // with every such key already there (charged by Dict::set).
      auto charge_pair = [&interp](const Value& k, const Value& v) {
        interp.step(1 + (k.string.size() + v.string.size()) / kBytesPerStep);
      };
      if (src.type == Type::Dict || src.type == Type::Namespace) {
        for (const auto& [k, v] : src.dict->items) {
          charge_pair(k, v);
          target.dict->set(k, v, interp.meter());
        }
      } else {
        for (const Value& pair : interp.iterate(src)) {
          if (!pair.is_sequence() || pair.list->size() != 2)
            interp.error("dictionary update sequence element has the wrong length");
          charge_pair((*pair.list)[0], (*pair.list)[1]);
          target.dict->set((*pair.list)[0], (*pair.list)[1], interp.meter());
        }
      }
    }
    for (auto& [k, v] : args.keyword) target.dict->set(k, v);
  };
  scope.vars["namespace"] = Value::function("namespace", [fill_dict](Interpreter& interp, CallArgs& args) {
    Value ns = interp.make_namespace();
    fill_dict(interp, args, ns);
    return ns;
  });
  scope.vars["dict"] = Value::function("dict", [fill_dict](Interpreter& interp, CallArgs& args) {
    Value d = Value::new_dict();
    fill_dict(interp, args, d);
    return d;
  });
  scope.vars["joiner"] = Value::function("joiner", [](Interpreter& interp, CallArgs& args) {
    ArgReader reader(interp, args, "joiner");
    std::string sep = to_str(reader.get(0, "sep", Value::from_string(", ")), interp.meter());
    reader.done(1);
    auto used = std::make_shared<bool>(false);
    return Value::function("joiner", [sep, used](Interpreter&, CallArgs&) {
      if (!*used) {
        *used = true;
        return Value::from_string("");
      }
      return Value::from_string(sep);
    });
  });
  scope.vars["raise_exception"] = Value::function("raise_exception", [](Interpreter& interp, CallArgs& args) -> Value {
    interp.error(args.positional.empty() ? std::string("raise_exception") : to_str(args.positional[0], interp.meter()));
  });
  scope.vars["strftime_now"] = Value::function("strftime_now", [](Interpreter& interp, CallArgs& args) {
    ArgReader reader(interp, args, "strftime_now");
    Value format = reader.get(0, "format");
    reader.done(1);
    if (!format.is_string()) interp.error("strftime() argument 1 must be str");
    std::tm tm{};
    if (interp.options().fixed_time) {
      auto t = static_cast<std::time_t>(*interp.options().fixed_time);
      gmtime_r(&t, &tm);
    } else {
      std::time_t t = interp.control().now ? static_cast<std::time_t>(*interp.control().now) : std::time(nullptr);
      localtime_r(&t, &tm);
    }
    if (format.string.empty()) return Value::from_string("");
    interp.charge_decode(format.string.size());
    // A conversion expands to at most a few dozen bytes; the buffer stops at the output limit.
    const uint64_t wanted = static_cast<uint64_t>(format.string.size()) * 16 + 256;
    const bool capped = wanted > interp.options().max_output_bytes + 1;
    std::vector<char> buf(capped ? interp.options().max_output_bytes + 1 : wanted);
    size_t n = std::strftime(buf.data(), buf.size(), format.string.c_str(), &tm);
    if (n == 0 && capped) interp.check_size(buf.size());
    return Value::from_string(std::string(buf.data(), n));
  });
}

}  // namespace velocity::jinja
