#include "tokenizer/vocab.h"

#include "core/error.h"
#include "gguf/file.h"
#include "tokenizer/pretokenize.h"

namespace velocity::tokenizer {

namespace {

int32_t read_id(const gguf::File& file, const std::string& name, const char* key) {
  const gguf::Value* v = file.find(key);
  if (!v) return kNoToken;
  if (!v->is_integer()) fail("{}: {}: expected an integer token id, found {}", name, key, v->summary());
  const int64_t id = v->as_int();
  // llama.cpp writes -1 (as a wrapped u32 in some converters) for "no such token".
  if (id < 0 || id == 0xFFFFFFFF) return kNoToken;
  if (id > INT32_MAX) fail("{}: {}: token id {} out of range", name, key, id);
  return static_cast<int32_t>(id);
}

bool read_bool(const gguf::File& file, const char* key, bool fallback) {
  const gguf::Value* v = file.find(key);
  if (!v) return fallback;
  if (v->type() == gguf::ValueType::BOOL) return v->as_bool();
  if (v->is_integer()) return v->as_int() != 0;
  return fallback;
}

}  // namespace

Vocab Vocab::from_gguf(const gguf::File& file, const std::string& name) {
  Vocab vocab;
  const gguf::Value* model = file.find("tokenizer.ggml.model");
  if (!model) fail("{}: no tokenizer.ggml.model key: the file carries no tokenizer", name);
  vocab.model = model->as_string();
  if (vocab.model == "gpt2") {
    vocab.type = VocabType::Bpe;
  } else if (vocab.model == "llama") {
    vocab.type = VocabType::Spm;
  } else {
    fail("{}: tokenizer.ggml.model = \"{}\" is not supported (supported: \"gpt2\", \"llama\")", name, vocab.model);
  }
  const gguf::Value* pre = file.find("tokenizer.ggml.pre");
  vocab.pre = pre ? pre->as_string() : "default";

  const gguf::Value* tokens = file.find("tokenizer.ggml.tokens");
  if (!tokens) fail("{}: tokenizer.ggml.tokens is missing", name);
  vocab.tokens = tokens->strings();
  const size_t n_vocab = vocab.tokens.size();

  if (const gguf::Value* scores = file.find("tokenizer.ggml.scores")) {
    vocab.scores = scores->array_as<float>();
    if (vocab.scores.size() != n_vocab) {
      fail("{}: tokenizer.ggml.scores has {} entries, expected {} (one per token)", name, vocab.scores.size(),
           n_vocab);
    }
  } else {
    vocab.scores.assign(n_vocab, 0.0f);
  }
  if (const gguf::Value* types = file.find("tokenizer.ggml.token_type")) {
    const std::vector<int32_t> raw = types->array_as<int32_t>();
    if (raw.size() != n_vocab) {
      fail("{}: tokenizer.ggml.token_type has {} entries, expected {} (one per token)", name, raw.size(), n_vocab);
    }
    vocab.types.resize(n_vocab);
    for (size_t i = 0; i < n_vocab; ++i) {
      if (raw[i] < 0 || raw[i] > 6) fail("{}: tokenizer.ggml.token_type[{}] = {} is not a token type", name, i, raw[i]);
      vocab.types[i] = static_cast<TokenType>(raw[i]);
    }
  } else {
    vocab.types.assign(n_vocab, TokenType::Normal);
  }
  if (const gguf::Value* merges = file.find("tokenizer.ggml.merges")) {
    const std::vector<std::string>& raw = merges->strings();
    vocab.merges.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      // The separator is the first space after the first character ("  a" style merges of a
      // space token are stored byte-level encoded, so a plain space never starts a part).
      const size_t sp = raw[i].find(' ', 1);
      if (sp == std::string::npos) fail("{}: tokenizer.ggml.merges[{}] = \"{}\" has no space separator", name, i, raw[i]);
      vocab.merges.emplace_back(raw[i].substr(0, sp), raw[i].substr(sp + 1));
    }
  }

