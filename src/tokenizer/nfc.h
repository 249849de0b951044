// Unicode NFC normalization (Qwen's tokenizer.json normalizer), on valid UTF-8.
#pragma once

#include <string>
#include <string_view>

namespace velocity::tokenizer {

// True when `text` contains no code point that NFC could change (the common case: a fast scan).
bool nfc_is_quick_yes(std::string_view text);
// Canonical decomposition, canonical ordering, canonical composition.
std::string nfc_normalize(std::string_view text);

}  // namespace velocity::tokenizer
