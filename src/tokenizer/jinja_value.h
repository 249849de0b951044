// The dynamic value of the Jinja interpreter: Python's object model cut down to what chat
// templates use. Lists, dicts and namespaces have reference semantics (shared), like Python;
// everything else is a plain value. Strings are UTF-8; operations that Python defines on code
// points (len, indexing, slicing) decode on the fly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace velocity::jinja {

class Interpreter;
struct Value;

enum class Type : uint8_t {
  Undefined,  // jinja2.Undefined: prints "", iterates empty, errors on attribute access
  None,
  Bool,
  Int,
  Float,
  String,
  List,
  Tuple,
  Dict,
  Namespace,  // jinja2 namespace(): a dict whose keys are assignable attributes
  Callable,   // macro, builtin function or bound method
  Generator,  // what map/select/items filters return: iterable once, no len(), not JSON
};

// Insertion-ordered dict; string keys are indexed, other keys are searched linearly.
struct Dict {
  std::vector<std::pair<Value, Value>> items;
  uint32_t depth = 1;  // container nesting, for kMaxValueDepth
  std::unordered_map<std::string, size_t> string_index;

  const Value* find(const Value& key) const;
  void set(const Value& key, Value value);
  void set(const std::string& key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Callable {
  std::string name;
  bool is_macro = false;  // prints as <Macro 'name'>
  std::function<Value(Interpreter&, CallArgs&)> call;
};

struct Value {
  Type type = Type::Undefined;
  bool markup = false;  // a String marked safe (markupsafe.Markup); `+` escapes the other side
  uint32_t depth = 0;   // List/Tuple/Generator nesting (1 + deepest item), for kMaxValueDepth
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::string string;  // String; for Undefined, the hint used in error messages
  std::shared_ptr<std::vector<Value>> list;  // List, Tuple, Generator (items not yet consumed)
  std::shared_ptr<Dict> dict;                // Dict, Namespace
  std::shared_ptr<Callable> callable;

  Value() = default;
  static Value undefined(std::string hint = {});
  static Value none();
  static Value from_bool(bool b);
  static Value from_int(int64_t i);
  static Value from_float(double d);
  static Value from_string(std::string s, bool is_markup = false);
  static Value new_list(std::vector<Value> items = {});
  static Value new_tuple(std::vector<Value> items);
  static Value new_generator(std::vector<Value> items);
  static Value new_dict();
  static Value new_namespace();
  static Value function(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn);

  bool is_undefined() const { return type == Type::Undefined; }
  bool is_none() const { return type == Type::None; }
  bool is_string() const { return type == Type::String; }
  bool is_number() const { return type == Type::Int || type == Type::Float || type == Type::Bool; }
  bool is_sequence() const { return type == Type::List || type == Type::Tuple; }
  bool is_mapping() const { return type == Type::Dict; }
  bool truthy() const;
  double as_double() const;  // Int, Float, Bool
};

// Python str(x) of a value (what {{ x }} prints) and repr(x) (used inside containers).
std::string to_str(const Value& v);
std::string to_repr(const Value& v);
std::string python_float_repr(double d);
std::string python_string_repr(std::string_view s);
// Python type name, for error messages ("'int' object ...").
const char* type_name(const Value& v);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys); throws velocity::Error on values
// JSON cannot hold (undefined, callables).
struct JsonOptions {
  bool ensure_ascii = false;
  int64_t indent = -1;  // -1: None (one line)
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonOptions& options);

// Python ==, and ordering (<) that throws velocity::Error on unorderable types.
bool values_equal(const Value& a, const Value& b);
bool values_less(const Value& a, const Value& b);

// UTF-8 helpers with Python code point semantics.
std::vector<uint32_t> utf8_decode(std::string_view s);
void utf8_append(std::string& out, uint32_t cp);
std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end);
size_t utf8_length(std::string_view s);
bool is_python_space(uint32_t cp);

// Nesting limit for containers, so self-built deep structures raise instead of overflowing the
// stack in the recursive walks (repr, json, ==, destruction).
inline constexpr int kMaxValueDepth = 400;
// Container nesting of v (0 for scalars).
uint32_t nesting(const Value& v);

}  // namespace velocity::jinja
