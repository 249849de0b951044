#include "tokenizer/jinja_render.h"

#include <ctime>

#include "core/error.h"
#include "tokenizer/jinja_filters.h"

namespace velocity::jinja {

Interpreter::Interpreter(RenderOptions options, RenderControl control)
    : options_(std::move(options)), control_(control) {
  meter_.max_steps = options_.max_steps;
  meter_.max_bytes = options_.max_output_bytes;
  meter_.cancel = control_.cancel;
}

Interpreter::~Interpreter() {
  // Macros capture the scope they are defined in, which holds them: clear those scopes (and
  // namespaces, which may hold themselves) so the cycles free.
  for (auto& scope : closure_scopes_) scope->vars.clear();
  for (auto& ns : namespaces_) {
    ns->items.clear();
    ns->string_index.clear();
  }
}

void Interpreter::error(std::string_view message) const {
  fail("template:{}:{}: {}", line_, column_, message);
}

void Interpreter::charge_items(const std::vector<Value>& items) {
  uint64_t string_bytes = 0;  // strings, and undefined values' messages
  for (const Value& item : items) string_bytes += item.string.size();
  step(items.size() + string_bytes / kBytesPerStep);
}

void Interpreter::check_size(uint64_t bytes) const {
  if (bytes > options_.max_output_bytes)
    error(fmt::format("template output exceeds the limit of {} bytes", options_.max_output_bytes));
  if (control_.cancel && control_.cancel->load(std::memory_order_relaxed))
    throw Cancelled("chat template rendering was cancelled");
}

void Interpreter::raise_undefined(const Value& v) const {
  error(v.string.empty() ? std::string("undefined value") : v.string);
}

Value Interpreter::make_namespace() {
  Value ns = Value::new_namespace();
  namespaces_.push_back(ns.dict);
  return ns;
}

std::string Interpreter::render(const Template& t, const Value& globals) {
  struct Report {
    const Interpreter& interp;
    const std::string* out = nullptr;
    ~Report() {
      if (!interp.control_.stats) return;
      interp.control_.stats->steps = interp.meter_.steps;
      interp.control_.stats->output_bytes = out ? out->size() : 0;
    }
  } report{*this};
  meter_.check();  // a request cancelled before its render starts
  auto global_scope = std::make_shared<Scope>();
  install_globals(*global_scope);
  if (globals.type == Type::Dict) {
    for (const auto& [k, v] : globals.dict->items)
      if (k.is_string()) global_scope->vars[k.string] = v;
  }
  scope_ = std::make_shared<Scope>();
  scope_->parent = global_scope;
  std::string out;
  out_ = &out;
  try {
    Flow flow = exec_block(t.body);
    if (flow != Flow::Normal) error("break or continue outside a loop");
  } catch (const Error& e) {
    // Errors raised below the interpreter (value nesting, JSON) get the template position.
    if (std::string_view(e.what()).rfind("template:", 0) == 0) throw;
    error(e.what());
  }
  out_ = nullptr;
  scope_.reset();
  report.out = &out;
  return out;
}

void Interpreter::write(std::string_view text) {
  charge_bytes(text.size());
  check_size(out_->size() + text.size());
  out_->append(text);
}

Value Interpreter::lookup(const std::string& name) {
  // Nested loops and macros make scope chains a few hundred long; a hash lookup in each costs
  // about a quarter of a step.
  uint64_t n_scopes = 0;
  for (const Scope* s = scope_.get(); s; s = s->parent.get(), ++n_scopes) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) {
      step(n_scopes / 4);
      return it->second;
    }
  }
  step(n_scopes / 4);
  return Value::undefined("'" + name + "' is undefined");
}

// ---- statements ----------------------------------------------------------------------------

