// StopStrings tests. The reference below is a brute force over the whole text, written from the
// definition (the stream stops at the first byte where a stop string is complete; the longest
// such stop wins), independent of the streaming automaton.
#include "runtime/stop_strings.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace velocity::runtime {
namespace {

struct Outcome {
  std::string emitted;  // everything emitted, flush included
  bool stopped = false;
  int32_t stop_index = -1;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{'" << o.emitted << "', stopped=" << o.stopped << ", index=" << o.stop_index << "}";
}

Outcome reference(const std::string& text, const std::vector<std::string>& stops) {
  for (size_t end = 1; end <= text.size(); ++end) {
    int32_t best = -1;
    for (size_t s = 0; s < stops.size(); ++s) {
      const std::string& stop = stops[s];
      if (stop.size() <= end && text.compare(end - stop.size(), stop.size(), stop) == 0 &&
          (best < 0 || stop.size() > stops[size_t(best)].size())) {
        best = static_cast<int32_t>(s);
      }
    }
    if (best >= 0) return {text.substr(0, end - stops[size_t(best)].size()), true, best};
  }
  return {text, false, -1};
}

// Feeds `chunks` in order and collects what comes out.
Outcome run(const std::vector<std::string>& stops, const std::vector<std::string>& chunks) {
  StopStrings stop_strings(stops);
  Outcome out;
  for (const std::string& chunk : chunks) {
    StopStrings::Pushed pushed = stop_strings.push(chunk);
    EXPECT_FALSE(out.stopped && !pushed.text.empty()) << "text emitted after a stop";
    out.emitted += pushed.text;
    if (pushed.stopped) {
      out.stopped = true;
      out.stop_index = pushed.stop_index;
    }
  }
  out.emitted += stop_strings.flush();
  return out;
}

std::vector<std::string> bytes_of(const std::string& text) {
  std::vector<std::string> chunks;
  for (char c : text) chunks.emplace_back(1, c);
  return chunks;
}

// Every way to cut `text` into two chunks and into single bytes must give `expected`.
// Three-chunk cuts are O(n^2) runs; long texts skip them.
void expect_for_every_chunking(const std::vector<std::string>& stops, const std::string& text, const Outcome& expected,
                               bool three_chunks = true) {
  EXPECT_EQ(run(stops, {text}), expected) << "one chunk";
  EXPECT_EQ(run(stops, bytes_of(text)), expected) << "byte by byte";
  for (size_t i = 0; i <= text.size(); ++i) {
    EXPECT_EQ(run(stops, {text.substr(0, i), text.substr(i)}), expected) << "split at " << i;
    for (size_t j = i; three_chunks && j <= text.size(); ++j) {
      EXPECT_EQ(run(stops, {text.substr(0, i), text.substr(i, j - i), text.substr(j)}), expected)
          << "split at " << i << ", " << j;
    }
  }
}

TEST(StopStrings, MatchAtEveryChunkBoundary) {
  const Outcome expected{"Hello ", true, 0};
  EXPECT_EQ(reference("Hello world, bye", {"world"}), expected);
  expect_for_every_chunking({"world"}, "Hello world, bye", expected);
}

TEST(StopStrings, HoldsBackOnlyPossibleStopPrefixes) {
  StopStrings stop_strings({"</end>"});
  auto p = stop_strings.push("abc</e");
  EXPECT_EQ(p.text, "abc");
  EXPECT_FALSE(p.stopped);
  p = stop_strings.push("x<");
  EXPECT_EQ(p.text, "</ex");  // the held "</e" was not a stop after all; "<" may start one
  p = stop_strings.push("/end>tail");
  EXPECT_EQ(p.text, "");
  EXPECT_TRUE(p.stopped);
  EXPECT_EQ(p.stop_index, 0);
  EXPECT_EQ(stop_strings.push("more").text, "");
  EXPECT_TRUE(stop_strings.push("more").stopped);
  EXPECT_EQ(stop_strings.flush(), "");
}

TEST(StopStrings, OverlappingCandidates) {
  expect_for_every_chunking({"abab"}, "ababab", {"", true, 0});
  expect_for_every_chunking({"abab"}, "xabaababy", {"xaba", true, 0});
  expect_for_every_chunking({"aab"}, "aaab", {"a", true, 0});  // a naive restart misses it
  expect_for_every_chunking({"abcabd"}, "abcabcabd!", {"abc", true, 0});
  EXPECT_EQ(reference("xabaababy", {"abab"}), (Outcome{"xaba", true, 0}));
}

TEST(StopStrings, EarliestMatchWins) {
  // "lo w" completes before "world" does.
  expect_for_every_chunking({"world", "lo w"}, "hello world", {"hel", true, 1});
  // Completing first beats starting first: "b" is complete at byte 2, "abc" only at byte 3.
  expect_for_every_chunking({"abc", "b"}, "xabc", {"xa", true, 1});
  // Both complete at the same byte: the longer one (earlier start) wins.
  expect_for_every_chunking({"bc", "abc"}, "xabcd", {"x", true, 1});
  expect_for_every_chunking({"cd", "stop"}, "no stop here, cd", {"no ", true, 1});
}

TEST(StopStrings, Utf8) {
  const std::string text = "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C!";  // "héllo 世界!"
  expect_for_every_chunking({"\xE4\xB8\x96\xE7\x95\x8C"}, text, {"h\xC3\xA9llo ", true, 0});
  expect_for_every_chunking({"\xC3\xA9l"}, text, {"h", true, 0});
  // Chunks cut at character boundaries give back whole characters: a held suffix starts where a
  // stop string starts, at a lead byte.
  StopStrings stop_strings({"\xE4\xB8\x96\xE7\x95\x8C\xF0\x9F\x98\x80"});  // "世界😀"
  EXPECT_EQ(stop_strings.push("h\xC3\xA9llo ").text, "h\xC3\xA9llo ");
  EXPECT_EQ(stop_strings.push("\xE4\xB8\x96").text, "");
  EXPECT_EQ(stop_strings.push("\xE7\x95\x8C").text, "");
  EXPECT_EQ(stop_strings.push("!").text, "\xE4\xB8\x96\xE7\x95\x8C!");
}

TEST(StopStrings, NoMatchEmitsEverythingAfterFlush) {
  const std::string text = "the end is not </en here </e";
  expect_for_every_chunking({"</end>"}, text, {text, false, -1});
  StopStrings stop_strings({"</end>"});
  EXPECT_EQ(stop_strings.push(text).text, "the end is not </en here ");
  EXPECT_EQ(stop_strings.flush(), "</e");
}

TEST(StopStrings, NoStopStringsPassEverythingThrough) {
  StopStrings stop_strings({});
  EXPECT_EQ(stop_strings.push("abc").text, "abc");
  EXPECT_EQ(stop_strings.flush(), "");
}

TEST(StopStrings, EmittedTextNeverDependsOnChunking) {
  std::mt19937 gen(2024);
  auto random_string = [&](size_t min_len, size_t max_len) {
    std::uniform_int_distribution<size_t> len(min_len, max_len);
    std::uniform_int_distribution<int> letter(0, 2);
    std::string s(len(gen), 'a');
    for (char& c : s) c = static_cast<char>('a' + letter(gen));
    return s;
  };
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<std::string> stops;
    std::uniform_int_distribution<int> n_stops(1, 4);
    for (int i = n_stops(gen); i > 0; --i) stops.push_back(random_string(1, 6));
    const std::string text = random_string(0, 40);
    std::vector<std::string> chunks;
    for (size_t pos = 0; pos < text.size();) {
      const size_t n = std::uniform_int_distribution<size_t>(0, 7)(gen);
      chunks.push_back(text.substr(pos, n));
      pos += n;
    }
    const Outcome expected = reference(text, stops);
    ASSERT_EQ(run(stops, chunks), expected) << "trial " << trial << " text '" << text << "'";
  }
}

