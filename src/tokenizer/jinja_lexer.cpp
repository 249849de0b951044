#include "tokenizer/jinja_lexer.h"

#include <array>
#include <cstring>

#include "core/error.h"
#include "tokenizer/jinja_value.h"

namespace velocity::jinja {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Python's str.isspace() at byte offset i; returns the character's byte length, 0 if not space.
size_t space_at(std::string_view s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return is_python_space(c) ? 1 : 0;
  size_t n = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) return 0;
  auto cps = utf8_decode(s.substr(i, n));
  return cps.size() == 1 && is_python_space(cps[0]) ? n : 0;
}

size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t n = space_at(s, i);
    if (!n) break;
    i += n;
  }
  return i;
}

// Python str.rstrip() length of s.
size_t rstrip_length(std::string_view s) {
  auto cps = utf8_decode(s);
  size_t keep = cps.size();
  while (keep > 0 && is_python_space(cps[keep - 1])) --keep;
  return utf8_encode(cps, 0, keep).size();
}

// `\s+` fullmatch over s (which holds no newline).
bool all_space_nonempty(std::string_view s) {
  if (s.empty()) return false;
  return skip_space(s, 0) == s.size();
}

constexpr std::array<std::string_view, 20> kOperators = {
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~",
    "[",  "]",  "(",  ")",  "{",  "}",  ">", "<"};

class Lexer {
 public:
  explicit Lexer(std::string_view raw) {
    // Normalise newlines and drop one trailing newline (keep_trailing_newline=False).
    src_.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      } else {
        src_.push_back(raw[i]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    const std::string_view s = src_;
    while (pos < s.size()) {
      size_t tag = find_tag(pos);
      if (tag == std::string_view::npos) {
        emit_data(pos, s.substr(pos));
        break;
      }
      char kind = s[tag + 1];
      char sign = tag + 2 < s.size() && (s[tag + 2] == '-' || s[tag + 2] == '+') ? s[tag + 2] : 0;
      size_t raw_end = kind == '%' ? match_raw_begin(tag) : 0;
      std::string_view text = s.substr(pos, tag - pos);
      text = strip_before(text, sign, kind != '{', line_starting);
      emit_data(pos, text);
      size_t body = tag + 2 + (sign ? 1 : 0);
      if (raw_end) {
        pos = lex_raw(tag, raw_end, line_starting);
      } else if (kind == '#') {
        pos = lex_comment(body, line_starting);
      } else {
        pos = lex_tag(tag, body, kind == '%', line_starting);
      }
    }
    tokens_.push_back(Token{TokenKind::Eof, "", line_of(s.size()), column_of(s.size())});
    return std::move(tokens_);
  }

 private:
  std::string src_;
  std::vector<Token> tokens_;
  size_t cursor_offset_ = 0;  // line/column cache: last offset asked for
  int cursor_line_ = 1;
  size_t cursor_line_start_ = 0;

  int line_of(size_t offset) {
    if (offset < cursor_offset_) {
      cursor_offset_ = 0;
      cursor_line_ = 1;
      cursor_line_start_ = 0;
    }
    for (size_t i = cursor_offset_; i < offset && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++cursor_line_;
        cursor_line_start_ = i + 1;
      }
    }
    cursor_offset_ = offset;
    return cursor_line_;
  }
  int column_of(size_t offset) {
    line_of(offset);
    return static_cast<int>(offset - cursor_line_start_) + 1;
  }

  [[noreturn]] void error(size_t offset, const std::string& message) {
    int line = line_of(offset);
    fail("template:{}:{}: {}", line, column_of(offset), message);
  }

  void push(TokenKind kind, std::string text, size_t offset) {
    int line = line_of(offset);
    tokens_.push_back(Token{kind, std::move(text), line, column_of(offset)});
  }

  void emit_data(size_t offset, std::string_view text) {
    if (!text.empty()) push(TokenKind::Data, std::string(text), offset);
  }

