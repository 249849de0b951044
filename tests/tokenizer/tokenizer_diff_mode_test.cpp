// The C++ half of the differential test against Hugging Face tokenizers (tests/tokenizer/diff).
// Runs only when tests/tokenizer/diff/compare.mjs starts this binary with
//   VELOCITY_TOKENIZER_DIFF_VOCAB   tokenizer.json (imported with hf_import) or a .gguf
//   VELOCITY_TOKENIZER_DIFF_INPUT   JSON lines {"hex": "<input bytes>", "parse_special": bool}
//   VELOCITY_TOKENIZER_DIFF_OUTPUT  written: JSON lines {"ids": [...], "decoded": "..."}
// and skips otherwise. Texts are sent as hex so that invalid UTF-8 reaches encode() unchanged.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/hf_import.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace velocity::tokenizer {
namespace {

std::string from_hex(const std::string& hex) {
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

TEST(TokenizerDiffMode, EncodeJsonLines) {
  const char* vocab_path = std::getenv("VELOCITY_TOKENIZER_DIFF_VOCAB");
  const char* input_path = std::getenv("VELOCITY_TOKENIZER_DIFF_INPUT");
  const char* output_path = std::getenv("VELOCITY_TOKENIZER_DIFF_OUTPUT");
  if (!vocab_path || !input_path || !output_path) {
    GTEST_SKIP() << "differential mode: run by tests/tokenizer/diff/compare.mjs";
  }
  const std::string path = vocab_path;
  const Vocab vocab = path.ends_with(".gguf") ? Vocab::load(path) : hf_import(path);
  const Tokenizer tok(vocab);
  std::ifstream in(input_path);
  ASSERT_TRUE(in) << input_path;
  std::ofstream out(output_path);
  ASSERT_TRUE(out) << output_path;
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json req = nlohmann::json::parse(line);
    const std::string text = from_hex(req.at("hex").get<std::string>());
    const std::vector<int32_t> ids = tok.encode(text, req.value("add_special", true), req.value("parse_special", true));
    nlohmann::json res;
    res["ids"] = ids;
    res["decoded"] = tok.decode(ids);
    out << res.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }
}

}  // namespace
}  // namespace velocity::tokenizer
