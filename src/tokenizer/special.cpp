#include "tokenizer/special.h"

#include <algorithm>

namespace velocity::tokenizer {

SpecialSplitter::SpecialSplitter(const Vocab& vocab) : vocab_(vocab), nodes_(1) {
  for (size_t id = 0; id < vocab.size(); ++id) {
    const TokenType t = vocab.types[id];
    const std::string& text = vocab.tokens[id];
    if (text.empty() || (t != TokenType::Control && t != TokenType::Unknown && t != TokenType::UserDefined)) continue;
    uint32_t at = 0;
    for (char c : text) {
      const Node* next = child(nodes_[at], static_cast<uint8_t>(c));
      if (next) {
        at = static_cast<uint32_t>(next - nodes_.data());
        continue;
      }
      nodes_[at].children.emplace_back(static_cast<uint8_t>(c), static_cast<uint32_t>(nodes_.size()));
      at = static_cast<uint32_t>(nodes_.size());
      nodes_.emplace_back();
    }
    // Ids ascend, so the first token of a text and type is the lowest.
    int32_t& slot = t == TokenType::UserDefined ? nodes_[at].user_defined : nodes_[at].control;
    if (slot == kNoToken) slot = static_cast<int32_t>(id);
    starts_any_[static_cast<uint8_t>(text[0])] = true;
    if (t == TokenType::UserDefined) starts_user_defined_[static_cast<uint8_t>(text[0])] = true;
  }
}

const SpecialSplitter::Node* SpecialSplitter::child(const Node& node, uint8_t byte) const {
  for (const auto& [b, index] : node.children)
    if (b == byte) return &nodes_[index];
  return nullptr;
}

int32_t SpecialSplitter::match_at(std::string_view text, size_t pos, bool parse_special, size_t plain_from) const {
  int32_t best = kNoToken;
  const Node* node = &nodes_[0];
  for (size_t end = pos; end < text.size();) {
    node = child(*node, static_cast<uint8_t>(text[end]));
    if (!node) break;
    ++end;
    // Longer matches come later and win; among tokens of one text, the lowest id.
    int32_t id = node->user_defined;
    if (parse_special && node->control != kNoToken && end <= plain_from && (id == kNoToken || node->control < id))
      id = node->control;
    if (id != kNoToken) best = id;
  }
  return best;
}

int32_t SpecialSplitter::find_control_texts(std::string_view text, std::vector<TextRange>& out) const {
  int32_t first = kNoToken;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if (!starts_any_[static_cast<uint8_t>(text[pos])]) continue;
    // The longest control / unknown token starting here.
    size_t longest = 0;
    int32_t id = kNoToken;
    const Node* node = &nodes_[0];
    for (size_t end = pos; end < text.size();) {
      node = child(*node, static_cast<uint8_t>(text[end]));
      if (!node) break;
      ++end;
      if (node->control != kNoToken) {
        longest = end - pos;
        id = node->control;
      }
    }
    if (id == kNoToken) continue;
    if (first == kNoToken) first = id;
    if (!out.empty() && pos <= out.back().end) out.back().end = std::max(out.back().end, pos + longest);
    else out.push_back({pos, pos + longest});
  }
  return first;
}

void SpecialSplitter::split(std::string_view text, bool parse_special, std::span<const TextRange> plain,
                            std::vector<Fragment>& out) const {
  size_t raw_start = 0;
  size_t next_plain = 0;  // the first plain range that ends after pos
  for (size_t pos = 0; pos < text.size();) {
    while (next_plain < plain.size() && plain[next_plain].end <= pos) ++next_plain;
    const size_t plain_from = next_plain < plain.size() ? std::max(plain[next_plain].begin, pos) : std::string_view::npos;
    // Inside a plain range only user-defined tokens can match.
    const bool controls = parse_special && plain_from != pos;
    if (!(controls ? starts_any_ : starts_user_defined_)[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    const int32_t id = match_at(text, pos, controls, plain_from);
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
