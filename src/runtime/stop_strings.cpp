#include "runtime/stop_strings.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace velocity::runtime {

StopStrings::StopStrings(std::vector<std::string> stops) {
  if (stops.size() > kMaxStops) fail("stop strings: at most {} are allowed, got {}", kMaxStops, stops.size());
  stops_.reserve(stops.size());
  for (size_t i = 0; i < stops.size(); ++i) {
    std::string& text = stops[i];
    if (text.empty()) fail("stop strings: stop[{}] is empty", i);
    if (text.size() > kMaxStopBytes) {
      fail("stop strings: stop[{}] is {} bytes long, the limit is {}", i, text.size(), kMaxStopBytes);
    }
    Stop stop;
    stop.failure.assign(text.size(), 0);
    for (size_t j = 1, k = 0; j < text.size(); ++j) {
      while (k > 0 && text[j] != text[k]) k = stop.failure[k - 1];
      if (text[j] == text[k]) ++k;
      stop.failure[j] = static_cast<uint16_t>(k);
    }
    stop.text = std::move(text);
    stops_.push_back(std::move(stop));
  }
}

void StopStrings::reset() {
  for (Stop& stop : stops_) stop.state = 0;
  held_.clear();
  stop_index_ = -1;
}

StopStrings::Pushed StopStrings::push(std::string_view text) {
  if (stopped()) return {"", true, stop_index_};
  for (size_t pos = 0; pos < text.size(); ++pos) {
    const char byte = text[pos];
    int32_t matched = -1;
    for (size_t s = 0; s < stops_.size(); ++s) {
      Stop& stop = stops_[s];
      size_t state = stop.state;
      while (state > 0 && stop.text[state] != byte) state = stop.failure[state - 1];
      if (stop.text[state] == byte) ++state;
      stop.state = state;
      if (state == stop.text.size() &&
          (matched < 0 || stop.text.size() > stops_[static_cast<size_t>(matched)].text.size())) {
        matched = static_cast<int32_t>(s);
      }
    }
    if (matched >= 0) {
      // The match ends at `pos`; its start lies in held_ or in this chunk, never in emitted text
      // (a partial match is always held back).
      std::string out = std::move(held_);
      out.append(text.substr(0, pos + 1));
      out.resize(out.size() - stops_[static_cast<size_t>(matched)].text.size());
      held_.clear();
      stop_index_ = matched;
      return {std::move(out), true, matched};
    }
  }
  size_t hold = 0;
  for (const Stop& stop : stops_) hold = std::max(hold, stop.state);
  std::string out = std::move(held_);
  out.append(text);
  held_.assign(out, out.size() - hold, hold);  // hold <= bytes seen so far, so <= out.size()
  out.resize(out.size() - hold);
  return {std::move(out), false, -1};
}

std::string StopStrings::flush() {
  std::string out = std::move(held_);
  held_.clear();
  for (Stop& stop : stops_) stop.state = 0;
  return out;
}

}  // namespace velocity::runtime
