#include "tools/synth_vocab.h"

#include <fmt/format.h>

#include <string_view>
#include <unordered_set>

#include "core/error.h"
#include "tools/synth_random.h"

namespace velocity::tools::synthetic {
namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order; the vocabulary lists the printable ones first.
std::vector<std::string> make_byte_tokens() {
  std::vector<uint32_t> bs;
  for (uint32_t b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (uint32_t b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (uint32_t b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<uint32_t> cs = bs;
  std::vector<bool> seen(256, false);
  for (uint32_t b : bs) seen[b] = true;
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    if (seen[b]) continue;
    bs.push_back(b);
    cs.push_back(256 + n++);
  }
  std::vector<std::string> out;
  out.reserve(256);
  for (uint32_t cp : cs) {
    std::string s;
    append_utf8(s, cp);
    out.push_back(std::move(s));
  }
  return out;
}

// Index into the first n tokens, skewed towards the start (short tokens), so that merged tokens
// stay short as in a real vocabulary: with u^6, a third of the picks at 200k tokens fall on the
// 256 byte tokens, and tokens average about 9 bytes.
size_t pick_index(Rng& rng, size_t n) {
  const double u = rng.uniform();
  const double u2 = u * u;
  const size_t i = static_cast<size_t>(static_cast<double>(n) * u2 * u2 * u2);
  return i < n ? i : n - 1;
}

SpecialToken control(std::string text) { return {std::move(text), kTokenControl}; }
SpecialToken user_defined(std::string text) { return {std::move(text), kTokenUserDefined}; }

}  // namespace

const std::vector<std::string>& byte_tokens() {
  static const std::vector<std::string> tokens = make_byte_tokens();
  return tokens;
}

Vocab build_vocab(const VocabSpec& spec, uint64_t seed) {
  const int64_t n_head = static_cast<int64_t>(spec.head.size());
  const int64_t n_tail = static_cast<int64_t>(spec.tail.size());
  if (spec.n_bpe < 256) fail("synth vocab: {} BPE tokens, fewer than the 256 byte tokens", spec.n_bpe);
  if (n_head + spec.n_bpe + n_tail > spec.n_vocab)
    fail("synth vocab: {} head + {} BPE + {} special tokens exceed n_vocab {}", n_head, spec.n_bpe, n_tail,
         spec.n_vocab);

  Vocab v;
  v.tokens.reserve(static_cast<size_t>(spec.n_vocab));
  v.types.reserve(static_cast<size_t>(spec.n_vocab));
  v.merges.reserve(static_cast<size_t>(spec.n_bpe - 256));
  for (const auto& t : spec.head) {
    v.tokens.push_back(t.text);
    v.types.push_back(t.type);
  }

  // The BPE part: byte tokens, then merged tokens that are unique concatenations of two earlier
  // BPE tokens (indices relative to the first byte token).
  const size_t bpe_begin = v.tokens.size();
  std::unordered_set<std::string_view> seen;
  seen.reserve(static_cast<size_t>(spec.n_bpe) * 2);
  for (const auto& t : byte_tokens()) {
    v.tokens.push_back(t);
    v.types.push_back(kTokenNormal);
  }
  Rng rng(mix64(seed ^ 0x766f636162756c61ull));  // "vocabula"
  // `seen` holds views into v.tokens: valid because v.tokens was reserved to n_vocab entries
  // above and never grows past that, so it never reallocates.
  for (size_t i = bpe_begin; i < v.tokens.size(); ++i) seen.insert(v.tokens[i]);
  // Special and padding texts are made of byte-token characters too; no merge may produce one.
  std::unordered_set<std::string_view> reserved;
  for (const auto& t : spec.head) reserved.insert(t.text);
  for (const auto& t : spec.tail) reserved.insert(t.text);
  auto taken = [&](const std::string& s) {
    return seen.count(s) || reserved.count(s) || s.starts_with("[PAD");
  };
  std::string candidate;
  while (static_cast<int64_t>(v.tokens.size() - bpe_begin) < spec.n_bpe) {
    const size_t n = v.tokens.size() - bpe_begin;
    int attempts = 0;
    for (;;) {
      const size_t a = bpe_begin + pick_index(rng, n);
      const size_t b = bpe_begin + pick_index(rng, n);
      candidate.assign(v.tokens[a]);
      candidate += v.tokens[b];
      if (!taken(candidate)) {
        v.merges.push_back(v.tokens[a] + " " + v.tokens[b]);
        break;
      }
      // A crowded low end (all short pairs taken) is escaped by picking uniformly.
      if (++attempts > 64) {
        const size_t a2 = bpe_begin + static_cast<size_t>(rng.below(n));
        const size_t b2 = bpe_begin + static_cast<size_t>(rng.below(n));
        candidate.assign(v.tokens[a2]);
        candidate += v.tokens[b2];
        if (!taken(candidate)) {
          v.merges.push_back(v.tokens[a2] + " " + v.tokens[b2]);
          break;
        }
      }
    }
    v.tokens.push_back(candidate);
    v.types.push_back(kTokenNormal);
    seen.insert(v.tokens.back());
  }

  for (const auto& t : spec.tail) {
    v.tokens.push_back(t.text);
    v.types.push_back(t.type);
  }
  while (static_cast<int64_t>(v.tokens.size()) < spec.n_vocab) {
    v.tokens.push_back(fmt::format("[PAD{}]", v.tokens.size()));
    v.types.push_back(kTokenUnused);
  }

  auto find_special = [&](const std::string& text, const char* what) -> int64_t {
    if (text.empty()) return -1;
    for (int64_t i = 0; i < n_head; ++i)
      if (v.tokens[static_cast<size_t>(i)] == text) return i;
    const int64_t tail_begin = n_head + spec.n_bpe;
    for (int64_t i = tail_begin; i < tail_begin + n_tail; ++i)
      if (v.tokens[static_cast<size_t>(i)] == text) return i;
    fail("synth vocab: {} token '{}' is not among the special tokens", what, text);
  };
  v.bos_id = find_special(spec.bos, "BOS");
  v.eos_id = find_special(spec.eos, "EOS");
  v.padding_id = find_special(spec.padding, "padding");
  return v;
}

// Llama 3 / 3.1 (meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json): 256 special tokens at
// 128000..128255.
std::vector<SpecialToken> llama3_special_tokens() {
  std::vector<SpecialToken> t = {
      control("<|begin_of_text|>"),          control("<|end_of_text|>"),
      control("<|reserved_special_token_0|>"), control("<|reserved_special_token_1|>"),
      control("<|finetune_right_pad_id|>"),   control("<|reserved_special_token_2|>"),
      control("<|start_header_id|>"),         control("<|end_header_id|>"),
      control("<|eom_id|>"),                  control("<|eot_id|>"),
      control("<|python_tag|>"),
  };
  for (int i = 3; t.size() < 256; ++i) t.push_back(control(fmt::format("<|reserved_special_token_{}|>", i)));
  return t;
}

// Qwen2.5 (Qwen/Qwen2.5-Coder-32B-Instruct tokenizer_config.json): ids 151643..151664. The
// converter marks "<|…|>" tokens CONTROL (does_token_look_special) and the non-special added
// <tool_call> tokens USER_DEFINED.
std::vector<SpecialToken> qwen25_special_tokens() {
  return {
      control("<|endoftext|>"),     control("<|im_start|>"),       control("<|im_end|>"),
      control("<|object_ref_start|>"), control("<|object_ref_end|>"), control("<|box_start|>"),
      control("<|box_end|>"),       control("<|quad_start|>"),     control("<|quad_end|>"),
      control("<|vision_start|>"),  control("<|vision_end|>"),     control("<|vision_pad|>"),
      control("<|image_pad|>"),     control("<|video_pad|>"),      user_defined("<tool_call>"),
      user_defined("</tool_call>"), control("<|fim_prefix|>"),     control("<|fim_middle|>"),
      control("<|fim_suffix|>"),    control("<|fim_pad|>"),        control("<|repo_name|>"),
      control("<|file_sep|>"),
  };
}

// Qwen3 (Qwen/Qwen3-30B-A3B tokenizer_config.json): Qwen2.5's 22, then 151665..151668.
std::vector<SpecialToken> qwen3_special_tokens() {
  auto t = qwen25_special_tokens();
  t.push_back(user_defined("<tool_response>"));
  t.push_back(user_defined("</tool_response>"));
  t.push_back(user_defined("<think>"));
  t.push_back(user_defined("</think>"));
  return t;
}

// DeepSeek-V3 / R1 (deepseek-ai/DeepSeek-R1 tokenizer_config.json): BOS, EOS and pad at 0..2.
std::vector<SpecialToken> deepseek_v3_head_tokens() {
  return {control("<｜begin▁of▁sentence｜>"), control("<｜end▁of▁sentence｜>"), control("<｜▁pad▁｜>")};
}

// DeepSeek-R1 added tokens at 128000..128814: 798 place holders, <think> </think> (not special),
// FIM, chat roles and tool-call markers.
std::vector<SpecialToken> deepseek_r1_tail_tokens() {
  std::vector<SpecialToken> t;
  for (int i = 0; i < 798; ++i) t.push_back(control(fmt::format("<｜place▁holder▁no▁{}｜>", i)));
  t.push_back(user_defined("<think>"));
  t.push_back(user_defined("</think>"));
  for (const char* s : {"<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<｜User｜>", "<｜Assistant｜>",
                        "<|EOT|>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
                        "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
                        "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>"})
    t.push_back(control(s));
  return t;
}

// DeepSeek-V2-Lite: BOS and EOS right after the 100000 BPE tokens (the remaining added tokens of
// the real tokenizer are not reproduced; padding fills up to vocab_size 102400).
std::vector<SpecialToken> deepseek_v2_tail_tokens() {
  return {control("<｜begin▁of▁sentence｜>"), control("<｜end▁of▁sentence｜>")};
}

// gpt-oss (o200k_harmony, openai/gpt-oss-20b tokenizer.json): 199998..201087.
std::vector<SpecialToken> gpt_oss_special_tokens() {
  std::vector<SpecialToken> t;
  for (int id = 199998; id <= 201087; ++id) {
    std::string text;
    switch (id) {
      case 199998: text = "<|startoftext|>"; break;
      case 199999: text = "<|endoftext|>"; break;
      case 200002: text = "<|return|>"; break;
      case 200003: text = "<|constrain|>"; break;
      case 200005: text = "<|channel|>"; break;
      case 200006: text = "<|start|>"; break;
      case 200007: text = "<|end|>"; break;
      case 200008: text = "<|message|>"; break;
      case 200012: text = "<|call|>"; break;
      case 200018: text = "<|endofprompt|>"; break;
      default: text = fmt::format("<|reserved_{}|>", id); break;
    }
    t.push_back(control(std::move(text)));
  }
  return t;
}

}  // namespace velocity::tools::synthetic