  vocab.bos = read_id(file, name, "tokenizer.ggml.bos_token_id");
  vocab.eos = read_id(file, name, "tokenizer.ggml.eos_token_id");
  vocab.unk = read_id(file, name, "tokenizer.ggml.unknown_token_id");
  vocab.pad = read_id(file, name, "tokenizer.ggml.padding_token_id");
  vocab.eot = read_id(file, name, "tokenizer.ggml.eot_token_id");
  vocab.eom = read_id(file, name, "tokenizer.ggml.eom_token_id");
  vocab.fim_pre = read_id(file, name, "tokenizer.ggml.fim_pre_token_id");
  vocab.fim_suf = read_id(file, name, "tokenizer.ggml.fim_suf_token_id");
  vocab.fim_mid = read_id(file, name, "tokenizer.ggml.fim_mid_token_id");
  vocab.fim_rep = read_id(file, name, "tokenizer.ggml.fim_rep_token_id");
  vocab.fim_sep = read_id(file, name, "tokenizer.ggml.fim_sep_token_id");
  // llama.cpp's defaults: SPM adds BOS and a space prefix unless told otherwise; BPE adds neither.
  const bool spm = vocab.type == VocabType::Spm;
  vocab.add_bos = read_bool(file, "tokenizer.ggml.add_bos_token", spm);
  vocab.add_eos = read_bool(file, "tokenizer.ggml.add_eos_token", false);
  vocab.add_space_prefix = read_bool(file, "tokenizer.ggml.add_space_prefix", spm);
  if (const gguf::Value* tmpl = file.find("tokenizer.chat_template")) {
    if (tmpl->type() != gguf::ValueType::STRING) fail("{}: tokenizer.chat_template is not a string", name);
    vocab.chat_template = tmpl->as_string();
  }
  if (spm && vocab.unk == kNoToken) {
    for (size_t i = 0; i < n_vocab; ++i) {
      if (vocab.types[i] == TokenType::Unknown) {
        vocab.unk = static_cast<int32_t>(i);
        break;
      }
    }
  }
  vocab.apply_pre_defaults();
  vocab.find_fim_tokens();
  vocab.validate(name);
  return vocab;
}

void Vocab::find_fim_tokens() {
  auto find = [&](std::initializer_list<const char*> pieces) {
    for (const char* piece : pieces)
      for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] == piece) return static_cast<int32_t>(i);
    return kNoToken;
  };
  if (fim_rep == kNoToken) fim_rep = find({"<|repo_name|>", "<reponame>"});
  if (fim_sep == kNoToken) fim_sep = find({"<|file_sep|>", "<file_sep>"});
  if (has_fim()) return;
  // (prefix, suffix, middle), in the order llama.cpp's vocab loader tries them.
  static const char* const kFamilies[][3] = {
      {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"},      // Qwen2.5-Coder
      {"<fim_prefix>", "<fim_suffix>", "<fim_middle>"},            // StarCoder, Granite
      {"<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"},      // DeepSeek-Coder
      {"<PRE>", "<SUF>", "<MID>"},                                 // Code Llama (SentencePiece)
      {"▁<PRE>", "▁<SUF>", "▁<MID>"},
  };
  for (const auto& family : kFamilies) {
    int32_t ids[3] = {kNoToken, kNoToken, kNoToken};
    for (size_t i = 0; i < tokens.size(); ++i)
      for (int k = 0; k < 3; ++k)
        if (ids[k] == kNoToken && tokens[i] == family[k]) ids[k] = static_cast<int32_t>(i);
    if (ids[0] != kNoToken && ids[1] != kNoToken && ids[2] != kNoToken) {
      fim_pre = ids[0], fim_suf = ids[1], fim_mid = ids[2];
      return;
    }
  }
  fim_pre = fim_suf = fim_mid = kNoToken;  // a partial set from the metadata is no set
}

Vocab Vocab::load(const std::string& gguf_path) {
  const gguf::File file = gguf::File::open(gguf_path);
  return from_gguf(file, gguf_path);
}

void Vocab::apply_pre_defaults() {
  // Llama 3 and o200k-style tokenizer.json files set "ignore_merges": true; Qwen's normalizer is NFC.
  ignore_merges = pre == "llama-bpe" || pre == "llama3" || pre == "gpt-4o";
  normalize_nfc = pre == "qwen2";
}

void Vocab::validate(const std::string& name) const {
  const size_t n_vocab = tokens.size();
  if (n_vocab == 0) fail("{}: the vocabulary is empty", name);
  if (n_vocab > static_cast<size_t>(INT32_MAX)) fail("{}: {} tokens do not fit 32-bit ids", name, n_vocab);
  if (scores.size() != n_vocab || types.size() != n_vocab) {
    fail("{}: {} tokens but {} scores and {} token types", name, n_vocab, scores.size(), types.size());
  }
  const auto check_id = [&](int32_t id, const char* what) {
    if (id != kNoToken && (id < 0 || static_cast<size_t>(id) >= n_vocab)) {
      fail("{}: {} token id {} is out of range (vocabulary has {} tokens)", name, what, id, n_vocab);
    }
  };
  check_id(bos, "BOS");
  check_id(eos, "EOS");
  check_id(unk, "UNK");
  check_id(pad, "PAD");
  check_id(eot, "EOT");
  check_id(eom, "EOM");
  check_id(fim_pre, "FIM prefix");
  check_id(fim_suf, "FIM suffix");
  check_id(fim_mid, "FIM middle");
  check_id(fim_rep, "FIM repository");
  check_id(fim_sep, "FIM file separator");
  if (add_bos && bos == kNoToken) fail("{}: add_bos_token is true but there is no BOS token id", name);
  if (add_eos && eos == kNoToken) fail("{}: add_eos_token is true but there is no EOS token id", name);
  if (type == VocabType::Bpe && !pre_tokenizer_known(pre)) {
    fail("{}: tokenizer.ggml.pre = \"{}\" is not a known pre-tokenizer (known: {})", name, pre,
         known_pre_tokenizers());
  }
}

}  // namespace velocity::tokenizer
