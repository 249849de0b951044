// Tree-walking interpreter for parsed templates. Scoping follows jinja2: `set` in a for body is
// local to that iteration, `if` opens no scope, macros close over the scope they are defined in
// (reading its variables live at call time) and get a fresh scope per call.
//
// Hostile templates are bounded: output bytes, work steps (one per expression and statement
// evaluated, plus per item in bulk operations), macro call depth; exceeding one raises
// velocity::Error naming the template position.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace velocity::jinja {

struct RenderOptions {
  uint64_t max_output_bytes = 16ull << 20;  // rendered text, also any captured sub-output
  uint64_t max_steps = 50'000'000;          // expressions + statements + bulk items evaluated
  int max_call_depth = 100;                 // nested macro / caller() calls
  int max_eval_depth = 1000;                // nested statement + expression evaluation
  // Seconds since the Unix epoch that strftime_now() formats (in UTC); unset: the current
  // local time, as transformers' datetime.now().
  std::optional<int64_t> fixed_time;
};

class Interpreter {
 public:
  explicit Interpreter(RenderOptions options);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `t` with the top-level names in `globals` (a Dict value).
  std::string render(const Template& t, const Value& globals);

  // Throws velocity::Error("template:L:C: message") at the position being evaluated.
  [[noreturn]] void error(std::string_view message) const;
  // Counts `n` units of work against max_steps.
  void step(uint64_t n = 1);
  // Guards sizes of strings and lists built by operators and filters.
  void check_size(uint64_t bytes) const;
  const RenderOptions& options() const { return options_; }

  // jinja2 sandbox semantics of `obj.name` and `obj[key]`.
  Value get_attr(const Value& object, const std::string& name);
  Value get_item(const Value& object, const Value& key);
  Value call(const Value& callee, CallArgs& args);
  // Elements a for loop (or a filter) walks: list items, dict keys, string characters.
  std::vector<Value> iterate(const Value& v);
  // Raises the error an undefined value carries (its hint), as jinja2's Undefined does on use.
  [[noreturn]] void raise_undefined(const Value& v) const;
  // A namespace whose entries are cleared after rendering (breaks reference cycles).
  Value make_namespace();

 private:
  struct Scope {
    std::unordered_map<std::string, Value> vars;
    std::shared_ptr<Scope> parent;
  };
  enum class Flow { Normal, Break, Continue };
  struct DepthScope;

  Flow exec_block(const std::vector<StmtPtr>& body);
  Flow exec(const Stmt& s);
  Flow exec_for(const Stmt& s);
  void exec_macro(const Stmt& s);
  Value eval(const Expr& e);
  Value eval_binary(const Expr& e);
  Value eval_compare(const Expr& e);
  Value eval_slice(const Expr& e);
  Value eval_call(const Expr& e, const Value* caller);
  CallArgs eval_args(const Expr& e, size_t first);
  Value lookup(const std::string& name) const;
  void assign(const Expr& target, const Value& value);
  void write(std::string_view text);
  std::string capture(const std::vector<StmtPtr>& body, std::shared_ptr<Scope> scope);
  Value make_macro(const Stmt& s, bool is_caller);
  void install_globals(Scope& scope);

  RenderOptions options_;
  std::shared_ptr<Scope> scope_;
  std::string* out_ = nullptr;
  uint64_t steps_ = 0;
  int call_depth_ = 0;
  int eval_depth_ = 0;
  int line_ = 0;
  int column_ = 0;
  const Value* filter_subject_ = nullptr;  // innermost subject of a filter block chain
  std::vector<std::shared_ptr<Scope>> closure_scopes_;
  std::vector<std::shared_ptr<Dict>> namespaces_;
};

// Python's binary operators on values (+ - * / // % **), raising like CPython.
Value binary_operator(Interpreter& interp, const std::string& op, const Value& left, const Value& right);
// Python's `needle in haystack`.
bool contains(Interpreter& interp, const Value& haystack, const Value& needle);

}  // namespace velocity::jinja
