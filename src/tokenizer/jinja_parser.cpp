#include "tokenizer/jinja_parser.h"

#include <charconv>
#include <cstdlib>
#include <initializer_list>

#include "core/error.h"
#include "tokenizer/jinja_filters.h"
#include "tokenizer/jinja_lexer.h"

namespace velocity::jinja {
namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Template run() {
    Template t;
    t.body = subparse({}, nullptr);
    if (!unknown_.empty()) error_at(tokens_[unknown_.front().first], unknown_.front().second);
    return t;
  }

 private:
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int stmt_depth_ = 0;
  int n_varargs_ = 0;  // Name nodes seen for `varargs` / `kwargs` / `caller` (macro signatures)
  int n_kwargs_ = 0;
  int n_caller_ = 0;
  // Unknown filter and test names, as jinja2 treats them: inside an {% if %} (its test and
  // branches) or a conditional expression ("soft", soft_ > 0) they fail only when evaluated (the
  // interpreter's "No filter named"), so a template whose unreachable branch names a filter we
  // lack still loads (DeepSeek-V3.2's from_json); anywhere else they are errors of the template.
  // A macro, for, call, set or filter block body starts a new jinja2 frame: not soft again.
  // unknown_: (token index, message) of names met outside a soft region, raised after parsing
  // (an expression that later turns out to be the first part of `a if c else b` drops its own).
  int soft_ = 0;
  std::vector<std::pair<size_t, std::string>> unknown_;
  struct SoftGuard {  // soft (true) or a new frame (false) while it lives
    Parser& p;
    int saved;
    SoftGuard(Parser& parser, bool soft) : p(parser), saved(parser.soft_) { p.soft_ = soft ? saved + 1 : 0; }
    ~SoftGuard() { p.soft_ = saved; }
  };
  void unknown_name(size_t token, std::string message) {
    if (soft_ == 0) unknown_.emplace_back(token, std::move(message));
  }

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.stmt_depth_ > 3 * kMaxSyntaxDepth) p.error_at(p.cur(), "expression nested too deeply");
    }
    ~DepthGuard() { --p.stmt_depth_; }
  };

  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(size_t k = 1) const {
    return tokens_[std::min(pos_ + k, tokens_.size() - 1)];
  }
  void next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }

  [[noreturn]] void error_at(const Token& t, const std::string& message) const {
    fail("template:{}:{}: {}", t.line, t.column, message);
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::Eof: return "end of template";
      case TokenKind::VarEnd: return "end of print statement";
      case TokenKind::BlockEnd: return "end of statement block";
      case TokenKind::String: return "string";
      default: return "'" + t.text + "'";
    }
  }
  [[noreturn]] void unexpected() const { error_at(cur(), "unexpected " + describe(cur())); }

  bool is_op(const char* op) const { return cur().kind == TokenKind::Operator && cur().text == op; }
  bool is_name(const char* name) const { return cur().kind == TokenKind::Name && cur().text == name; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) error_at(cur(), fmt::format("expected '{}', got {}", op, describe(cur())));
  }
  std::string expect_name() {
    if (cur().kind != TokenKind::Name) error_at(cur(), "expected a name, got " + describe(cur()));
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() {
    if (cur().kind != TokenKind::BlockEnd) unexpected();
    next();
  }

  ExprPtr make(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    return e;
  }
  ExprPtr finish(ExprPtr e) {
    int depth = 0;
    for (auto& c : e->children)
      if (c) depth = std::max(depth, c->depth);
    for (auto& [k, v] : e->kwargs) depth = std::max(depth, v->depth);
    e->depth = depth + 1;
    if (e->depth > kMaxSyntaxDepth)
      fail("template:{}:{}: expression nested too deeply (limit {})", e->line, e->column, kMaxSyntaxDepth);
    return e;
  }

  // ---- statements --------------------------------------------------------------------------

  // Parses until a block tag whose name is in `end_tags` (left as the current token, after
  // `{%`), or EOF when end_tags is empty.
  std::vector<StmtPtr> subparse(std::initializer_list<const char*> end_tags, const Token* opener) {
    if (++stmt_depth_ > kMaxSyntaxDepth) error_at(cur(), "statements nested too deeply");
    std::vector<StmtPtr> body;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokenKind::Eof) {
        if (end_tags.size() == 0) break;
        std::string want;
        for (const char* tag : end_tags) want += (want.empty() ? "'" : " or '") + std::string(tag) + "'";
        error_at(opener ? *opener : t, fmt::format("unexpected end of template, expected {}", want));
      }
      if (t.kind == TokenKind::Data) {
        auto s = stmt(StmtKind::Data, t);
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.kind == TokenKind::VarBegin) {
        next();
        auto s = stmt(StmtKind::Print, t);
        s->expr = parse_tuple(true, {});
        if (cur().kind != TokenKind::VarEnd) unexpected();
        next();
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::BlockBegin) {
        const Token& tag = peek();
        if (tag.kind == TokenKind::Name) {
          for (const char* end : end_tags) {
            if (tag.text == end) {
              next();  // leave the tag name current
              --stmt_depth_;
              return body;
            }
          }
        }
        next();
        body.push_back(parse_statement());
      } else {
        unexpected();
      }
    }
    --stmt_depth_;
    return body;
  }

  StmtPtr stmt(StmtKind kind, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = at.line;
    s->column = at.column;
    return s;
  }

  StmtPtr parse_statement() {
    const Token& t = cur();
    if (t.kind != TokenKind::Name) error_at(t, "tag name expected");
    std::string tag = t.text;
    next();
    if (tag == "if") return parse_if(t);
    if (tag == "for") return parse_for(t);
    if (tag == "set") return parse_set(t);
    if (tag == "macro") return parse_macro(t);
    if (tag == "call") return parse_call_block(t);
    if (tag == "filter") return parse_filter_block(t);
    if (tag == "break" || tag == "continue") {
      auto s = stmt(tag == "break" ? StmtKind::Break : StmtKind::Continue, t);
      expect_block_end();
      return s;
    }
    if (tag == "generation") {
      auto s = stmt(StmtKind::Generation, t);
      expect_block_end();
      s->body = subparse({"endgeneration"}, &t);
      next();
      expect_block_end();
      return s;
    }
    error_at(t, "unexpected '" + tag + "'");
  }

  StmtPtr parse_if(const Token& at) {
    SoftGuard soft(*this, true);
    auto s = stmt(StmtKind::If, at);
    s->expr = parse_tuple(false, {});
    expect_block_end();
    s->body = subparse({"elif", "else", "endif"}, &at);
    const Token& tag = cur();
    next();
    if (tag.text == "elif") {
      s->else_body.push_back(parse_if(tag));
      return s;
    }
    if (tag.text == "else") {
      expect_block_end();
      s->else_body = subparse({"endif"}, &at);
      next();
    }
    expect_block_end();
    return s;
  }

  StmtPtr parse_for(const Token& at) {
    auto s = stmt(StmtKind::For, at);
    s->target = parse_assign_target(false, {"in"});
    if (!skip_name("in")) error_at(cur(), "expected 'in', got " + describe(cur()));
    s->expr = parse_tuple(false, {"recursive"});
    SoftGuard frame(*this, false);  // the loop's condition and body
    if (skip_name("if")) s->filter = parse_expression(true);
    if (skip_name("recursive")) s->loop_recursive = true;
    expect_block_end();
    s->body = subparse({"endfor", "else"}, &at);
    if (cur().text == "else") {
      next();
      expect_block_end();
      s->else_body = subparse({"endfor"}, &at);
    }
    next();
    expect_block_end();
    if (s->loop_recursive) error_at(at, "recursive for loops are not supported");
    return s;
  }

  StmtPtr parse_set(const Token& at) {
    ExprPtr target = parse_assign_target(true, {});
    if (skip_op("=")) {
      auto s = stmt(StmtKind::Set, at);
      s->target = std::move(target);
      s->expr = parse_tuple(true, {});
      expect_block_end();
      return s;
    }
    auto s = stmt(StmtKind::SetBlock, at);
    s->target = std::move(target);
    SoftGuard frame(*this, false);
    if (is_op("|")) s->filter = parse_filter_chain(nullptr);
    expect_block_end();
    s->body = subparse({"endset"}, &at);
    next();
    expect_block_end();
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      const Token& t = cur();
      std::string name = expect_name();
      if (name == "true" || name == "false" || name == "none" || name == "True" ||
          name == "False" || name == "None")
        error_at(t, "cannot assign to '" + name + "'");
      s.params.push_back(name);
      s.defaults.push_back(skip_op("=") ? parse_expression(true) : nullptr);
    }
    next();
  }

  StmtPtr parse_macro(const Token& at) {
    SoftGuard frame(*this, false);
    auto s = stmt(StmtKind::Macro, at);
    s->name = expect_name();
    parse_signature(*s);
    expect_block_end();
    int varargs = n_varargs_, kwargs = n_kwargs_, caller = n_caller_;
    s->body = subparse({"endmacro"}, &at);
    s->uses_varargs = n_varargs_ > varargs;
    s->uses_kwargs = n_kwargs_ > kwargs;
    s->uses_caller = n_caller_ > caller;
    next();
    if (cur().kind == TokenKind::Name) next();  // {% endmacro name %}
    expect_block_end();
    return s;
  }

  StmtPtr parse_call_block(const Token& at) {
    auto s = stmt(StmtKind::CallBlock, at);
    if (is_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::Call) error_at(at, "expected call");
    expect_block_end();
    int varargs = n_varargs_, kwargs = n_kwargs_;
    SoftGuard frame(*this, false);
    s->body = subparse({"endcall"}, &at);
    s->uses_varargs = n_varargs_ > varargs;
    s->uses_kwargs = n_kwargs_ > kwargs;
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_filter_block(const Token& at) {
    SoftGuard frame(*this, false);
    auto s = stmt(StmtKind::FilterBlock, at);
    s->expr = parse_filter_chain(nullptr, /*require_first_pipe=*/false);
    expect_block_end();
    s->body = subparse({"endfilter"}, &at);
    next();
    expect_block_end();
    return s;
  }

  // Assignment targets: a name, `a, b` tuples, parenthesised tuples, or `ns.attr` when
  // with_namespace.
  ExprPtr parse_assign_target(bool with_namespace, std::initializer_list<const char*> end_names) {
    DepthGuard guard(*this);
    const Token& at = cur();
    if (with_namespace && peek().kind == TokenKind::Operator && peek().text == ".") {
      auto e = make(ExprKind::Attr, at);
      auto ns = make(ExprKind::Name, at);
      ns->name = expect_name();
      next();  // .
      e->name = expect_name();
      e->children.push_back(finish(std::move(ns)));
      return finish(std::move(e));
    }
    auto tuple = make(ExprKind::Tuple, at);
    bool is_tuple = false;
    while (true) {
      if (!tuple->children.empty()) {
        if (!skip_op(",")) break;
        is_tuple = true;
        if (cur().kind != TokenKind::Name && !is_op("(")) break;
        bool end = false;
        for (const char* n : end_names) end = end || is_name(n);
        if (end) break;
      }
      if (skip_op("(")) {
        tuple->children.push_back(parse_assign_target(false, {}));
        expect_op(")");
        continue;
      }
      const Token& t = cur();
      std::string name = expect_name();
      if (name == "true" || name == "false" || name == "none" || name == "True" ||
          name == "False" || name == "None")
        error_at(t, "cannot assign to '" + name + "'");
      auto n = make(ExprKind::Name, t);
      n->name = name;
      tuple->children.push_back(finish(std::move(n)));
    }
    if (!is_tuple) return std::move(tuple->children[0]);
    return finish(std::move(tuple));
  }

  // ---- expressions -------------------------------------------------------------------------

  ExprPtr parse_expression(bool with_condexpr) {
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    DepthGuard guard(*this);
    const size_t unknown_before = unknown_.size();
    ExprPtr expr1 = parse_or();
    while (is_name("if")) {
      const Token& at = cur();
      next();
      unknown_.resize(unknown_before);  // expr1 is a branch: soft
      SoftGuard soft(*this, true);
      ExprPtr cond = parse_or();
      ExprPtr expr3 = skip_name("else") ? parse_condexpr() : nullptr;
      auto e = make(ExprKind::Cond, at);
      e->children.push_back(std::move(expr1));
      e->children.push_back(std::move(cond));
      e->children.push_back(std::move(expr3));
      expr1 = finish(std::move(e));
    }
    return expr1;
  }

  ExprPtr binary(const Token& at, const std::string& op, ExprPtr left, ExprPtr right) {
    auto e = make(ExprKind::Binary, at);
    e->name = op;
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return finish(std::move(e));
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const Token& at = cur();
      next();
      left = binary(at, "or", std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const Token& at = cur();
      next();
      left = binary(at, "and", std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    DepthGuard guard(*this);
    if (is_name("not")) {
      const Token& at = cur();
      next();
      auto e = make(ExprKind::Unary, at);
      e->name = "not";
      e->children.push_back(parse_not());
      return finish(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& at = cur();
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().kind == TokenKind::Operator &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
           cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().kind == TokenKind::Name && peek().text == "in") {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprKind::Compare, at);
        cmp->children.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->children.push_back(parse_math1());
    }
    return cmp ? finish(std::move(cmp)) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& at = cur();
      next();
      left = binary(at, at.text, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const Token& at = cur();
      next();
      left = binary(at, "~", std::move(left), parse_math2());
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& at = cur();
      next();
      left = binary(at, at.text, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const Token& at = cur();
      next();
      left = binary(at, "**", std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    const Token& at = cur();
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      next();
      node = make(ExprKind::Unary, at);
      node->name = at.text;
      node->children.push_back(parse_unary(false));
      node = finish(std::move(node));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    if (t.kind == TokenKind::Name) {
      next();
      auto e = make(ExprKind::Literal, t);
      if (t.text == "true" || t.text == "True") e->literal = Value::from_bool(true);
      else if (t.text == "false" || t.text == "False") e->literal = Value::from_bool(false);
      else if (t.text == "none" || t.text == "None") e->literal = Value::none();
      else {
        e->kind = ExprKind::Name;
        e->name = t.text;
        if (t.text == "varargs") ++n_varargs_;
        if (t.text == "kwargs") ++n_kwargs_;
        if (t.text == "caller") ++n_caller_;
      }
      return finish(std::move(e));
    }
    if (t.kind == TokenKind::String) {
      std::string s;
      while (cur().kind == TokenKind::String) {  // adjacent literals concatenate
        s += cur().text;
        next();
      }
      auto e = make(ExprKind::Literal, t);
      e->literal = Value::from_string(std::move(s));
      return finish(std::move(e));
    }
    if (t.kind == TokenKind::Int) {
      next();
      auto e = make(ExprKind::Literal, t);
      int64_t v = 0;
      auto res = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
      if (res.ec != std::errc()) error_at(t, "integer literal out of range: " + t.text);
      e->literal = Value::from_int(v);
      return finish(std::move(e));
    }
    if (t.kind == TokenKind::Float) {
      next();
      auto e = make(ExprKind::Literal, t);
      e->literal = Value::from_float(std::strtod(t.text.c_str(), nullptr));
      return finish(std::move(e));
    }
    if (is_op("(")) {
      next();
      ExprPtr e = parse_tuple(true, {}, /*explicit_parentheses=*/true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = make(ExprKind::List, t);
      while (!is_op("]")) {
        if (!e->children.empty()) {
          expect_op(",");
          if (is_op("]")) break;
        }
        e->children.push_back(parse_expression(true));
      }
      next();
      return finish(std::move(e));
    }
    if (is_op("{")) {
      next();
      auto e = make(ExprKind::Dict, t);
      while (!is_op("}")) {
        if (!e->children.empty()) {
          expect_op(",");
          if (is_op("}")) break;
        }
        e->children.push_back(parse_expression(true));
        expect_op(":");
        e->children.push_back(parse_expression(true));
      }
      next();
      return finish(std::move(e));
    }
    unexpected();
  }

  // Comma-separated expressions; a tuple when there is a comma (or empty parentheses).
  ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<const char*> end_names,
                      bool explicit_parentheses = false) {
    const Token& at = cur();
    auto tuple = make(ExprKind::Tuple, at);
    bool is_tuple = false;
    auto at_end = [&] {
      if (cur().kind == TokenKind::VarEnd || cur().kind == TokenKind::BlockEnd ||
          cur().kind == TokenKind::Eof || is_op(")"))
        return true;
      for (const char* n : end_names)
        if (is_name(n)) return true;
      return false;
    };
    while (true) {
      if (!tuple->children.empty()) {
        if (!skip_op(",")) break;
        is_tuple = true;
      }
      if (at_end()) break;
      tuple->children.push_back(parse_expression(with_condexpr));
    }
    if (!is_tuple) {
      if (!tuple->children.empty()) return std::move(tuple->children[0]);
      if (!explicit_parentheses) error_at(cur(), "Expected an expression, got " + describe(cur()));
    }
    return finish(std::move(tuple));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) node = parse_subscript(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) node = parse_filter_chain(std::move(node));
      else if (is_name("is")) node = parse_test(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& at = cur();
    if (skip_op(".")) {
      const Token& t = cur();
      if (t.kind == TokenKind::Name) {
        next();
        auto e = make(ExprKind::Attr, at);
        e->name = t.text;
        e->children.push_back(std::move(node));
        return finish(std::move(e));
      }
      if (t.kind == TokenKind::Int) {
        ExprPtr index = parse_primary();
        auto e = make(ExprKind::Item, at);
        e->children.push_back(std::move(node));
        e->children.push_back(std::move(index));
        return finish(std::move(e));
      }
      error_at(t, "expected name or number");
    }
    next();  // [
    std::vector<ExprPtr> parts;
    while (!is_op("]")) {
      if (!parts.empty()) {
        expect_op(",");
        if (is_op("]")) break;
      }
      parts.push_back(parse_subscribed());
    }
    next();
    auto e = make(ExprKind::Item, at);
    e->children.push_back(std::move(node));
    if (parts.size() == 1 && parts[0]->kind == ExprKind::Slice && parts[0]->children.empty() == false &&
        parts[0]->children[0] == nullptr) {
      // a slice: move its parts under this node
      auto slice = std::move(parts[0]);
      slice->children[0] = std::move(e->children[0]);
      return finish(std::move(slice));
    }
    if (parts.size() == 1) {
      e->children.push_back(std::move(parts[0]));
    } else {
      if (parts.empty()) error_at(at, "expected subscript expression");
      auto tuple = make(ExprKind::Tuple, at);
      tuple->children = std::move(parts);
      e->children.push_back(finish(std::move(tuple)));
    }
    return finish(std::move(e));
  }

  // `a`, or a slice `a:b:c` (a Slice node with a null subject placeholder).
  ExprPtr parse_subscribed() {
    const Token& at = cur();
    std::vector<ExprPtr> args;
    if (is_op(":")) {
      next();
      args.push_back(nullptr);
    } else {
      ExprPtr node = parse_expression(true);
      if (!skip_op(":")) return node;
      args.push_back(std::move(node));
    }
    if (is_op("]") || is_op(",")) args.push_back(nullptr);
    else if (!is_op(":")) args.push_back(parse_expression(true));
    else args.push_back(nullptr);
    if (skip_op(":")) {
      if (is_op("]") || is_op(",")) args.push_back(nullptr);
      else args.push_back(parse_expression(true));
    } else {
      args.push_back(nullptr);
    }
    auto e = make(ExprKind::Slice, at);
    e->children.push_back(nullptr);
    for (auto& a : args) e->children.push_back(std::move(a));
    return finish(std::move(e));
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")")) break;
      }
      first = false;
      if (is_op("*") || is_op("**")) error_at(cur(), "*args and **kwargs in calls are not supported");
      if (cur().kind == TokenKind::Name && peek().kind == TokenKind::Operator && peek().text == "=") {
        std::string key = cur().text;
        next();
        next();
        e.kwargs.emplace_back(key, parse_expression(true));
      } else {
        if (!e.kwargs.empty()) error_at(cur(), "invalid syntax for function call expression");
        e.children.push_back(parse_expression(true));
      }
    }
    next();
  }

  ExprPtr parse_call(ExprPtr node) {
    auto e = make(ExprKind::Call, cur());
    e->children.push_back(std::move(node));
    parse_call_args(*e);
    return finish(std::move(e));
  }

  std::string parse_dotted_name() {
    std::string name = expect_name();
    while (is_op(".")) {
      next();
      name += "." + expect_name();
    }
    return name;
  }

  // `| f(args) | g ...`; with a null node for filter blocks and `{% set x | f %}`.
  ExprPtr parse_filter_chain(ExprPtr node, bool require_first_pipe = true) {
    bool first = true;
    while (is_op("|") || (first && !require_first_pipe)) {
      if (is_op("|")) next();
      first = false;
      const Token& at = cur();
      auto e = make(ExprKind::Filter, at);
      const size_t name_token = pos_;
      e->name = parse_dotted_name();
      if (!has_filter(e->name)) unknown_name(name_token, "no filter named '" + e->name + "'");
      e->children.push_back(std::move(node));
      if (is_op("(")) parse_call_args(*e);
      node = finish(std::move(e));
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const Token& at = cur();
    next();  // is
    bool negated = skip_name("not");
    const size_t name_token = pos_;
    auto e = make(ExprKind::Test, at);
    e->name = parse_dotted_name();
    if (!has_test(e->name)) unknown_name(name_token, "no test named '" + e->name + "'");
    e->children.push_back(std::move(node));
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((cur().kind == TokenKind::Name || cur().kind == TokenKind::String ||
                cur().kind == TokenKind::Int || cur().kind == TokenKind::Float || is_op("(") ||
                is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error_at(cur(), "You cannot chain multiple tests with is");
      e->children.push_back(parse_postfix(parse_primary()));
    }
    ExprPtr test = finish(std::move(e));
    if (!negated) return test;
    auto n = make(ExprKind::Unary, at);
    n->name = "not";
    n->children.push_back(std::move(test));
    return finish(std::move(n));
  }
};

}  // namespace

Template parse(std::string_view source) { return Parser(lex(source)).run(); }

}  // namespace velocity::jinja
