// The C++ half of the differential test against Hugging Face tokenizers (tests/tokenizer/diff).
// Runs only when tests/tokenizer/diff/compare.mjs starts this binary with
//   VELOCITY_TOKENIZER_DIFF_VOCAB   tokenizer.json (imported with hf_import) or a .gguf
//   VELOCITY_TOKENIZER_DIFF_INPUT   JSON lines {"hex": "<input bytes>", "add_special": bool,
//                                   "parse_special": bool, "skip_special": bool (decode)}
//   VELOCITY_TOKENIZER_DIFF_OUTPUT  written: JSON lines {"ids": [...], "decoded": "..."}
// and skips otherwise. Texts are sent as hex so that invalid UTF-8 reaches encode() unchanged.
// With VELOCITY_TOKENIZER_DIFF_SAME_AS=<a .gguf> as well, VocabMatchesGguf checks that the
// vocabulary equals that file's (tokens, types, special ids, flags, and the merge order its
// scores imply) instead; VELOCITY_TOKENIZER_DIFF_CONFIG names an optional tokenizer_config.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <cstdio>
#include <limits>
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

size_t n_code_points(const std::string& s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
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
    res["decoded"] = tok.decode(ids, req.value("skip_special", false));
    out << res.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }
}

TEST(TokenizerDiffMode, VocabMatchesGguf) {
  const char* vocab_path = std::getenv("VELOCITY_TOKENIZER_DIFF_VOCAB");
  const char* gguf_path = std::getenv("VELOCITY_TOKENIZER_DIFF_SAME_AS");
  if (!vocab_path || !gguf_path) GTEST_SKIP() << "differential mode: run by tests/tokenizer/diff/compare_llama2.mjs";
  const char* config_path = std::getenv("VELOCITY_TOKENIZER_DIFF_CONFIG");
  const Vocab ours = hf_import(vocab_path, config_path ? config_path : "");
  const Vocab want = Vocab::load(gguf_path);
  EXPECT_EQ(ours.model, want.model);
  EXPECT_EQ(ours.bos, want.bos);
  EXPECT_EQ(ours.eos, want.eos);
  EXPECT_EQ(ours.unk, want.unk);
  EXPECT_EQ(ours.add_bos, want.add_bos);
  EXPECT_EQ(ours.add_eos, want.add_eos);
  EXPECT_EQ(ours.add_space_prefix, want.add_space_prefix);
  ASSERT_EQ(ours.size(), want.size());
  size_t n_token_diff = 0, n_type_diff = 0;
  for (size_t id = 0; id < want.size(); ++id) {
    if (ours.tokens[id] != want.tokens[id] && n_token_diff++ < 5) {
      ADD_FAILURE() << "token " << id << ": \"" << ours.tokens[id] << "\" vs \"" << want.tokens[id] << "\"";
    }
    if (ours.types[id] != want.types[id] && n_type_diff++ < 5) {
      ADD_FAILURE() << "type of " << id << ": " << static_cast<int>(ours.types[id]) << " vs "
                    << static_cast<int>(want.types[id]);
    }
  }
  EXPECT_EQ(n_token_diff, 0u);
  EXPECT_EQ(n_type_diff, 0u);
  // Only the order of scores matters to SentencePiece BPE, and only among Normal pieces of two or
  // more code points (what a merge can produce). Where the file's scores tie (Llama 2's
  // whitespace runs, all -1e9) ours may order them either way; otherwise the order must agree.
  std::vector<size_t> merged;
  for (size_t id = 0; id < want.size(); ++id) {
    if (want.types[id] == TokenType::Normal && n_code_points(want.tokens[id]) >= 2) merged.push_back(id);
  }
  std::sort(merged.begin(), merged.end(), [&](size_t a, size_t b) { return want.scores[a] > want.scores[b]; });
  size_t n_order_diff = 0;
  float group_min = 0;  // the least of our scores over the file's previous (higher) score groups
  for (size_t i = 0; i < merged.size();) {
    size_t j = i;
    float this_max = -std::numeric_limits<float>::infinity(), this_min = std::numeric_limits<float>::infinity();
    for (; j < merged.size() && want.scores[merged[j]] == want.scores[merged[i]]; ++j) {
      this_max = std::max(this_max, ours.scores[merged[j]]);
      this_min = std::min(this_min, ours.scores[merged[j]]);
    }
    if (i > 0 && !(this_max < group_min) && n_order_diff++ < 5) {
      ADD_FAILURE() << "piece " << merged[i] << " (\"" << want.tokens[merged[i]]
                    << "\") ranks before a piece the file scores higher";
    }
    group_min = std::min(group_min, this_min);
    i = j;
  }
  EXPECT_EQ(n_order_diff, 0u);
  if (HasFailure()) return;
  std::printf("vocab-compare: %zu tokens, %zu mergeable pieces: tokens, types, specials and merge order equal %s\n",
              want.size(), merged.size(), gguf_path);
}

}  // namespace
}  // namespace velocity::tokenizer