TEST(StopStrings, ResetStartsANewStream) {
  StopStrings stop_strings({"ab"});
  EXPECT_TRUE(stop_strings.push("xab").stopped);
  stop_strings.reset();
  EXPECT_FALSE(stop_strings.stopped());
  auto p = stop_strings.push("ya");
  EXPECT_EQ(p.text, "y");
  EXPECT_FALSE(p.stopped);
  EXPECT_EQ(stop_strings.push("b").stop_index, 0);
}

TEST(StopStrings, Limits) {
  EXPECT_THROW(StopStrings({"ok", ""}), Error);
  EXPECT_THROW(StopStrings(std::vector<std::string>(17, "x")), Error);
  EXPECT_THROW(StopStrings({std::string(257, 'x')}), Error);
  EXPECT_NO_THROW(StopStrings(std::vector<std::string>(16, "x")));
  try {
    StopStrings({"a", std::string(300, 'y')});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stop[1]"), std::string::npos) << e.what();
  }
  // The longest allowed stop string, matched across chunks.
  const std::string stop(256, 'z');
  expect_for_every_chunking({stop}, "a" + std::string(255, 'z') + "a" + stop + "b",
                            {"a" + std::string(255, 'z') + "a", true, 0},
                            /*three_chunks=*/false);
}

}  // namespace
}  // namespace velocity::runtime
