// Import of a Hugging Face tokenizer.json (+ optional tokenizer_config.json) into a Vocab, the
// same thing a GGUF's tokenizer.ggml.* keys hold.
//
//   model BPE + ByteLevel pre-tokenizer/decoder  -> "gpt2"; the Split regexes name the `pre`
//   model BPE + byte_fallback / ▁ normalizer     -> "llama" (SentencePiece; a piece's score is
//                                                   minus the rank of its first merge, or -id
//                                                   when there are no merges)
//   added_tokens: special -> Control, else UserDefined; <0xXX> -> Byte; the unk token -> Unknown
//   post_processor TemplateProcessing            -> add_bos / add_eos (what encode(text, true) adds)
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "gguf/value.h"
#include "tokenizer/vocab.h"

namespace velocity::tokenizer {

// `config_path` may be empty. Throws velocity::Error naming the file and the field.
Vocab hf_import(const std::string& tokenizer_json_path, const std::string& config_path = "");
// Same, from the JSON texts; `name` appears in errors.
Vocab hf_import_json(const std::string& tokenizer_json, const std::string& config_json, const std::string& name);

// The GGUF metadata (tokenizer.ggml.* keys) that stores `vocab`.
std::vector<std::pair<std::string, gguf::Value>> vocab_to_gguf_metadata(const Vocab& vocab);

}  // namespace velocity::tokenizer