Interpreter::Flow Interpreter::exec_block(const std::vector<StmtPtr>& body) {
  for (const auto& s : body) {
    Flow flow = exec(*s);
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

struct Interpreter::DepthScope {
  Interpreter& interp;
  explicit DepthScope(Interpreter& i) : interp(i) {
    if (++interp.eval_depth_ > interp.options_.max_eval_depth)
      interp.error(fmt::format("template evaluation nested deeper than {} levels", interp.options_.max_eval_depth));
  }
  ~DepthScope() { --interp.eval_depth_; }
};

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  DepthScope depth(*this);
  step();
  line_ = s.line;
  column_ = s.column;
  switch (s.kind) {
    case StmtKind::Data: write(s.text); break;
    case StmtKind::Print: {
      Value v = eval(*s.expr);
      if (v.is_string()) write(v.string);
      else write(to_str(v, &meter_));
      break;
    }
    case StmtKind::If:
      if (eval(*s.expr).truthy()) return exec_block(s.body);
      return exec_block(s.else_body);
    case StmtKind::For: return exec_for(s);
    case StmtKind::Set: assign(*s.target, eval(*s.expr)); break;
    case StmtKind::SetBlock: {
      Value v = Value::from_string(capture(s.body, scope_));
      if (s.filter) {
        const Value* saved = filter_subject_;
        filter_subject_ = &v;
        Value filtered = eval(*s.filter);
        filter_subject_ = saved;
        v = filtered;
      }
      assign(*s.target, v);
      break;
    }
    case StmtKind::Macro: exec_macro(s); break;
    case StmtKind::CallBlock: {
      Value caller = make_macro(s, /*is_caller=*/true);
      Value v = eval_call(*s.expr, &caller);
      write(to_str(v, &meter_));
      break;
    }
    case StmtKind::FilterBlock: {
      Value body = Value::from_string(capture(s.body, std::make_shared<Scope>(Scope{{}, scope_})));
      const Value* saved = filter_subject_;
      filter_subject_ = &body;
      Value v = eval(*s.expr);
      filter_subject_ = saved;
      write(to_str(v, &meter_));
      break;
    }
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
    case StmtKind::Generation: return exec_block(s.body);
  }
  return Flow::Normal;
}

std::string Interpreter::capture(const std::vector<StmtPtr>& body, std::shared_ptr<Scope> scope) {
  std::string buffer;
  std::string* saved_out = out_;
  auto saved_scope = scope_;
  out_ = &buffer;
  scope_ = std::move(scope);
  struct Restore {
    Interpreter& i;
    std::string* out;
    std::shared_ptr<Scope> scope;
    ~Restore() {
      i.out_ = out;
      i.scope_ = std::move(scope);
    }
  } restore{*this, saved_out, saved_scope};
  Flow flow = exec_block(body);
  if (flow != Flow::Normal) error("break or continue outside a loop");
  return buffer;
}

// Whether `loop` is read anywhere in an expression (a conservative answer is a correct one).
static bool mentions_loop(const Expr* e) {
  if (!e) return false;
  if (e->kind == ExprKind::Name && e->name == "loop") return true;
  for (const auto& c : e->children)
    if (mentions_loop(c.get())) return true;
  for (const auto& [key, value] : e->kwargs)
    if (mentions_loop(value.get())) return true;
  return false;
}

bool Interpreter::body_mentions_loop(const Stmt& for_stmt) {
  // Statements nested in it (macro bodies, inner loops) count too. Each for statement's answer
  // is kept, so a render scans every statement of the template at most once, like parsing it.
  if (auto it = loop_mentioned_.find(&for_stmt); it != loop_mentioned_.end()) return it->second;
  auto scan = [this](auto& self, const std::vector<StmtPtr>& body) -> bool {
    bool found = false;
    for (const auto& s : body) {
      found = found || mentions_loop(s->expr.get()) || mentions_loop(s->target.get()) || mentions_loop(s->filter.get());
      for (const auto& d : s->defaults) found = found || mentions_loop(d.get());
      // An inner loop's own answer is kept for when it runs; keep scanning to record them all.
      found = (s->kind == StmtKind::For ? body_mentions_loop(*s) : self(self, s->body)) || found;
      found = self(self, s->else_body) || found;
    }
    return found;
  };
  const bool found = scan(scan, for_stmt.body);
  loop_mentioned_[&for_stmt] = found;
  return found;
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s) {
  Value iterable = eval(*s.expr);
  if (iterable.type == Type::None || iterable.is_number() || iterable.type == Type::Callable ||
      iterable.type == Type::Namespace)
    error(fmt::format("'{}' object is not iterable", type_name(iterable)));
  // Lists and tuples never change in place (the sandbox has no append), so the loop walks the
  // value's own items; each iteration is charged below.
  std::shared_ptr<const std::vector<Value>> items =
      iterable.is_sequence() ? iterable.list : std::make_shared<const std::vector<Value>>(iterate(iterable));
  auto outer = scope_;
  struct Restore {
    Interpreter& i;
    std::shared_ptr<Scope> scope;
    ~Restore() { i.scope_ = std::move(scope); }
  } restore{*this, outer};
  // A fresh scope per iteration (a `set` in the body is local to it), recycled when nothing
  // (a macro's closure) kept the previous one: `keep` entries are overwritten, not dropped.
  auto next_scope = [&](size_t keep) {
    if (scope_ != outer && scope_.use_count() == 1) {
      if (s.target->kind != ExprKind::Name || scope_->vars.size() > keep) scope_->vars.clear();
    } else {
      scope_ = std::make_shared<Scope>(Scope{{}, outer});
    }
  };
  // A copy of an item is a copy of its string's bytes.
  auto charge_copy = [&](const Value& item) { charge_bytes(item.string.size()); };
  if (s.filter) {
    std::vector<Value> kept;
    for (const Value& item : *items) {
      step();  // an iteration of the loop's filter
      next_scope(1);
      charge_copy(item);
      assign(*s.target, item);
      if (eval(*s.filter).truthy()) {
        charge_copy(item);
        kept.push_back(item);
      }
    }
    items = std::make_shared<const std::vector<Value>>(std::move(kept));
    scope_ = outer;
  }
  const auto n = static_cast<int64_t>(items->size());
  // jinja2's LoopContext: one object per loop whose fields follow the iteration, built only when
  // the body can read it (it costs more than an empty iteration).
  enum LoopField : size_t { kIndex, kIndex0, kRevindex, kRevindex0, kFirst, kLast };
  Value loop;
  auto index0 = std::make_shared<int64_t>(0);
  if (n > 0 && body_mentions_loop(s)) {
    loop = Value::new_dict();
    Dict& d = *loop.dict;
    for (const char* field : {"index", "index0", "revindex", "revindex0", "first", "last", "previtem", "nextitem"})
      d.set(field, Value::none());
    d.set("cycle", Value::function("cycle", [index0](Interpreter& interp, CallArgs& args) {
            if (args.positional.empty()) interp.error("no items for cycling given");
            return args.positional[static_cast<size_t>(*index0) % args.positional.size()];
          }));
    d.set("length", Value::from_int(n));
    d.set("depth", Value::from_int(1));
    d.set("depth0", Value::from_int(0));
  }
  for (int64_t i = 0; i < n; ++i) {
    step();  // the iteration itself, so empty bodies count
    next_scope(loop.dict ? 2 : 1);
    const Value& item = (*items)[static_cast<size_t>(i)];
    if (loop.dict) {
      step(2);  // updating the loop object's fields
      auto& fields = loop.dict->items;
      *index0 = i;
      fields[kIndex].second = Value::from_int(i + 1);
      fields[kIndex0].second = Value::from_int(i);
      fields[kRevindex].second = Value::from_int(n - i);
      fields[kRevindex0].second = Value::from_int(n - i - 1);
      fields[kFirst].second = Value::from_bool(i == 0);
      fields[kLast].second = Value::from_bool(i == n - 1);
      // Through set(), which keeps the dict's nesting depth.
      if (i > 0) charge_copy((*items)[static_cast<size_t>(i - 1)]);
      if (i + 1 < n) charge_copy((*items)[static_cast<size_t>(i + 1)]);
      loop.dict->set("previtem", i > 0 ? (*items)[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item"));
      loop.dict->set("nextitem", i + 1 < n ? (*items)[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item"));
      scope_->vars["loop"] = loop;
    }
    charge_copy(item);
    assign(*s.target, item);
    Flow flow = exec_block(s.body);
    if (flow == Flow::Break) break;
  }
  scope_ = outer;
  if (n == 0) return exec_block(s.else_body);
  return Flow::Normal;
}

void Interpreter::assign(const Expr& target, const Value& value) {
  switch (target.kind) {
    case ExprKind::Name: scope_->vars[target.name] = value; return;
    case ExprKind::Tuple: {
      if (!value.is_sequence() && !value.is_string() && value.type != Type::Dict && value.type != Type::Generator)
        error(fmt::format("cannot unpack non-iterable {} object", type_name(value)));
      std::vector<Value> items = iterate(value);
      if (items.size() != target.children.size())
        error(items.size() > target.children.size()
                  ? fmt::format("too many values to unpack (expected {})", target.children.size())
                  : fmt::format("not enough values to unpack (expected {}, got {})",
                                target.children.size(), items.size()));
      for (size_t i = 0; i < items.size(); ++i) assign(*target.children[i], items[i]);
      return;
    }
    case ExprKind::Attr: {
      Value ns = lookup(target.children[0]->name);
      if (ns.type != Type::Namespace) error("cannot assign attribute on non-namespace object");
      ns.dict->set(target.name, value);
      return;
    }
    default: error("cannot assign to this expression");
  }
}

Value Interpreter::make_macro(const Stmt& s, bool is_caller) {
  auto closure = scope_;
  closure_scopes_.push_back(closure);
  const Stmt* def = &s;
  std::string name = is_caller ? "caller" : s.name;
  return Value::function(name, [this, def, closure, name](Interpreter&, CallArgs& args) {
    if (call_depth_ >= options_.max_call_depth)
      error(fmt::format("macro calls nested deeper than {}", options_.max_call_depth));
    auto scope = std::make_shared<Scope>(Scope{{}, closure});
    std::vector<Value> varargs;
    for (size_t i = 0; i < args.positional.size(); ++i) {
      if (i < def->params.size()) scope->vars[def->params[i]] = args.positional[i];
      else varargs.push_back(args.positional[i]);
    }
    if (!varargs.empty() && !def->uses_varargs)
      error(fmt::format("macro '{}' takes not more than {} argument(s)", name, def->params.size()));
    Value kwargs = Value::new_dict();
    for (auto& [key, v] : args.keyword) {
      bool is_param = false;
      for (size_t i = 0; i < def->params.size(); ++i) {
        if (def->params[i] != key) continue;
        if (i < args.positional.size()) error(fmt::format("macro '{}' got multiple values for argument '{}'", name, key));
        scope->vars[key] = v;
        is_param = true;
      }
      if (is_param) continue;
      if (key == "caller" && def->uses_caller) {
        scope->vars["caller"] = v;
      } else if (def->uses_kwargs) {
        kwargs.dict->set(key, v);
      } else {
        error(fmt::format("macro '{}' takes no keyword argument '{}'", name, key));
      }
    }
    ++call_depth_;
    struct Depth {
      int& d;
      ~Depth() { --d; }
    } depth{call_depth_};
    // Defaults are evaluated in the call's scope, so they may refer to earlier parameters.
    auto saved_scope = scope_;
    scope_ = scope;
    for (size_t i = 0; i < def->params.size(); ++i) {
      if (scope->vars.count(def->params[i])) continue;
      scope->vars[def->params[i]] =
          def->defaults[i] ? eval(*def->defaults[i])
                           : Value::undefined(fmt::format("parameter '{}' was not provided", def->params[i]));
    }
    scope_ = saved_scope;
    scope->vars["varargs"] = Value::new_tuple(std::move(varargs));
    scope->vars["kwargs"] = kwargs;
    return Value::from_string(capture(def->body, scope));
  });
}

void Interpreter::exec_macro(const Stmt& s) {
  Value macro = make_macro(s, false);
  macro.callable->is_macro = true;
  scope_->vars[s.name] = macro;
}

// ---- expressions ---------------------------------------------------------------------------

Value Interpreter::eval(const Expr& e) {
  Value v = eval_expression(e);
  // Strings are values: every expression that yields one has copied it at least once (also an
  // undefined value's message, which may quote a key of any size).
  charge_bytes(v.string.size());
  return v;
}

Value Interpreter::eval_expression(const Expr& e) {
  DepthScope depth(*this);
  step();
  line_ = e.line;
  column_ = e.column;
  switch (e.kind) {
    case ExprKind::Literal: return e.literal;
    case ExprKind::Name: return lookup(e.name);
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.children.size());
      for (const auto& c : e.children) items.push_back(eval(*c));
      return e.kind == ExprKind::List ? Value::new_list(std::move(items)) : Value::new_tuple(std::move(items));
    }
    case ExprKind::Dict: {
      Value d = Value::new_dict();
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        Value key = eval(*e.children[i]);
        Value value = eval(*e.children[i + 1]);
        if (key.type == Type::List || key.type == Type::Dict || key.type == Type::Namespace) {
          line_ = e.line;
          column_ = e.column;
          error(fmt::format("unhashable type: '{}'", type_name(key)));
        }
        d.dict->set(key, std::move(value), &meter_);
      }
      return d;
    }
    case ExprKind::Attr: {
      Value object = eval(*e.children[0]);
      line_ = e.line;
      column_ = e.column;
      return get_attr(object, e.name);
    }
    case ExprKind::Item: {
      Value object = eval(*e.children[0]);
      Value key = eval(*e.children[1]);
      line_ = e.line;
      column_ = e.column;
      return get_item(object, key);
    }
    case ExprKind::Slice: return eval_slice(e);
    case ExprKind::Call: return eval_call(e, nullptr);
    case ExprKind::Filter: {
      Value subject;
      if (e.children[0]) subject = eval(*e.children[0]);
      else if (filter_subject_) subject = *filter_subject_;
      CallArgs args = eval_args(e, 1);
      line_ = e.line;
      column_ = e.column;
      return apply_filter(*this, e.name, subject, args);
    }
    case ExprKind::Test: {
      Value subject = eval(*e.children[0]);
      CallArgs args = eval_args(e, 1);
      line_ = e.line;
      column_ = e.column;
      return Value::from_bool(apply_test(*this, e.name, subject, args));
    }
    case ExprKind::Unary: {
      Value v = eval(*e.children[0]);
      line_ = e.line;
      column_ = e.column;
      if (e.name == "not") return Value::from_bool(!v.truthy());
      if (v.is_undefined()) raise_undefined(v);
      if (v.type == Type::Float) return Value::from_float(e.name == "-" ? -v.number : v.number);
      if (v.type == Type::Int || v.type == Type::Bool) {
        int64_t x = v.type == Type::Bool ? v.boolean : v.integer;
        if (e.name == "+") return Value::from_int(x);
        if (x == INT64_MIN) error("integer overflow");
        return Value::from_int(-x);
      }
      error(fmt::format("bad operand type for unary {}: '{}'", e.name, type_name(v)));
    }
    case ExprKind::Binary: return eval_binary(e);
    case ExprKind::Compare: return eval_compare(e);
    case ExprKind::Cond:
      if (eval(*e.children[1]).truthy()) return eval(*e.children[0]);
      if (e.children[2]) return eval(*e.children[2]);
      return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
  }
  error("unknown expression");
}

Value Interpreter::eval_binary(const Expr& e) {
  Value left = eval(*e.children[0]);
  if (e.name == "and") return left.truthy() ? eval(*e.children[1]) : left;
  if (e.name == "or") return left.truthy() ? left : eval(*e.children[1]);
  Value right = eval(*e.children[1]);
  line_ = e.line;
  column_ = e.column;
  if (e.name == "~") {
    std::string s = to_str(left, &meter_);
    s += to_str(right, &meter_);
    check_size(s.size());
    return Value::from_string(std::move(s));
  }
  return binary_operator(*this, e.name, left, right);
}

Value Interpreter::eval_compare(const Expr& e) {
  Value left = eval(*e.children[0]);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.children[i + 1]);
    line_ = e.line;
    column_ = e.column;
    const std::string& op = e.ops[i];
    bool ok;
    if (op == "==") ok = values_equal(left, right, &meter_);
    else if (op == "!=") ok = !values_equal(left, right, &meter_);
    else if (op == "in") ok = contains(*this, right, left);
    else if (op == "notin") ok = !contains(*this, right, left);
    else {
      if (left.is_undefined()) raise_undefined(left);
      if (right.is_undefined()) raise_undefined(right);
      try {
        if (op == "<") ok = values_less(left, right, &meter_);
        else if (op == ">") ok = values_less(right, left, &meter_);
        else if (op == "<=") ok = !values_less(right, left, &meter_);
        else ok = !values_less(left, right, &meter_);
      } catch (const Error& err) {
        error(err.what());
      }
    }
    if (!ok) return Value::from_bool(false);
    left = std::move(right);
  }
  return Value::from_bool(true);
}

