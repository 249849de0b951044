#include "tokenizer/hf_import.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/pretokenize.h"

namespace velocity::tokenizer {

namespace {

using json = nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The steps of a pre-tokenizer / normalizer / decoder (a Sequence or a single one).
std::vector<json> steps(const json& node, const char* list_key) {
  std::vector<json> out;
  if (node.is_null()) return out;
  if (node.value("type", "") == "Sequence") {
    for (const json& s : node.at(list_key)) out.push_back(s);
  } else {
    out.push_back(node);
  }
  return out;
}

// A token given in tokenizer_config.json as "text" or {"content": "text"}.
std::string config_token(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v["content"].get<std::string>();
  return "";
}

}  // namespace

Vocab hf_import_json(const std::string& tokenizer_json, const std::string& config_json, const std::string& name) {
  json root;
  json config = json::object();
  try {
    root = json::parse(tokenizer_json);
    if (!config_json.empty()) config = json::parse(config_json);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", name, e.what());
  }
  try {
    const json& model = root.at("model");
    const std::string model_type = model.value("type", "");
    if (model_type != "BPE") fail("{}: model.type = \"{}\" is not supported (only BPE)", name, model_type);

    Vocab vocab;
    // Which family: byte-level (GPT-2 alphabet) or SentencePiece-style (▁ and byte fallback).
    bool byte_level = false, metaspace = false, prepend_space = false;
    std::vector<std::string> patterns;
    for (const json& s : steps(root.value("pre_tokenizer", json()), "pretokenizers")) {
      const std::string t = s.value("type", "");
      if (t == "Split") {
        const json& p = s.at("pattern");
        if (!p.contains("Regex")) fail("{}: pre_tokenizer Split with a String pattern is not supported", name);
        if (s.value("behavior", "") != "Isolated" || s.value("invert", false)) {
          fail("{}: pre_tokenizer Split behavior \"{}\" is not supported (only Isolated)", name,
               s.value("behavior", ""));
        }
        patterns.push_back(p["Regex"].get<std::string>());
      } else if (t == "ByteLevel") {
        byte_level = true;
        if (s.value("use_regex", true)) patterns.push_back(pre_tokenizer_patterns("gpt-2").at(0));
        if (s.value("add_prefix_space", false)) fail("{}: ByteLevel add_prefix_space = true is not supported", name);
      } else if (t == "Metaspace") {
        metaspace = true;
        prepend_space = s.value("prepend_scheme", "always") != "never";
      } else {
        fail("{}: pre_tokenizer type \"{}\" is not supported", name, t);
      }
    }
    for (const json& s : steps(root.value("normalizer", json()), "normalizers")) {
      const std::string t = s.value("type", "");
      if (t == "NFC") {
        vocab.normalize_nfc = true;
      } else if (t == "Prepend" && s.value("prepend", "") == "\xE2\x96\x81") {
        metaspace = true;
        prepend_space = true;
      } else if (t == "Replace") {
        metaspace = true;  // " " -> "▁"
      } else {
        fail("{}: normalizer type \"{}\" is not supported", name, t);
      }
    }
    if (!byte_level && !metaspace) {
      for (const json& s : steps(root.value("decoder", json()), "decoders")) {
        if (s.value("type", "") == "ByteLevel") byte_level = true;
      }
    }
    if (byte_level) {
      vocab.type = VocabType::Bpe;
      vocab.model = "gpt2";
      vocab.pre = pre_tokenizer_for_patterns(patterns);
      if (vocab.pre.empty()) {
        fail("{}: the pre-tokenizer regexes match no known pre-tokenizer (known: {}); first: {}", name,
             known_pre_tokenizers(), patterns.empty() ? std::string("(none)") : patterns[0]);
      }
      vocab.add_space_prefix = false;
    } else if (metaspace || model.value("byte_fallback", false)) {
      vocab.type = VocabType::Spm;
      vocab.model = "llama";
      vocab.pre = "default";
      vocab.add_space_prefix = prepend_space;
    } else {
      fail("{}: neither a byte-level nor a SentencePiece-style BPE tokenizer", name);
    }
    vocab.ignore_merges = model.value("ignore_merges", false);

    // Tokens: the model's vocab plus added tokens (which may extend it).
    const json& model_vocab = model.at("vocab");
    size_t n_vocab = 0;
    for (const auto& [text, id] : model_vocab.items()) n_vocab = std::max(n_vocab, id.get<size_t>() + 1);
    const json added = root.value("added_tokens", json::array());
    for (const json& a : added) n_vocab = std::max(n_vocab, a.at("id").get<size_t>() + 1);
    if (n_vocab > (size_t{1} << 26)) fail("{}: {} tokens is implausibly many", name, n_vocab);
    vocab.tokens.assign(n_vocab, "");
    vocab.types.assign(n_vocab, TokenType::Unused);
    vocab.scores.assign(n_vocab, 0.0f);
    std::vector<bool> filled(n_vocab, false);
    for (const auto& [text, id_json] : model_vocab.items()) {
      const size_t id = id_json.get<size_t>();
      vocab.tokens[id] = text;
      vocab.types[id] = TokenType::Normal;
      filled[id] = true;
      if (vocab.type == VocabType::Spm) {
        vocab.scores[id] = -static_cast<float>(id);
        if (text.size() == 6 && text.starts_with("<0x") && text.back() == '>') {
          vocab.types[id] = TokenType::Byte;
          vocab.scores[id] = 0.0f;
        }
      }
    }
    for (const json& a : added) {
      const size_t id = a.at("id").get<size_t>();
      vocab.tokens[id] = a.at("content").get<std::string>();
      vocab.types[id] = a.value("special", false) ? TokenType::Control : TokenType::UserDefined;
      if (vocab.type == VocabType::Spm) vocab.scores[id] = 0.0f;
      filled[id] = true;
    }
    for (size_t id = 0; id < n_vocab; ++id) {
      if (!filled[id]) vocab.tokens[id] = "[PAD" + std::to_string(id) + "]";  // llama.cpp's filler for holes
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      const auto it = model_vocab.find(model["unk_token"].get<std::string>());
      if (it != model_vocab.end()) {
        vocab.unk = it->get<int32_t>();
        vocab.types[vocab.unk] = TokenType::Unknown;
      }
    }
    for (const json& m : model.value("merges", json::array())) {
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) fail("{}: merge \"{}\" has no space separator", name, s);
        vocab.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2) {
        vocab.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        fail("{}: merge {} is neither \"a b\" nor [a, b]", name, m.dump());
      }
    }
    if (vocab.type == VocabType::Spm && !vocab.merges.empty()) {
      // HF applies SentencePiece-style BPE by merge rank, and the rank is not always the piece
      // id: Llama 2's whitespace runs ("▁▁" is id 259) carry score -1e9 in the .model and so
      // rank last. A piece's score is minus the rank of its first merge; pieces no merge
      // produces rank after every merge, by id.
      const float n_merges = static_cast<float>(vocab.merges.size());
      for (size_t id = 0; id < n_vocab; ++id) {
        if (vocab.types[id] == TokenType::Normal) vocab.scores[id] = -(n_merges + static_cast<float>(id));
      }
      std::vector<bool> ranked(n_vocab, false);
      for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
        const auto it = model_vocab.find(vocab.merges[rank].first + vocab.merges[rank].second);
        if (it == model_vocab.end()) continue;
        const size_t id = it->get<size_t>();
        if (ranked[id] || vocab.types[id] != TokenType::Normal) continue;
        ranked[id] = true;
        vocab.scores[id] = -static_cast<float>(rank);
      }
    }

    // Special ids: by name from tokenizer_config.json, and the post-processor's template.
    const auto id_of = [&](const std::string& text) -> int32_t {
      if (text.empty()) return kNoToken;
      for (size_t id = 0; id < n_vocab; ++id) {
        if (vocab.tokens[id] == text && vocab.types[id] != TokenType::Normal) return static_cast<int32_t>(id);
      }
      for (size_t id = 0; id < n_vocab; ++id) {
        if (vocab.tokens[id] == text) return static_cast<int32_t>(id);
      }
      return kNoToken;
    };
    vocab.bos = id_of(config_token(config, "bos_token"));
    vocab.eos = id_of(config_token(config, "eos_token"));
    vocab.pad = id_of(config_token(config, "pad_token"));
    if (vocab.unk == kNoToken) vocab.unk = id_of(config_token(config, "unk_token"));
    vocab.eot = id_of("<|eot_id|>");
    if (vocab.eot == kNoToken) vocab.eot = id_of("<|im_end|>");
    vocab.eom = id_of("<|eom_id|>");
    // tokenizer_config.json's chat_template: a string, or a list of {name, template} of which
    // transformers uses the one named "default".
    if (config.contains("chat_template")) {
      const json& t = config["chat_template"];
      if (t.is_string()) {
        vocab.chat_template = t.get<std::string>();
      } else if (t.is_array()) {
        for (const json& entry : t)
          if (entry.value("name", "") == "default") vocab.chat_template = entry.at("template").get<std::string>();
      } else if (!t.is_null()) {
        fail("{}: chat_template is neither a string nor a list of named templates", name);
      }
    }
    vocab.add_bos = vocab.add_eos = false;
    const json post = root.value("post_processor", json());
    for (const json& p : steps(post, "processors")) {
      if (p.value("type", "") != "TemplateProcessing") continue;
      const json& single = p.at("single");
      for (size_t i = 0; i < single.size(); ++i) {
        if (!single[i].contains("SpecialToken")) continue;
        const std::string token = single[i]["SpecialToken"].at("id").get<std::string>();
        const int32_t id = id_of(token);
        if (id == kNoToken) fail("{}: post_processor names \"{}\", which is not a token", name, token);
        if (i == 0) {
          vocab.add_bos = true;
          vocab.bos = id;
        } else if (i + 1 == single.size()) {
          vocab.add_eos = true;
          vocab.eos = id;
        }
      }
    }
    vocab.validate(name);
    return vocab;
  } catch (const json::exception& e) {
    fail("{}: unexpected tokenizer.json structure: {}", name, e.what());
  }
}

