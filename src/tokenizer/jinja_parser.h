// Recursive-descent parser for the Jinja subset chat templates use; the grammar and operator
// precedence follow jinja2/parser.py so that templates parse the same way.
#pragma once

#include <string_view>

#include "tokenizer/jinja_ast.h"

namespace velocity::jinja {

// Throws velocity::Error("template:L:C: ...") on syntax errors, unknown tags, filters or
// tests, and nesting deeper than kMaxSyntaxDepth.
Template parse(std::string_view source);

}  // namespace velocity::jinja