CallArgs Interpreter::eval_args(const Expr& e, size_t first) {
  CallArgs args;
  for (size_t i = first; i < e.children.size(); ++i) args.positional.push_back(eval(*e.children[i]));
  for (const auto& [key, value] : e.kwargs) args.keyword.emplace_back(key, eval(*value));
  return args;
}

Value Interpreter::eval_call(const Expr& e, const Value* caller) {
  Value callee = eval(*e.children[0]);
  CallArgs args = eval_args(e, 1);
  if (caller) args.keyword.emplace_back("caller", *caller);
  line_ = e.line;
  column_ = e.column;
  return call(callee, args);
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) raise_undefined(callee);
  if (callee.type != Type::Callable) error(fmt::format("'{}' object is not callable", type_name(callee)));
  // Binding arguments and the callable's own set-up cost a few expressions' worth.
  step(kCallSteps);
  int line = line_, column = column_;
  Value result = callee.callable->call(*this, args);
  line_ = line;
  column_ = column;
  // Builtins and methods build their strings outside eval() (map and select call them per item).
  charge_bytes(result.string.size());
  return result;
}

// Python slice bounds for a sequence of length n.
static void slice_indices(int64_t n, const Value& start_v, const Value& stop_v, int64_t step,
                          int64_t& start, int64_t& stop) {
  auto clamp = [&](const Value& v, int64_t fallback_pos, int64_t fallback_neg) {
    if (v.type == Type::None || v.is_undefined()) return step > 0 ? fallback_pos : fallback_neg;
    int64_t x = v.type == Type::Bool ? v.boolean : v.integer;
    if (x < 0) {
      x += n;
      if (x < 0) x = step > 0 ? 0 : -1;
    } else if (x >= n) {
      x = step > 0 ? n : n - 1;
    }
    return x;
  };
  start = clamp(start_v, 0, n - 1);
  stop = clamp(stop_v, n, -1);
}

