// A tokenizer vocabulary as GGUF stores it (`tokenizer.ggml.*` keys), filled once at load.
//
// Two models: "gpt2" = byte-level BPE (tokens are strings over the GPT-2 byte alphabet, ranked
// merges "a b"), and "llama" = SentencePiece BPE (tokens with scores, ▁ for space, <0xXX> byte
// tokens). The same struct is produced from a Hugging Face tokenizer.json by hf_import.h.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace velocity::gguf {
class File;
}

namespace velocity::tokenizer {

enum class VocabType { Bpe, Spm };

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,        // special tokens (BOS, EOS, <|im_start|> ...): matched in text only with parse_special
  UserDefined = 4,    // added tokens that are not special: always matched in text
  Unused = 5,
  Byte = 6,           // SentencePiece <0xXX> byte-fallback tokens
};

constexpr int32_t kNoToken = -1;

struct Vocab {
  VocabType type = VocabType::Bpe;
  std::string model;        // tokenizer.ggml.model: "gpt2" or "llama"
  std::string pre;          // tokenizer.ggml.pre: pre-tokenizer name ("default" when absent)

  std::vector<std::string> tokens;   // [n_vocab] token text (byte-level or ▁-escaped form)
  std::vector<float> scores;         // [n_vocab] SentencePiece scores (0 when absent)
  std::vector<TokenType> types;      // [n_vocab] (Normal when absent)
  std::vector<std::pair<std::string, std::string>> merges;  // BPE merges, rank = index

  int32_t bos = kNoToken, eos = kNoToken, unk = kNoToken, pad = kNoToken;
  int32_t eot = kNoToken, eom = kNoToken;
  // Fill-in-the-middle: prefix, suffix and middle markers (tokenizer.ggml.fim_pre/suf/mid_token_id,
  // else the known pieces of Qwen2.5-Coder, StarCoder, DeepSeek-Coder and Code Llama found in
  // the vocabulary; find_fim_tokens). All three or none.
  int32_t fim_pre = kNoToken, fim_suf = kNoToken, fim_mid = kNoToken;
  bool has_fim() const { return fim_pre != kNoToken && fim_suf != kNoToken && fim_mid != kNoToken; }
  // Repository-level FIM markers (tokenizer.ggml.fim_rep/sep_token_id, else Qwen2.5-Coder's
  // <|repo_name|> / <|file_sep|> or StarCoder's <reponame> / <file_sep>): the repository name and
  // the file separator of /infill's extra context. Optional, each on its own.
  int32_t fim_rep = kNoToken, fim_sep = kNoToken;

  bool add_bos = false;           // tokenizer.ggml.add_bos_token
  bool add_eos = false;           // tokenizer.ggml.add_eos_token
  bool add_space_prefix = true;   // tokenizer.ggml.add_space_prefix (SPM: prepend ▁)
  std::string chat_template;      // tokenizer.chat_template (Jinja source; "" when absent)
  // Not stored in GGUF; derived from `pre` (or set by hf_import from tokenizer.json):
  bool ignore_merges = false;     // BPE: a pre-token that is itself a token is emitted whole
  bool normalize_nfc = false;     // apply Unicode NFC to the text before splitting (Qwen)

  size_t size() const { return tokens.size(); }

  // Reads `tokenizer.ggml.*` from a GGUF; throws velocity::Error naming the file and key.
  static Vocab from_gguf(const gguf::File& file, const std::string& name);
  static Vocab load(const std::string& gguf_path);

  // Sets ignore_merges / normalize_nfc from `pre`, as the model's own tokenizer does.
  void apply_pre_defaults();
  // When the FIM ids are not all set: the first family of known FIM pieces present in `tokens`
  // (all three of a family, or nothing).
  void find_fim_tokens();
  // Checks sizes, ids in range, and the pre-tokenizer name; throws velocity::Error with `name`.
  void validate(const std::string& name) const;
};

}  // namespace velocity::tokenizer
