// Builtin filters, tests, globals and the methods of str / dict / list values, with the
// semantics of jinja2 3.1 filters and CPython's str methods.
#pragma once

#include <string>

#include "tokenizer/jinja_value.h"

namespace velocity::jinja {

bool has_filter(const std::string& name);
bool has_test(const std::string& name);

Value apply_filter(Interpreter& interp, const std::string& name, const Value& subject, CallArgs& args);
bool apply_test(Interpreter& interp, const std::string& name, const Value& subject, CallArgs& args);

// A bound method of a str, dict or list value (`s.split`, `d.items`), or Undefined when the
// type has no such method. Methods that mutate (list.append, dict.update) raise, as in jinja2's
// ImmutableSandboxedEnvironment.
Value get_method(Interpreter& interp, const Value& object, const std::string& name);

// Python str.split(sep, maxsplit) / rsplit; sep empty means any whitespace.
std::vector<std::string> python_split(Interpreter& interp, const std::string& s, const Value& sep,
                                      int64_t maxsplit, bool from_right);
// Python str.strip/lstrip/rstrip with an optional character set (None: whitespace).
std::string python_strip(const std::string& s, const Value& chars, bool left, bool right);

// HTML escaping of jinja2's `escape` filter and of Markup concatenation: & < > " '.
std::string html_escape(const std::string& s);

// Reads call arguments by position or keyword, as Python binds them.
class ArgReader {
 public:
  ArgReader(Interpreter& interp, CallArgs& args, const char* function);
  // Argument at `index` or named `name`; `fallback` when absent.
  Value get(size_t index, const char* name, Value fallback = Value::undefined());
  bool has(size_t index, const char* name) const;
  // Raises on positional arguments past `n_params` or keywords not consumed.
  void done(size_t n_params);

 private:
  Interpreter& interp_;
  CallArgs& args_;
  const char* function_;
  std::vector<bool> used_keywords_;
};

}  // namespace velocity::jinja
