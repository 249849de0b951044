// Jinja lexer with the whitespace rules of the environment Hugging Face renders chat templates
// in: trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False. It mirrors the regexes
// of jinja2/lexer.py (3.1): `{%-`/`-%}` strip all whitespace, `{%+` keeps the line's leading
// whitespace, `+%}` keeps the newline after a tag, and {{ }} never lstrips.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace velocity::jinja {

enum class TokenKind : uint8_t {
  Data,        // literal text between tags (raw blocks included)
  VarBegin,    // {{
  VarEnd,      // }}
  BlockBegin,  // {%
  BlockEnd,    // %}
  Name,
  String,  // value already unescaped
  Int,
  Float,
  Operator,
  Eof,
};

struct Token {
  TokenKind kind;
  std::string text;
  int line = 1;
  int column = 1;
};

// Throws velocity::Error("template:L:C: ...") on malformed input.
std::vector<Token> lex(std::string_view source);

}  // namespace velocity::jinja
