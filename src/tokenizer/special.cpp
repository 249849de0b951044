#include "tokenizer/special.h"

#include <algorithm>

namespace velocity::tokenizer {

bool SpecialSplitter::Candidates::empty() const {
  return std::all_of(by_first_byte.begin(), by_first_byte.end(), [](const auto& v) { return v.empty(); });
}

SpecialSplitter::SpecialSplitter(const Vocab& vocab) : vocab_(vocab) {
  for (size_t id = 0; id < vocab.size(); ++id) {
    const TokenType t = vocab.types[id];
    const std::string& text = vocab.tokens[id];
    if (text.empty()) continue;
    const auto first = static_cast<uint8_t>(text[0]);
    if (t == TokenType::Control || t == TokenType::Unknown || t == TokenType::UserDefined) {
      all_.by_first_byte[first].push_back(static_cast<int32_t>(id));
    }
    if (t == TokenType::UserDefined) user_defined_.by_first_byte[first].push_back(static_cast<int32_t>(id));
  }
  for (Candidates* c : {&all_, &user_defined_}) {
    for (auto& list : c->by_first_byte) {
      std::stable_sort(list.begin(), list.end(),
                       [&](int32_t a, int32_t b) { return vocab.tokens[a].size() > vocab.tokens[b].size(); });
    }
  }
}

int32_t SpecialSplitter::match_at(const Candidates& c, std::string_view text, size_t pos) const {
  for (int32_t id : c.by_first_byte[static_cast<uint8_t>(text[pos])]) {
    const std::string& t = vocab_.tokens[id];
    if (text.size() - pos >= t.size() && text.compare(pos, t.size(), t) == 0) return id;
  }
  return kNoToken;
}

void SpecialSplitter::split(std::string_view text, bool parse_special, std::vector<Fragment>& out) const {
  const Candidates& c = parse_special ? all_ : user_defined_;
  size_t raw_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    if (c.by_first_byte[static_cast<uint8_t>(text[pos])].empty()) {
      ++pos;
      continue;
    }
    const int32_t id = match_at(c, text, pos);
    if (id == kNoToken) {
      ++pos;
      continue;
    }
    if (pos > raw_start) out.push_back({kNoToken, text.substr(raw_start, pos - raw_start)});
    const size_t len = vocab_.tokens[id].size();
    out.push_back({id, text.substr(pos, len)});
    pos += len;
    raw_start = pos;
  }
  if (raw_start < text.size()) out.push_back({kNoToken, text.substr(raw_start)});
}

}  // namespace velocity::tokenizer
