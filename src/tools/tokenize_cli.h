// `velocity tokenize`: a model's tokenizer applied to a text, for looking at what the model sees.
//
//   default   one token per line: "<id>\t<piece>", the piece a JSON string
//   --ids     the ids on one line, separated by spaces
//   --pieces  the pieces only, one JSON string per line
//
// A piece is the text the token stands for (SentencePiece's ▁ shown as a space, byte-level BPE
// decoded to its bytes). A token that stands for part of a UTF-8 sequence (a byte-fallback or
// byte-level fragment) is shown as its vocabulary entry instead ("<0xE2>", "âĢ"), since JSON
// strings cannot carry stray bytes.
#pragma once

#include <ostream>
#include <string>
#include <string_view>

namespace velocity::tools {

enum class TokenizeOutput { IdsAndPieces, Ids, Pieces };

struct TokenizeOptions {
  std::string model_path;                               // GGUF file (its tokenizer.ggml.* keys)
  TokenizeOutput output = TokenizeOutput::IdsAndPieces;
  bool parse_special = true;  // special tokens written in the text ("<|im_start|>") become their ids
  bool add_special = true;    // BOS / EOS as the vocabulary asks (add_bos_token / add_eos_token)
};

// Loads the model's tokenizer, encodes `text` and writes the tokens to `out`. Throws
// velocity::Error for a missing or unreadable file and for a file without a tokenizer.
void tokenize(const TokenizeOptions& options, std::string_view text, std::ostream& out);

}  // namespace velocity::tools
