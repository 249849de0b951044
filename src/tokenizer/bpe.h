// Byte-level BPE (GPT-2 style) on one pre-token.
//
// A pre-token's bytes start as one symbol each (the byte's GPT-2 alphabet token); the adjacent
// pair with the lowest merge rank is merged until none is left, ties going to the leftmost pair
// (Hugging Face's and llama.cpp's rule). Symbols form a linked list and candidate pairs sit in a
// binary heap, so a word of n bytes costs O(n log n) even when it is a megabyte long.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace velocity::tokenizer {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `token_ids` maps token text to id (built by the Tokenizer). Merges whose parts or result are
  // not tokens are ignored, as Hugging Face's loader does for byte-level vocabularies.
  BpeModel(const Vocab& vocab, const TokenMap& token_ids);

  // Appends the ids of one pre-token (raw UTF-8 bytes; the byte-level mapping happens here).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  const Merge* find_merge(int32_t left, int32_t right) const {
    const auto it = merges_.find(key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  }

  const TokenMap& token_ids_;
  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_token_{};  // id of each byte's one-character token, or kNoToken
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace velocity::tokenizer