Value Interpreter::eval_slice(const Expr& e) {
  if (!e.children[0]) error("slices are only allowed in subscripts");
  Value object = eval(*e.children[0]);
  Value parts[3];
  for (int i = 0; i < 3; ++i) parts[i] = e.children[static_cast<size_t>(i) + 1] ? eval(*e.children[static_cast<size_t>(i) + 1]) : Value::none();
  line_ = e.line;
  column_ = e.column;
  if (object.is_undefined()) raise_undefined(object);
  for (auto& p : parts) {
    if (p.type != Type::None && p.type != Type::Int && p.type != Type::Bool)
      return Value::undefined(fmt::format("slice indices must be integers or None"));
  }
  int64_t step_n = parts[2].type == Type::None ? 1 : parts[2].type == Type::Bool ? parts[2].boolean : parts[2].integer;
  if (step_n == 0) error("slice step cannot be zero");
  if (step_n == INT64_MIN) step_n = INT64_MIN + 1;
  auto take = [&](int64_t n, auto&& emit) {
    int64_t start, stop;
    slice_indices(n, parts[0], parts[1], step_n, start, stop);
    for (int64_t i = start; step_n > 0 ? i < stop : i > stop; i += step_n) {
      emit(static_cast<size_t>(i));
      if ((step_n > 0 && i > INT64_MAX - step_n) || (step_n < 0 && i < INT64_MIN - step_n)) break;
    }
  };
  if (object.is_string()) {
    charge_decode(object.string.size());
    std::vector<uint32_t> cps = utf8_decode(object.string);
    std::string out;
    take(static_cast<int64_t>(cps.size()), [&](size_t i) { utf8_append(out, cps[i]); });
    return Value::from_string(std::move(out));
  }
  if (object.is_sequence()) {
    std::vector<Value> out;
    take(static_cast<int64_t>(object.list->size()), [&](size_t i) { out.push_back((*object.list)[i]); });
    charge_items(out);
    return object.type == Type::List ? Value::new_list(std::move(out)) : Value::new_tuple(std::move(out));
  }
  return Value::undefined(fmt::format("'{}' object is not subscriptable", type_name(object)));
}

