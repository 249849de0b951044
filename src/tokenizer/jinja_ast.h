// Syntax tree of a parsed Jinja template. Plain structs: one node kind per Jinja construct,
// children owned by unique_ptr. `depth` bounds recursion when evaluating and destroying.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace velocity::jinja {

// Deepest expression or statement nesting accepted; deeper input is a template error rather
// than a stack overflow (jinja2 itself hits Python's recursion limit far below this).
inline constexpr int kMaxSyntaxDepth = 200;

enum class ExprKind : uint8_t {
  Literal,    // literal
  Name,       // name
  List,       // children: items
  Tuple,      // children: items
  Dict,       // children: key0, value0, key1, value1, ...
  Attr,       // children[0].name
  Item,       // children[0][children[1]]
  Slice,      // children[0][children[1]:children[2]:children[3]], parts may be null
  Call,       // children[0](children[1..], kwargs)
  Filter,     // children[0] | name(children[1..], kwargs); children[0] null in filter blocks
  Test,       // children[0] is name(children[1..], kwargs)
  Unary,      // name: "-", "+", "not"
  Binary,     // name: + - * / // % ** ~ and or
  Compare,    // children[0] ops[0] children[1] ops[1] children[2] ...
  Cond,       // children[0] if children[1] else children[2] (may be null)
};

struct Expr {
  ExprKind kind;
  int line = 0;
  int column = 0;
  int depth = 1;
  std::string name;
  Value literal;
  std::vector<std::unique_ptr<Expr>> children;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
  std::vector<std::string> ops;  // Compare operators: == != < <= > >= in notin
};
using ExprPtr = std::unique_ptr<Expr>;

enum class StmtKind : uint8_t {
  Data,         // text
  Print,        // {{ expr }}
  If,           // if expr: body else: else_body (elif is a nested If in else_body)
  For,          // for target in expr [if filter]: body else: else_body
  Set,          // set target = expr
  SetBlock,     // set target [| filter]: body
  Macro,        // macro name(params=defaults): body
  CallBlock,    // call(params) expr: body  (body becomes `caller`)
  FilterBlock,  // filter expr: body  (expr is a Filter chain with a null innermost subject)
  Break,
  Continue,
  Generation,   // {% generation %}: body rendered as is
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  int column = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr target;  // Name, Tuple of Names, or Attr (namespace assignment)
  ExprPtr filter;  // For's inline `if`; SetBlock's filter chain
  std::vector<std::unique_ptr<Stmt>> body;
  std::vector<std::unique_ptr<Stmt>> else_body;
  // Macro / CallBlock
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null where there is no default
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
  bool loop_recursive = false;
};
using StmtPtr = std::unique_ptr<Stmt>;

struct Template {
  std::vector<StmtPtr> body;
};

}  // namespace velocity::jinja
