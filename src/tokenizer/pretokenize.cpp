#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>

#include "core/error.h"

namespace velocity::tokenizer {

namespace {

// Patterns exactly as the models' tokenizer.json files spell them (Split regexes, in order; for
// GPT-2 the one of ByteLevel(use_regex = true)).
const std::map<std::string, std::vector<std::string>, std::less<>>& pattern_table() {
  static const std::map<std::string, std::vector<std::string>, std::less<>> table = [] {
    std::map<std::string, std::vector<std::string>, std::less<>> t;
    const std::string gpt2 = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
    const std::string llama3 =
        R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
    const std::string qwen2 =
        R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
    const std::string o200k =
        R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
    t["gpt-2"] = {gpt2};
    for (const char* name : {"llama-bpe", "llama3", "smaug-bpe", "dbrx"}) t[name] = {llama3};
    for (const char* name : {"qwen2", "stablelm2"}) t[name] = {qwen2};
    t["gpt-4o"] = {o200k};
    // The letter class is Unicode's cased letters (LC); characters with singleton canonical
    // decompositions are written as \u escapes so that no editor's NFC can change them.
    t["deepseek-llm"] = {
        "[\r\n]",
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1F7Dᾀ-ᾴᾶ-ᾼ\u1FBEῂ-ῄῆ-ῌῐ-\u1FD3ῖ-\u1FDBῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212A-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
        "\\s+$",
        "[一-龥ࠀ-一가-퟿]+",
        "\\p{N}+",
    };
    t["deepseek-coder"] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"};
    t["deepseek-v3"] = {
        "\\p{N}{1,3}",
        "[一-龥぀-ゟ゠-ヿ]+",
        R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^)re" "\r\n" R"re(\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[)re"
        "\r\n" R"re(]*|\s*[)re" "\r\n" R"re(]+|\s+(?!\S)|\s+)re",
    };
    const std::vector<std::string> starcoder = {
        "\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"};
    for (const char* name : {"starcoder", "refact", "command-r", "smollm", "codeshell"}) t[name] = starcoder;
    t["falcon"] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+",
                   "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "[0-9][0-9][0-9]"};
    // llama.cpp's fallback for BPE vocabularies without a known pre-tokenizer.
    t["default"] = {"[\\p{P}\\$\\+<=>\\^~\\|]+",
                    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "\\p{N}+",
                    "[0-9][0-9][0-9]"};
    return t;
  }();
  return table;
}

// Unicode White_Space (what Oniguruma's \s matches), as the inside of a character class.
constexpr std::string_view kWhiteSpaceClass =
    R"(\t-\r\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})";

// Per-thread match state: PCRE2 match data (ovector) and a JIT stack big enough for long pieces.
struct Scratch {
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* match_context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  Scratch() {
    match_data = pcre2_match_data_create(32, nullptr);
    match_context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    VELOCITY_CHECK(match_data && match_context && jit_stack, "PCRE2 allocation failed");
    pcre2_jit_stack_assign(match_context, nullptr, jit_stack);
  }
  ~Scratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(match_context);
    pcre2_match_data_free(match_data);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

bool pre_tokenizer_known(std::string_view pre) { return pattern_table().count(pre) != 0; }

std::string known_pre_tokenizers() {
  std::string out;
  for (const auto& [name, patterns] : pattern_table()) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

const std::vector<std::string>& pre_tokenizer_patterns(std::string_view pre) {
  static const std::vector<std::string> none;
  const auto it = pattern_table().find(pre);
  return it == pattern_table().end() ? none : it->second;
}

std::string pre_tokenizer_for_patterns(const std::vector<std::string>& patterns) {
  // Prefer the canonical names (the table has aliases with the same patterns).
  for (const char* name : {"llama-bpe", "qwen2", "gpt-4o", "gpt-2", "deepseek-llm", "deepseek-v3", "deepseek-coder",
                           "starcoder", "falcon"}) {
    if (pre_tokenizer_patterns(name) == patterns) return name;
  }
  for (const auto& [name, p] : pattern_table()) {
    if (p == patterns) return name;
  }
  return "";
}

std::string oniguruma_to_pcre2(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      ++i;
      if (e == 's') {
        if (in_class) {
          out += kWhiteSpaceClass;
        } else {
          out += '[';
          out += kWhiteSpaceClass;
          out += ']';
        }
      } else if (e == 'S' && !in_class) {
        out += "[^";
        out += kWhiteSpaceClass;
        out += ']';
      } else {
        VELOCITY_CHECK(!(e == 'S' && in_class), "\\S inside a class is not supported: {}", pattern);
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Regex() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(std::string_view pre) {
  const std::vector<std::string>& patterns = pre_tokenizer_patterns(pre);
  if (patterns.empty()) fail("unknown pre-tokenizer \"{}\" (known: {})", pre, known_pre_tokenizers());
  for (const std::string& hf : patterns) {
    const std::string pattern = oniguruma_to_pcre2(hf);
    auto regex = std::make_unique<Regex>();
    int error = 0;
    PCRE2_SIZE offset = 0;
    regex->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
    if (!regex->code) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      fail("pre-tokenizer \"{}\": regex does not compile at offset {}: {}", pre, offset,
           reinterpret_cast<const char*>(message));
    }
    regex->jit = pcre2_jit_compile(regex->code, PCRE2_JIT_COMPLETE) == 0;
    stages_.push_back(std::move(regex));
  }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

// Appends the Isolated split of `text` by `code`: matches and the gaps between them.
void split_one(const pcre2_code* code, bool jit, std::string_view text, std::vector<std::string_view>& out) {
  Scratch& s = scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0, last = 0;
  while (start <= text.size()) {
    int rc = jit ? pcre2_jit_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, s.match_data,
                                   s.match_context)
                 : PCRE2_ERROR_JIT_STACKLIMIT;
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
      // JIT stack exhausted (or no JIT): the interpreter keeps its backtracking state on the heap.
      rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, s.match_data, s.match_context);
    }
    if (rc < 0) break;  // no more matches (or a resource limit: the rest stays one piece)
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(s.match_data);
    const size_t m0 = ovector[0], m1 = ovector[1];
    if (m0 > last) out.push_back(text.substr(last, m0 - last));
    if (m1 > m0) {
      out.push_back(text.substr(m0, m1 - m0));
      last = m1;
      start = m1;
    } else {
      // Empty match: step over one code point.
      if (m0 >= text.size()) break;
      size_t next = m0 + 1;
      while (next < text.size() && (static_cast<uint8_t>(text[next]) & 0xC0) == 0x80) ++next;
      start = next;
    }
  }
  if (last < text.size()) out.push_back(text.substr(last));
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  if (text.empty()) return;
  if (stages_.size() == 1) {
    split_one(stages_[0]->code, stages_[0]->jit, text, pieces);
    return;
  }
  std::vector<std::string_view> current{text}, next;
  for (const auto& stage : stages_) {
    next.clear();
    for (std::string_view piece : current) split_one(stage->code, stage->jit, piece, next);
    std::swap(current, next);
  }
  pieces.insert(pieces.end(), current.begin(), current.end());
}

}  // namespace velocity::tokenizer
