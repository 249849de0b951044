// jinja2 3.1 builtin tests (`x is defined`, `x is divisibleby 3`, ...).
#include <cmath>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/jinja_filters.h"
#include "tokenizer/jinja_render.h"

namespace velocity::jinja {
namespace {

using Test = bool (*)(Interpreter&, const Value&, CallArgs&);

Value only_arg(Interpreter& interp, CallArgs& args, const char* test, const char* name) {
  ArgReader r(interp, args, test);
  Value v = r.get(0, name);
  r.done(1);
  if (v.is_undefined() && !r.has(0, name)) interp.error(fmt::format("{}() missing required argument '{}'", test, name));
  return v;
}

void no_args(Interpreter& interp, CallArgs& args, const char* test) { ArgReader(interp, args, test).done(0); }

bool compare(Interpreter& interp, const Value& a, const Value& b, const char* op) {
  if (a.is_undefined()) interp.raise_undefined(a);
  if (b.is_undefined()) interp.raise_undefined(b);
  try {
    if (op[0] == '<') return op[1] ? !values_less(b, a, interp.meter()) : values_less(a, b, interp.meter());
    return op[1] ? !values_less(a, b, interp.meter()) : values_less(b, a, interp.meter());
  } catch (const Error& e) {
    interp.error(e.what());
  }
}

Value modulo(Interpreter& interp, const Value& v, const Value& n) { return binary_operator(interp, "%", v, n); }

const std::unordered_map<std::string, Test>& tests() {
  static const std::unordered_map<std::string, Test> table = {
      {"defined", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "defined"); return !v.is_undefined(); }},
      {"undefined", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "undefined"); return v.is_undefined(); }},
      {"none", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "none"); return v.is_none(); }},
      {"boolean", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "boolean"); return v.type == Type::Bool; }},
      {"true", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "true"); return v.type == Type::Bool && v.boolean; }},
      {"false", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "false"); return v.type == Type::Bool && !v.boolean; }},
      {"integer", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "integer"); return v.type == Type::Int; }},
      {"float", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "float"); return v.type == Type::Float; }},
      {"number", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "number"); return v.is_number(); }},
      {"string", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "string"); return v.is_string(); }},
      {"mapping", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "mapping"); return v.type == Type::Dict; }},
      {"sequence", [](Interpreter& i, const Value& v, CallArgs& a) {
         no_args(i, a, "sequence");
         return v.is_string() || v.is_sequence() || v.type == Type::Dict || v.is_undefined();
       }},
      {"iterable", [](Interpreter& i, const Value& v, CallArgs& a) {
         no_args(i, a, "iterable");
         return v.is_string() || v.is_sequence() || v.type == Type::Dict || v.is_undefined() ||
                v.type == Type::Generator;
       }},
      {"callable", [](Interpreter& i, const Value& v, CallArgs& a) {
         no_args(i, a, "callable");
         return v.type == Type::Callable || v.is_undefined();
       }},
      {"escaped", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "escaped"); return v.is_string() && v.markup; }},
      {"lower", [](Interpreter& i, const Value& v, CallArgs& a) {
         no_args(i, a, "lower");
         CallArgs none;
         return i.call(get_method(i, Value::from_string(to_str(v, i.meter())), "islower"), none).truthy();
       }},
      {"upper", [](Interpreter& i, const Value& v, CallArgs& a) {
         no_args(i, a, "upper");
         CallArgs none;
         return i.call(get_method(i, Value::from_string(to_str(v, i.meter())), "isupper"), none).truthy();
       }},
      {"odd", [](Interpreter& i, const Value& v, CallArgs& a) {
         no_args(i, a, "odd");
         return modulo(i, v, Value::from_int(2)).as_double() == 1.0;
       }},
      {"even", [](Interpreter& i, const Value& v, CallArgs& a) {
         no_args(i, a, "even");
         return modulo(i, v, Value::from_int(2)).as_double() == 0.0;
       }},
      {"divisibleby", [](Interpreter& i, const Value& v, CallArgs& a) {
         return modulo(i, v, only_arg(i, a, "divisibleby", "num")).as_double() == 0.0;
       }},
      {"in", [](Interpreter& i, const Value& v, CallArgs& a) { return contains(i, only_arg(i, a, "in", "seq"), v); }},
      {"sameas", [](Interpreter& i, const Value& v, CallArgs& a) {
         Value other = only_arg(i, a, "sameas", "other");
         if (v.type != other.type) return false;
         switch (v.type) {
           case Type::None:
           case Type::Undefined: return true;
           case Type::Bool: return v.boolean == other.boolean;
           case Type::List:
           case Type::Tuple: return v.list == other.list;
           case Type::Dict:
           case Type::Namespace: return v.dict == other.dict;
           case Type::Callable: return v.callable == other.callable;
           default: return values_equal(v, other, i.meter());
         }
       }},
      {"eq", [](Interpreter& i, const Value& v, CallArgs& a) { return values_equal(v, only_arg(i, a, "eq", "other"), i.meter()); }},
      {"ne", [](Interpreter& i, const Value& v, CallArgs& a) { return !values_equal(v, only_arg(i, a, "ne", "other"), i.meter()); }},
      {"lt", [](Interpreter& i, const Value& v, CallArgs& a) { return compare(i, v, only_arg(i, a, "lt", "other"), "<"); }},
      {"le", [](Interpreter& i, const Value& v, CallArgs& a) { return compare(i, v, only_arg(i, a, "le", "other"), "<="); }},
      {"gt", [](Interpreter& i, const Value& v, CallArgs& a) { return compare(i, v, only_arg(i, a, "gt", "other"), ">"); }},
      {"ge", [](Interpreter& i, const Value& v, CallArgs& a) { return compare(i, v, only_arg(i, a, "ge", "other"), ">="); }},
      {"filter", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "filter"); return v.is_string() && has_filter(v.string); }},
      {"test", [](Interpreter& i, const Value& v, CallArgs& a) { no_args(i, a, "test"); return v.is_string() && has_test(v.string); }},
  };
  return table;
}

const char* alias(const std::string& name) {
  if (name == "==" || name == "equalto") return "eq";
  if (name == "!=") return "ne";
  if (name == "<" || name == "lessthan") return "lt";
  if (name == "<=") return "le";
  if (name == ">" || name == "greaterthan") return "gt";
  if (name == ">=") return "ge";
  return nullptr;
}

}  // namespace

bool has_test(const std::string& name) { return alias(name) || tests().count(name) > 0; }

bool apply_test(Interpreter& interp, const std::string& name, const Value& subject, CallArgs& args) {
  const char* a = alias(name);
  auto it = tests().find(a ? std::string(a) : name);
  if (it == tests().end()) interp.error(fmt::format("No test named '{}'.", name));
  interp.step(kCallSteps);
  return it->second(interp, subject, args);
}

}  // namespace velocity::jinja