Vocab hf_import(const std::string& tokenizer_json_path, const std::string& config_path) {
  return hf_import_json(read_text(tokenizer_json_path), config_path.empty() ? "" : read_text(config_path),
                        tokenizer_json_path);
}

std::vector<std::pair<std::string, gguf::Value>> vocab_to_gguf_metadata(const Vocab& vocab) {
  std::vector<std::pair<std::string, gguf::Value>> kv;
  kv.emplace_back("tokenizer.ggml.model", gguf::Value::string(vocab.model));
  kv.emplace_back("tokenizer.ggml.pre", gguf::Value::string(vocab.pre));
  kv.emplace_back("tokenizer.ggml.tokens", gguf::Value::string_array(vocab.tokens));
  if (vocab.type == VocabType::Spm) kv.emplace_back("tokenizer.ggml.scores", gguf::Value::array(vocab.scores));
  std::vector<int32_t> types(vocab.types.size());
  for (size_t i = 0; i < types.size(); ++i) types[i] = static_cast<int32_t>(vocab.types[i]);
  kv.emplace_back("tokenizer.ggml.token_type", gguf::Value::array(types));
  if (!vocab.merges.empty()) {
    std::vector<std::string> merges;
    merges.reserve(vocab.merges.size());
    for (const auto& [a, b] : vocab.merges) merges.push_back(a + " " + b);
    kv.emplace_back("tokenizer.ggml.merges", gguf::Value::string_array(std::move(merges)));
  }
  const auto id = [&](const char* key, int32_t v) {
    if (v != kNoToken) kv.emplace_back(key, gguf::Value::scalar(static_cast<uint32_t>(v)));
  };
  id("tokenizer.ggml.bos_token_id", vocab.bos);
  id("tokenizer.ggml.eos_token_id", vocab.eos);
  id("tokenizer.ggml.unknown_token_id", vocab.unk);
  id("tokenizer.ggml.padding_token_id", vocab.pad);
  id("tokenizer.ggml.eot_token_id", vocab.eot);
  id("tokenizer.ggml.eom_token_id", vocab.eom);
  kv.emplace_back("tokenizer.ggml.add_bos_token", gguf::Value::scalar(vocab.add_bos));
  kv.emplace_back("tokenizer.ggml.add_eos_token", gguf::Value::scalar(vocab.add_eos));
  kv.emplace_back("tokenizer.ggml.add_space_prefix", gguf::Value::scalar(vocab.add_space_prefix));
  if (!vocab.chat_template.empty()) kv.emplace_back("tokenizer.chat_template", gguf::Value::string(vocab.chat_template));
  return kv;
}

}  // namespace velocity::tokenizer
