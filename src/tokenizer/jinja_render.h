// Tree-walking interpreter for parsed templates. Scoping follows jinja2: `set` in a for body is
// local to that iteration, `if` opens no scope, macros close over the scope they are defined in
// (reading its variables live at call time) and get a fresh scope per call.
//
// Hostile templates are bounded: output bytes, work steps (one per expression, statement and loop
// iteration evaluated, per item in bulk operations, per kBytesPerStep bytes of string work and
// output), macro call depth; exceeding one raises velocity::Error naming the template position.
// A render polls its cancel flag as it counts steps and throws velocity::Cancelled once it is set.
#pragma once

#include <atomic>
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

// Steps charged per call of a macro, builtin, method, filter or test, beyond its expressions.
inline constexpr uint64_t kCallSteps = 4;

// The defaults, measured in a Release build on the 2-core development machine: the fixture
// templates (../shared/fixtures/templates) render a 64-message conversation with tools in 4.7k to
// 11.3k steps (gpt-oss-120b the most), about 1% of max_steps. The costliest of ~60 adversarial
// templates (nested empty loops, loop objects, macro trees, method and filter calls, searching,
// slicing and copying 8 MB strings, exponential repr / JSON / ==, quadratic dicts) spend up to
// ~165 ns a step there with the machine shared by other builds (~100 ns when quieter), so a
// hostile render ends within ~0.17 s. Writing max_output_bytes costs 262k steps.
struct RenderOptions {
  uint64_t max_output_bytes = 16ull << 20;  // rendered text, also any captured sub-output
  uint64_t max_steps = 1'000'000;           // expressions + statements + iterations + items + bytes
  int max_call_depth = 100;                 // nested macro / caller() calls
  int max_eval_depth = 1000;                // nested statement + expression evaluation
  // Seconds since the Unix epoch that strftime_now() formats (in UTC); unset: the current
  // local time, as transformers' datetime.now().
  std::optional<int64_t> fixed_time;
};

// What one render used (filled also when it fails).
struct RenderStats {
  uint64_t steps = 0;
  uint64_t output_bytes = 0;  // size of the rendered text (0 when the render failed)
};

// Per-render control: a flag that abandons the render (set when the client disconnects or
// shutdown begins; the render throws velocity::Cancelled), and where to report its usage.
struct RenderControl {
  const std::atomic<bool>* cancel = nullptr;
  RenderStats* stats = nullptr;
  // The clock strftime_now() reads (seconds since the Unix epoch, shown in local time), so that
  // several renders of one prompt agree; unset: the current time. RenderOptions::fixed_time wins.
  std::optional<int64_t> now;
};

class Interpreter {
 public:
  explicit Interpreter(RenderOptions options, RenderControl control = {});
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `t` with the top-level names in `globals` (a Dict value).
  std::string render(const Template& t, const Value& globals);

  // Throws velocity::Error("template:L:C: message") at the position being evaluated.
  [[noreturn]] void error(std::string_view message) const;
  // Counts `n` units of work against max_steps (and polls the cancel flag).
  void step(uint64_t n = 1) { meter_.add(n); }
  // Counts string work: bytes copied, searched or compared; bytes decoded to code points.
  void charge_bytes(uint64_t n) { meter_.add_bytes(n); }
  void charge_decode(uint64_t n) { meter_.add_decode(n); }
  // Counts copying `items`: a step each, and the bytes of the strings among them.
  void charge_items(const std::vector<Value>& items);
  // Guards sizes of strings and lists built by operators and filters (and polls the cancel flag).
  void check_size(uint64_t bytes) const;
  // The budget the walks over values (compare, repr, JSON) charge.
  WorkMeter* meter() { return &meter_; }
  const RenderOptions& options() const { return options_; }
  const RenderControl& control() const { return control_; }

  // jinja2 sandbox semantics of `obj.name` and `obj[key]`.
  Value get_attr(const Value& object, const std::string& name);
  Value get_item(const Value& object, const Value& key);
  Value call(const Value& callee, CallArgs& args);
  // Elements a for loop (or a filter) walks: list items, dict keys, string characters; charged.
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
  // Whether a for loop's body mentions `loop` (the per-iteration object is built only then).
  bool body_mentions_loop(const Stmt& for_stmt);
  Value eval(const Expr& e);
  Value eval_expression(const Expr& e);
  Value eval_binary(const Expr& e);
  Value eval_compare(const Expr& e);
  Value eval_slice(const Expr& e);
  Value eval_call(const Expr& e, const Value* caller);
  CallArgs eval_args(const Expr& e, size_t first);
  Value lookup(const std::string& name);
  void assign(const Expr& target, const Value& value);
  void write(std::string_view text);
  std::string capture(const std::vector<StmtPtr>& body, std::shared_ptr<Scope> scope);
  Value make_macro(const Stmt& s, bool is_caller);
  void install_globals(Scope& scope);

  RenderOptions options_;
  RenderControl control_;
  WorkMeter meter_;
  std::shared_ptr<Scope> scope_;
  std::string* out_ = nullptr;
  int call_depth_ = 0;
  int eval_depth_ = 0;
  int line_ = 0;
  int column_ = 0;
  const Value* filter_subject_ = nullptr;  // innermost subject of a filter block chain
  std::vector<std::shared_ptr<Scope>> closure_scopes_;
  std::vector<std::shared_ptr<Dict>> namespaces_;
  std::unordered_map<const Stmt*, bool> loop_mentioned_;  // body_mentions_loop, per for statement
};

// Python's binary operators on values (+ - * / // % **), raising like CPython.
Value binary_operator(Interpreter& interp, const std::string& op, const Value& left, const Value& right);
// Python's `needle in haystack`.
bool contains(Interpreter& interp, const Value& haystack, const Value& needle);

}  // namespace velocity::jinja
