// UTF-8 helpers shared by the tokenizers: decoding with the WHATWG/ICU "maximal subpart"
// replacement rule (what JavaScript's TextDecoder and Rust's String::from_utf8_lossy do), so that
// invalid input becomes U+FFFD exactly where Hugging Face's side would see it; and the GPT-2
// byte-level alphabet (each byte 0..255 shown as one printable code point).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace velocity::tokenizer {

constexpr char32_t kReplacementChar = 0xFFFD;

// Appends the UTF-8 encoding of `cp` (must be <= 0x10FFFF; surrogates are encoded as-is).
void append_utf8(std::string& out, char32_t cp);

// Length in bytes of the valid UTF-8 sequence starting at s[pos], or 0 when the bytes there are
// not a valid sequence. `maximal_subpart` receives the number of bytes to replace by one U+FFFD
// in that case (>= 1).
size_t utf8_valid_length(std::string_view s, size_t pos, size_t* maximal_subpart = nullptr);

// True when `s` is entirely valid UTF-8 (no surrogates, no overlongs, <= U+10FFFF).
bool utf8_is_valid(std::string_view s);

// `s` with every maximal invalid subpart replaced by U+FFFD (returns `s` itself when valid).
std::string utf8_sanitize(std::string_view s);

// Decodes one code point of valid UTF-8 at s[pos] and advances pos. Precondition: valid input.
char32_t utf8_next(std::string_view s, size_t& pos);

// GPT-2 byte-level alphabet: the code point that stands for each byte, and its UTF-8 text.
struct ByteLevel {
  std::array<char32_t, 256> byte_to_cp{};
  std::array<std::string, 256> byte_to_text{};
  // Inverse map for code points below 0x200 (all byte-level code points are < 0x144); -1 when
  // the code point is not in the alphabet.
  std::array<int16_t, 0x200> cp_to_byte{};
};
const ByteLevel& byte_level();

}  // namespace velocity::tokenizer