// ---- attribute and item access ---------------------------------------------------------------

Value Interpreter::get_attr(const Value& object, const std::string& name) {
  if (object.is_undefined()) raise_undefined(object);
  Value method = get_method(*this, object, name);
  if (!method.is_undefined() || !method.string.empty()) return method;
  if (object.type == Type::Dict || object.type == Type::Namespace) {
    if (const Value* v = object.dict->find(Value::from_string(name), &meter_)) return *v;
  }
  return Value::undefined(fmt::format("'{} object' has no attribute '{}'", type_name(object), name));
}

Value Interpreter::get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) raise_undefined(object);
  if (object.type == Type::Dict) {
    if (key.type != Type::List && key.type != Type::Dict) {
      if (const Value* v = object.dict->find(key, &meter_)) return *v;
    }
  } else if ((object.is_sequence() || object.is_string()) && (key.type == Type::Int || key.type == Type::Bool)) {
    int64_t index = key.type == Type::Bool ? key.boolean : key.integer;
    if (object.is_string()) {
      charge_decode(object.string.size());
      std::vector<uint32_t> cps = utf8_decode(object.string);
      auto n = static_cast<int64_t>(cps.size());
      if (index < 0) index += n;
      if (index >= 0 && index < n) {
        std::string out;
        utf8_append(out, cps[static_cast<size_t>(index)]);
        return Value::from_string(std::move(out));
      }
    } else {
      auto n = static_cast<int64_t>(object.list->size());
      if (index < 0) index += n;
      if (index >= 0 && index < n) return (*object.list)[static_cast<size_t>(index)];
    }
  } else if (object.type == Type::Namespace && key.is_string()) {
    if (const Value* v = object.dict->find(key, &meter_)) return *v;
  }
  if (key.is_string() && object.type != Type::Namespace) {
    Value method = get_method(*this, object, key.string);
    if (!method.is_undefined() || !method.string.empty()) return method;
  }
  return Value::undefined(fmt::format("'{} object' has no attribute '{}'", type_name(object), to_str(key, &meter_)));
}

std::vector<Value> Interpreter::iterate(const Value& v) {
  switch (v.type) {
    case Type::List:
    case Type::Tuple: charge_items(*v.list); return *v.list;
    case Type::Dict: {
      std::vector<Value> keys;
      keys.reserve(v.dict->items.size());
      for (const auto& [k, val] : v.dict->items) keys.push_back(k);
      charge_items(keys);
      return keys;
    }
    case Type::String: {
      charge_decode(v.string.size());
      const std::vector<uint32_t> cps = utf8_decode(v.string);
      step(cps.size());  // before building a value per character
      std::vector<Value> chars;
      chars.reserve(cps.size());
      for (uint32_t cp : cps) {
        std::string c;
        utf8_append(c, cp);
        chars.push_back(Value::from_string(std::move(c)));
      }
      return chars;
    }
    case Type::Generator: {
      std::vector<Value> items = std::move(*v.list);  // a generator runs once
      v.list->clear();
      charge_items(items);
      return items;
    }
    case Type::Undefined: return {};
    default: error(fmt::format("'{}' object is not iterable", type_name(v)));
  }
}

}  // namespace velocity::jinja
