#include "tools/tokenize_cli.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace velocity::tools {

namespace {

std::string json_string(const std::string& s) { return nlohmann::json(s).dump(); }

// The token's text, or its vocabulary entry when the text is not whole UTF-8 (see the header).
std::string shown_piece(const tokenizer::Tokenizer& tok, int32_t id) {
  const std::string piece = tok.token_to_piece(id);
  if (tokenizer::utf8_is_valid(piece)) return json_string(piece);
  return json_string(tokenizer::utf8_sanitize(tok.vocab().tokens[static_cast<size_t>(id)]));
}

}  // namespace

void tokenize(const TokenizeOptions& options, std::string_view text, std::ostream& out) {
  const tokenizer::Tokenizer tok(tokenizer::Vocab::load(options.model_path));
  const std::vector<int32_t> ids = tok.encode(text, options.add_special, options.parse_special);
  switch (options.output) {
    case TokenizeOutput::Ids:
      for (size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
      out << '\n';
      break;
    case TokenizeOutput::Pieces:
      for (const int32_t id : ids) out << shown_piece(tok, id) << '\n';
      break;
    case TokenizeOutput::IdsAndPieces:
      for (const int32_t id : ids) out << id << '\t' << shown_piece(tok, id) << '\n';
      break;
  }
}

}  // namespace velocity::tools
