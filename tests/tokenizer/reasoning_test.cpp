#include "tokenizer/reasoning.h"

#include <gtest/gtest.h>

#include <random>

namespace velocity::tok {
namespace {

ReasoningDelta run_chunked(ReasoningFormat format, bool starts_in, std::string_view text,
                           const std::vector<size_t>& cuts) {
  ReasoningParser parser(format, starts_in);
  ReasoningDelta all;
  size_t prev = 0;
  auto add = [&](const ReasoningDelta& d) {
    all.reasoning += d.reasoning;
    all.content += d.content;
  };
  for (size_t cut : cuts) {
    add(parser.push(text.substr(prev, cut - prev)));
    prev = cut;
  }
  add(parser.push(text.substr(prev)));
  add(parser.finish());
  return all;
}

// The result must not depend on chunking: whole string, every single split point, every byte
// alone, and random chunkings.
void expect_split(ReasoningFormat format, bool starts_in, std::string_view text, std::string_view reasoning,
                  std::string_view content) {
  auto check = [&](const std::vector<size_t>& cuts, const std::string& how) {
    const ReasoningDelta d = run_chunked(format, starts_in, text, cuts);
    EXPECT_EQ(d.reasoning, reasoning) << how;
    EXPECT_EQ(d.content, content) << how;
  };
  check({}, "whole");
  for (size_t i = 1; i < text.size(); ++i) check({i}, "split at " + std::to_string(i));
  std::vector<size_t> bytes;
  for (size_t i = 1; i < text.size(); ++i) bytes.push_back(i);
  check(bytes, "byte by byte");
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < text.size(); ++i)
      if (rng() % 3 == 0) cuts.push_back(i);
    check(cuts, "random chunking " + std::to_string(trial));
  }
}

// DeepSeek-R1's first template (January 2025) only strips "</think>" from past turns; its later
// ones open "<think>" in the generation prompt; gpt-oss's harmony channels; a plain ChatML one.
TEST(Reasoning, FormatFromTemplate) {
  EXPECT_EQ(reasoning_format_of_template(
                "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"),
            ReasoningFormat::Think);
  EXPECT_EQ(reasoning_format_of_template("{{'<｜Assistant｜><think>\\n'}}"), ReasoningFormat::Think);
  EXPECT_EQ(reasoning_format_of_template("<|start|>assistant<|channel|>final<|message|>"), ReasoningFormat::Harmony);
  EXPECT_EQ(reasoning_format_of_template("<|im_start|>assistant\\n"), ReasoningFormat::None);
}

TEST(Reasoning, ThinkBlock) {
  expect_split(ReasoningFormat::Think, false, "<think>\nLet me see.\n</think>\n\nThe answer is 4.",
               "\nLet me see.\n", "\n\nThe answer is 4.");
}

TEST(Reasoning, GenerationStartsInsideThink) {
  expect_split(ReasoningFormat::Think, true, "2+2 is 4.</think>Four.", "2+2 is 4.", "Four.");
}

TEST(Reasoning, NoThinkIsAllContent) {
  expect_split(ReasoningFormat::Think, false, "Just an answer < with > tags <thin", "",
               "Just an answer < with > tags <thin");
}

TEST(Reasoning, UnclosedThinkStaysReasoning) {
  expect_split(ReasoningFormat::Think, false, "<think>still thinking </thi", "still thinking </thi", "");
}

TEST(Reasoning, OnlyOneThinkBlock) {
  expect_split(ReasoningFormat::Think, false, "<think>a</think>b<think>c</think>", "a", "b<think>c</think>");
}

TEST(Reasoning, HarmonyAnalysisThenFinal) {
  expect_split(ReasoningFormat::Harmony, false,
               "<|channel|>analysis<|message|>User asks 2+2.<|end|><|start|>assistant<|channel|>final<|message|>"
               "4<|return|>",
               "User asks 2+2.", "4");
}

TEST(Reasoning, HarmonyToolCallIsContent) {
  expect_split(ReasoningFormat::Harmony, false,
               "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
               "to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>",
               "Need weather.", "{\"city\":\"Paris\"}");
}

TEST(Reasoning, HarmonyFinalOnly) {
  expect_split(ReasoningFormat::Harmony, false, "<|channel|>final<|message|>Hello <|unknown|> there", "",
               "Hello <|unknown|> there");
}

TEST(Reasoning, NoneFormatPassesThrough) {
  expect_split(ReasoningFormat::None, false, "<think>x</think>", "", "<think>x</think>");
}

}  // namespace
}  // namespace velocity::tok
