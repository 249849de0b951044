// Synthetic byte-level BPE vocabularies of a real model's size and special tokens, for
// `velocity synth`.
//
// Layout of a vocabulary (ids in order), as convert_hf_to_gguf.py's get_vocab_base writes one:
//   [head specials][256 byte tokens][merged tokens][tail specials][[PAD<id>] … up to n_vocab]
// - head specials: tokens a model keeps at the very start (DeepSeek-V3's BOS/EOS/pad at 0..2);
// - byte tokens: GPT-2's bytes_to_unicode mapping, in its order (id 0 of GPT-2 is "!");
// - merged tokens: each the concatenation of two earlier tokens A and B, with the merge "A B"
//   (so tokens and merges form a valid BPE vocabulary; merge rank = creation order);
// - tail specials: the model's added tokens (<|eot_id|>, <|im_end|>, harmony tokens …);
// - padding up to the config's vocab_size: "[PAD<id>]", type UNUSED, as the converter does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace velocity::tools::synthetic {

// tokenizer.ggml.token_type values (gguf-py TokenType).
enum TokenType : int32_t {
  kTokenNormal = 1,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
};

struct SpecialToken {
  std::string text;
  int32_t type = kTokenControl;  // CONTROL, or USER_DEFINED for added tokens that are not special
};

struct VocabSpec {
  std::string pre;                   // tokenizer.ggml.pre ("llama-bpe", "qwen2", "deepseek-v3" …)
  int64_t n_vocab = 0;               // total entries (the config's vocab_size)
  std::vector<SpecialToken> head;    // ids 0 .. head.size()-1
  int64_t n_bpe = 0;                 // byte + merged tokens, after the head (>= 256)
  std::vector<SpecialToken> tail;    // right after the BPE tokens; padding follows up to n_vocab
  std::string bos;                   // text of the BOS token ("" : none written)
  std::string eos;                   // text of the EOS token
  std::string padding;               // text of the padding token ("" : none written)
  bool add_bos = false;              // tokenizer.ggml.add_bos_token
};

struct Vocab {
  std::vector<std::string> tokens;   // n_vocab entries
  std::vector<int32_t> types;        // TokenType per token
  std::vector<std::string> merges;   // "A B", one per merged token, in creation (rank) order
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  int64_t padding_id = -1;
};

// The 256 byte tokens in GPT-2 order: entry i is the UTF-8 text of the i-th byte token.
const std::vector<std::string>& byte_tokens();

// Builds the vocabulary; the merged tokens depend on `seed` only. Throws velocity::Error when the
// spec does not add up (n_bpe < 256, more tokens than n_vocab, unknown bos/eos text).
Vocab build_vocab(const VocabSpec& spec, uint64_t seed);

// Special-token lists of the model families (their real texts, ids relative to the list start).
std::vector<SpecialToken> llama3_special_tokens();      // 256: <|begin_of_text|> … reserved
std::vector<SpecialToken> qwen25_special_tokens();      // 22: <|endoftext|> … <|file_sep|>
std::vector<SpecialToken> qwen3_special_tokens();       // 26: Qwen2.5's + tool_response, think
std::vector<SpecialToken> deepseek_v3_head_tokens();    // 3: BOS, EOS, pad at ids 0..2
std::vector<SpecialToken> deepseek_r1_tail_tokens();    // 815: place holders, <think>, FIM, tools
std::vector<SpecialToken> deepseek_v2_tail_tokens();    // 2: BOS, EOS (ids 100000, 100001)
std::vector<SpecialToken> gpt_oss_special_tokens();     // 1090: harmony tokens, ids 199998..201087

}  // namespace velocity::tools::synthetic