  size_t find_tag(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    }
    return std::string::npos;
  }

  std::string_view strip_before(std::string_view text, char sign, bool lstrip_kind,
                                bool line_starting) const {
    if (sign == '-') return text.substr(0, rstrip_length(text));
    if (sign == '+' || !lstrip_kind) return text;
    size_t nl = text.rfind('\n');
    size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    if ((l_pos > 0 || line_starting) && all_space_nonempty(text.substr(l_pos)))
      return text.substr(0, l_pos);
    return text;
  }

  bool word_at(size_t i, std::string_view word) const {
    return src_.compare(i, word.size(), word) == 0 &&
           (i + word.size() >= src_.size() || !is_name_char(src_[i + word.size()]));
  }

  // `{%[-+]?\s*raw\s*(-%}\s*|%})` at tag; returns the offset after it, or 0.
  size_t match_raw_begin(size_t tag) const {
    std::string_view s = src_;
    size_t i = tag + 2;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    i = skip_space(s, i);
    if (s.compare(i, 3, "raw") != 0) return 0;
    i = skip_space(s, i + 3);
    if (s.compare(i, 3, "-%}") == 0) return skip_space(s, i + 3);
    if (s.compare(i, 2, "%}") == 0) return i + 2;
    return 0;
  }

  // The end of a block tag at i: `+%}` | `-%}\s*` | `%}\n?`; returns the offset after, or 0.
  size_t match_block_end(size_t i) const {
    std::string_view s = src_;
    if (s.compare(i, 3, "+%}") == 0) return i + 3;
    if (s.compare(i, 3, "-%}") == 0) return skip_space(s, i + 3);
    if (s.compare(i, 2, "%}") == 0) return i + 2 + (i + 2 < s.size() && s[i + 2] == '\n' ? 1 : 0);
    return 0;
  }

  size_t lex_raw(size_t tag, size_t body, bool& line_starting) {
    std::string_view s = src_;
    line_starting = s[body - 1] == '\n';
    for (size_t i = s.find("{%", body); i != std::string_view::npos; i = s.find("{%", i + 1)) {
      size_t j = i + 2;
      char sign = j < s.size() && (s[j] == '-' || s[j] == '+') ? s[j] : 0;
      if (sign) ++j;
      j = skip_space(s, j);
      if (s.compare(j, 6, "endraw") != 0) continue;
      j = skip_space(s, j + 6);
      size_t end = match_block_end(j);
      if (!end) continue;
      emit_data(body, strip_before(s.substr(body, i - body), sign, true, line_starting));
      line_starting = s[end - 1] == '\n';
      return end;
    }
    error(tag, "Missing end of raw directive");
  }

  size_t lex_comment(size_t body, bool& line_starting) {
    std::string_view s = src_;
    size_t close = s.find("#}", body);
    if (close == std::string_view::npos) error(body, "Missing end of comment tag");
    size_t end;
    if (close > body && s[close - 1] == '-') end = skip_space(s, close + 2);
    else if (close > body && s[close - 1] == '+') end = close + 2;
    else end = close + 2 + (close + 2 < s.size() && s[close + 2] == '\n' ? 1 : 0);
    line_starting = s[end - 1] == '\n';
    return end;
  }

  size_t lex_tag(size_t tag, size_t pos, bool block, bool& line_starting) {
    std::string_view s = src_;
    push(block ? TokenKind::BlockBegin : TokenKind::VarBegin, block ? "{%" : "{{", tag);
    std::vector<char> balance;
    while (true) {
      if (pos >= s.size()) error(pos, "unexpected end of template");
      if (balance.empty()) {
        size_t end = 0;
        if (block) {
          end = match_block_end(pos);
        } else if (s.compare(pos, 3, "-}}") == 0) {
          end = skip_space(s, pos + 3);
        } else if (s.compare(pos, 2, "}}") == 0) {
          end = pos + 2;
        }
        if (end) {
          push(block ? TokenKind::BlockEnd : TokenKind::VarEnd, block ? "%}" : "}}", pos);
          line_starting = s[end - 1] == '\n';
          return end;
        }
      }
      if (size_t n = space_at(s, pos)) {
        pos += n;
        continue;
      }
      char c = s[pos];
      if (is_digit(c)) {
        pos = lex_number(pos);
      } else if (is_name_start(c)) {
        size_t end = pos;
        while (end < s.size() && is_name_char(s[end])) ++end;
        push(TokenKind::Name, std::string(s.substr(pos, end - pos)), pos);
        pos = end;
      } else if (c == '\'' || c == '"') {
        pos = lex_string(pos);
      } else {
        std::string_view op;
        for (auto candidate : kOperators) {
          if (s.compare(pos, candidate.size(), candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (op.empty() && std::strchr("=.:|,;", c) != nullptr) op = s.substr(pos, 1);
        if (op.empty()) error(pos, fmt::format("unexpected char '{}'", std::string(1, c)));
        if (op == "(" || op == "[" || op == "{") {
          balance.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
        } else if (op == ")" || op == "]" || op == "}") {
          if (balance.empty()) error(pos, fmt::format("unexpected '{}'", op));
          if (balance.back() != op[0])
            error(pos, fmt::format("unexpected '{}', expected '{}'", op, balance.back()));
          balance.pop_back();
        }
        push(TokenKind::Operator, std::string(op), pos);
        pos += op.size();
      }
    }
  }

  // Digits with optional `_` separators, as jinja's integer_re / float_re.
  size_t digits(size_t i) const {
    std::string_view s = src_;
    if (i >= s.size() || !is_digit(s[i])) return i;
    while (i < s.size() && (is_digit(s[i]) || (s[i] == '_' && i + 1 < s.size() && is_digit(s[i + 1]))))
      ++i;
    return i;
  }

  size_t lex_number(size_t start) {
    std::string_view s = src_;
    size_t i = digits(start);
    bool is_float = false;
    if (i + 1 < s.size() && s[i] == '.' && is_digit(s[i + 1])) {
      i = digits(i + 1);
      is_float = true;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      size_t j = i + 1;
      if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
      if (j < s.size() && is_digit(s[j])) {
        i = digits(j);
        is_float = true;
      }
    }
    std::string text;
    for (size_t k = start; k < i; ++k)
      if (s[k] != '_') text.push_back(s[k]);
    if (!is_float && text.size() > 1 && text[0] == '0') {
      // integer_re only accepts 0, 00, ... with a leading zero; "01" lexes as "0", "1".
      size_t zeros = 0;
      while (zeros < text.size() && text[zeros] == '0') ++zeros;
      if (zeros < text.size()) {
        push(TokenKind::Int, "0", start);
        return start + 1;
      }
    }
    push(is_float ? TokenKind::Float : TokenKind::Int, text, start);
    return i;
  }

  size_t lex_string(size_t start) {
    std::string_view s = src_;
    char quote = s[start];
    std::string out;
    size_t i = start + 1;
    while (true) {
      if (i >= s.size()) error(start, "unexpected char '" + std::string(1, quote) + "'");
      char c = s[i];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= s.size()) error(start, "unexpected char '" + std::string(1, quote) + "'");
      char e = s[i + 1];
      i += 2;
      auto hex = [&](int count) {
        uint32_t cp = 0;
        for (int k = 0; k < count; ++k, ++i) {
          char h = i < s.size() ? s[i] : 0;
          int d = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
          if (d < 0) error(start, "truncated \\xXX escape in string literal");
          cp = cp * 16 + static_cast<uint32_t>(d);
        }
        if (cp > 0x10ffff) error(start, "illegal Unicode character in string literal");
        utf8_append(out, cp);
      };
      switch (e) {
        case '\n': break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x': hex(2); break;
        case 'u': hex(4); break;
        case 'U': hex(8); break;
        case 'N': error(start, "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && i < s.size() && s[i] >= '0' && s[i] <= '7'; ++k, ++i)
              cp = cp * 8 + static_cast<uint32_t>(s[i] - '0');
            utf8_append(out, cp);
          } else {
            out.push_back('\\');
            out.push_back(e);
          }
      }
    }
    push(TokenKind::String, std::move(out), start);
    return i + 1;
  }
};

}  // namespace

std::vector<Token> lex(std::string_view source) { return Lexer(source).run(); }

}  // namespace velocity::jinja
