// Stop strings over streamed text: finds where generation must stop and holds back the bytes
// that might turn out to be the start of a stop string.
//
// The text arrives in chunks (one per decoded token). The stream stops at the first byte where
// some stop string is complete; when several complete at that byte, the longest (the one that
// starts earliest) wins. Defining "first" by where a match *ends* is what makes the result
// independent of chunking: a stop that completes earlier is seen earlier however the text is
// split. Everything before the match is emitted; the stop string itself is not.
//
// Matching is on bytes (UTF-8 is not decoded). Each stop string runs a KMP automaton whose state
// (the longest suffix of the stream that is a prefix of that stop) carries over between chunks,
// so a chunk of n bytes costs O(n * n_stops) and the held-back text is at most 255 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace velocity::runtime {

class StopStrings {
 public:
  static constexpr size_t kMaxStops = 16;
  static constexpr size_t kMaxStopBytes = 256;

  // Throws velocity::Error for an empty stop string, more than kMaxStops of them, or one
  // longer than kMaxStopBytes. No stop strings at all is allowed (everything passes through).
  explicit StopStrings(std::vector<std::string> stops);

  struct Pushed {
    std::string text;         // safe to emit now
    bool stopped = false;     // a stop string matched; `text` ends right before it
    int32_t stop_index = -1;  // which one (index into the constructor's list), -1 if none
  };

  // Feeds the next chunk of text. After a stop, further pushes return {"", true, index}.
  Pushed push(std::string_view text);

  // At the end of generation: the held-back text ("" after a stop).
  std::string flush();

  // Back to the start of a stream.
  void reset();

  bool stopped() const { return stop_index_ >= 0; }

 private:
  struct Stop {
    std::string text;
    std::vector<uint16_t> failure;  // KMP: failure[i] = longest proper border of text[0, i]
    size_t state = 0;               // bytes of `text` matched by the end of the stream
  };

  std::vector<Stop> stops_;
  std::string held_;  // text not emitted yet: the longest stop-prefix suffix of the stream
  int32_t stop_index_ = -1;
};

}  // namespace velocity::runtime
