// The dynamic value of the Jinja interpreter: Python's object model cut down to what chat
// templates use. Lists, dicts and namespaces have reference semantics (shared), like Python;
// everything else is a plain value. Strings are UTF-8; operations that Python defines on code
// points (len, indexing, slicing) decode on the fly.
#pragma once

#include <atomic>
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

// Bytes of string work that count as one step: copying, searching, comparing (kBytesPerStep),
// and decoding to code points, which costs more per byte (kDecodeBytesPerStep).
inline constexpr uint64_t kBytesPerStep = 64;
inline constexpr uint64_t kDecodeBytesPerStep = 16;

// The work budget of one render. The interpreter charges a step per statement, expression, loop
// iteration and container element it touches, and string bytes in blocks (above); the walks over
// values below (==, <, repr, JSON, dict lookups by non-string keys) charge every node and string
// they visit, so no single step does unbounded work. A null WorkMeter* means "not counted" (values
// built outside a render, such as the request context).
struct WorkMeter {
  uint64_t steps = 0;
  uint64_t max_steps = UINT64_MAX;
  uint64_t max_bytes = UINT64_MAX;            // longest string a walk may build (repr, JSON)
  const std::atomic<bool>* cancel = nullptr;  // polled every 1024 steps

  // Throws velocity::Error past max_steps, velocity::Cancelled once *cancel is set.
  void add(uint64_t n) {
    const uint64_t before = steps;
    steps = n > UINT64_MAX - steps ? UINT64_MAX : steps + n;
    if (steps > max_steps || (steps >> 10) != (before >> 10)) check();
  }
  void add_bytes(uint64_t n) { add(n / kBytesPerStep); }
  void add_decode(uint64_t n) { add(n / kDecodeBytesPerStep); }
  // Throws as add() does (limit first, then the cancel flag).
  void check() const;
  // Throws velocity::Error when a built string exceeds max_bytes.
  void check_bytes(uint64_t n) const;
};

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

  // Keys other than strings are compared one by one, each comparison charged to `meter`.
  const Value* find(const Value& key, WorkMeter* meter) const;
  void set(const Value& key, Value value, WorkMeter* meter);
  void set(const std::string& key, Value value);
  size_t n_other_keys() const;  // keys that are not strings
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
std::string to_str(const Value& v, WorkMeter* meter);
std::string to_repr(const Value& v, WorkMeter* meter);
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
std::string to_json(const Value& v, const JsonOptions& options, WorkMeter* meter);

// Python ==, and ordering (<) that throws velocity::Error on unorderable types.
bool values_equal(const Value& a, const Value& b, WorkMeter* meter);
bool values_less(const Value& a, const Value& b, WorkMeter* meter);

// UTF-8 helpers with Python code point semantics.
std::vector<uint32_t> utf8_decode(std::string_view s);
void utf8_append(std::string& out, uint32_t cp);
std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end);
size_t utf8_length(std::string_view s);
bool is_python_space(uint32_t cp);
// Byte offset of the first (last) occurrence of `needle` in `haystack` at or after `from`, or
// npos: linear time in both lengths (std::string::find is O(n*m) on inputs like "aaa...ab").
size_t find_text(std::string_view haystack, std::string_view needle, size_t from = 0);
size_t rfind_text(std::string_view haystack, std::string_view needle);
// `s` repeated `n` times, built by doubling (memcpy speed, not one append per copy).
std::string repeat_text(std::string_view s, size_t n);

// Nesting limit for containers, so self-built deep structures raise instead of overflowing the
// stack in the recursive walks (repr, json, ==, destruction).
inline constexpr int kMaxValueDepth = 400;
// Container nesting of v (0 for scalars).
uint32_t nesting(const Value& v);

}  // namespace velocity::jinja
