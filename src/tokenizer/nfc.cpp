#include "tokenizer/nfc.h"

#include <algorithm>
#include <vector>

#include "tokenizer/nfc_data.h"
#include "tokenizer/utf8.h"

namespace velocity::tokenizer {

namespace {

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

bool maybe_changed(char32_t cp) {
  if (cp < 0x300) return false;
  const auto* end = nfc_data::kMaybeChanged + nfc_data::kMaybeChangedSize;
  const auto* it = std::upper_bound(nfc_data::kMaybeChanged, end, cp,
                                    [](char32_t c, const nfc_data::Range& r) { return c < r.first; });
  return it != nfc_data::kMaybeChanged && cp <= (it - 1)->last;
}

uint32_t ccc(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = nfc_data::kCcc + nfc_data::kCccSize;
  const auto* it = std::upper_bound(nfc_data::kCcc, end, cp,
                                    [](char32_t c, const nfc_data::CccRange& r) { return c < r.first; });
  return it != nfc_data::kCcc && cp <= (it - 1)->last ? (it - 1)->ccc : 0;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto* end = nfc_data::kDecompositions + nfc_data::kDecompositionsSize;
  const auto* it = std::lower_bound(nfc_data::kDecompositions, end, cp,
                                    [](const nfc_data::Decomposition& d, char32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second != 0) decompose(it->second, out);
}

char32_t compose(char32_t first, char32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  const auto* end = nfc_data::kCompositions + nfc_data::kCompositionsSize;
  const auto* it = std::lower_bound(nfc_data::kCompositions, end, std::pair<char32_t, char32_t>{first, second},
                                    [](const nfc_data::Composition& c, const std::pair<char32_t, char32_t>& k) {
                                      return c.first != k.first ? c.first < k.first : c.second < k.second;
                                    });
  return it != end && it->first == first && it->second == second ? it->composite : 0;
}

}  // namespace

bool nfc_is_quick_yes(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0xCC) {  // lead bytes below 0xCC encode code points < U+0300
      pos += static_cast<uint8_t>(text[pos]) < 0x80 ? 1 : 2;
      continue;
    }
    if (maybe_changed(utf8_next(text, pos))) return false;
  }
  return true;
}

std::string nfc_normalize(std::string_view text) {
  std::vector<char32_t> cps;
  cps.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) decompose(utf8_next(text, pos), cps);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (ccc(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && ccc(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<ptrdiff_t>(i), cps.begin() + static_cast<ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  // Canonical composition.
  std::vector<char32_t> out;
  out.reserve(cps.size());
  size_t starter = SIZE_MAX;  // index in `out` of the last starter
  uint32_t last_ccc = 0;
  for (char32_t cp : cps) {
    const uint32_t c = ccc(cp);
    if (starter != SIZE_MAX) {
      const bool blocked = !out.empty() && out.size() - 1 != starter && (last_ccc == 0 || last_ccc >= c);
      if (!blocked) {
        const char32_t composite = compose(out[starter], cp);
        if (composite != 0) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (c == 0) {
      starter = out.size();
      last_ccc = 0;
    } else {
      last_ccc = c;
    }
    out.push_back(cp);
  }
  std::string result;
  result.reserve(text.size());
  for (char32_t cp : out) append_utf8(result, cp);
  return result;
}

}  // namespace velocity::tokenizer
