// The generation loop (runtime/generate.h) on a tiny random llama written here with F32 weights
// and a byte-level vocabulary.
//
// The central check is independent of the KV cache: greedy generation must equal a brute-force
// loop that re-runs the whole sequence through a fresh forward each step and takes the argmax of
// the last row. The others: chunked prefill, seeds, stop strings, n_predict, a full context,
// end-of-generation tokens, cancellation, and batched decode against one sequence at a time.
#include "runtime/generate.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "gguf/writer.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tiny_llama.h"

namespace velocity::runtime {
namespace {

namespace fs = std::filesystem;

using namespace testing;

class GenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("velocity-generate-test-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    path_ = new std::string(write_tiny_llama(*dir_ / "tiny.gguf", 7));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete path_;
  }

  static std::unique_ptr<model::Model> load(int64_t n_ctx = 128, int64_t max_batch = 64, int64_t n_slots = 1) {
    model::LoadOptions o;
    o.n_ctx = n_ctx;
    o.max_batch = max_batch;
    o.n_slots = n_slots;
    o.cache_type_k = DType::F32;
    o.cache_type_v = DType::F32;
    o.n_threads = 2;
    return model::Model::load(*path_, o);
  }
  static tokenizer::Tokenizer tokenizer_of(const model::Model& m) {
    return tokenizer::Tokenizer(tokenizer::Vocab::from_gguf(m.file(), *path_));
  }
  static SamplingParams greedy() {
    SamplingParams p;
    p.temperature = 0;
    return p;
  }
  static SamplingParams random_sampling(uint64_t seed) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = seed;
    return p;
  }

  static fs::path* dir_;
  static std::string* path_;
};

fs::path* GenerateTest::dir_ = nullptr;
std::string* GenerateTest::path_ = nullptr;

int32_t argmax(std::span<const float> x) {
  return (int32_t)(std::max_element(x.begin(), x.end()) - x.begin());  // first maximum: lowest id
}

TEST_F(GenerateTest, GreedyEqualsBruteForceRecomputation) {
  auto model = load();
  const tokenizer::Tokenizer tok = tokenizer_of(*model);
  const std::vector<int32_t> prompt = tok.encode("The quick brown fox", true, false);
  ASSERT_EQ(prompt.front(), kBos);

  Generator gen(*model, tok);
  Sampler sampler(greedy(), (int32_t)kVocab);
  GenerateOptions options;
  options.n_predict = 40;
  options.ignore_eos = true;
  const GenerationResult r = gen.generate(prompt, sampler, options);
  ASSERT_EQ(r.tokens.size(), 40u);
  EXPECT_EQ(r.finish, FinishReason::MaxTokens);
  EXPECT_EQ(r.n_decode_steps, 39);

  // Brute force on a second model: the whole sequence in one forward from position 0, each step.
  auto fresh = load();
  std::vector<int32_t> seq = prompt;
  engine::Batch batch;
  for (size_t step = 0; step < r.tokens.size(); ++step) {
    batch.clear();
    for (size_t i = 0; i < seq.size(); ++i) batch.add(seq[i], (int32_t)i, 0, i + 1 == seq.size());
    const int32_t expected = argmax(fresh->forward(batch));
    ASSERT_EQ(r.tokens[step], expected) << "step " << step;
    seq.push_back(expected);
  }
  // The tokens are not all one id (the test would prove little).
  EXPECT_GT(std::set<int32_t>(r.tokens.begin(), r.tokens.end()).size(), 3u);
}

TEST_F(GenerateTest, ChunkedPrefillGivesTheSameTokens) {
  auto whole = load(128, 64);
  auto chunked = load(128, 3);  // a 13-token prompt in chunks of 3
  const tokenizer::Tokenizer tok = tokenizer_of(*whole);
  const std::vector<int32_t> prompt = tok.encode("chunked prefill", true, false);
  ASSERT_GT(prompt.size(), 6u);
  GenerateOptions options;
  options.n_predict = 16;
  options.ignore_eos = true;
  Sampler a(greedy(), (int32_t)kVocab), b(greedy(), (int32_t)kVocab);
  const GenerationResult ra = Generator(*whole, tok).generate(prompt, a, options);
  const GenerationResult rb = Generator(*chunked, tok).generate(prompt, b, options);
  EXPECT_EQ(ra.tokens, rb.tokens);
}

TEST_F(GenerateTest, StreamedTextIsTheDecodedTokens) {
  auto model = load();
  const tokenizer::Tokenizer tok = tokenizer_of(*model);
  const std::vector<int32_t> prompt = tok.encode("stream", true, false);
  Sampler sampler(random_sampling(3), (int32_t)kVocab);
  GenerateOptions options;
  options.n_predict = 48;
  options.ignore_eos = true;
  std::string streamed;
  int n_pieces = 0;
  const GenerationResult r = Generator(*model, tok).generate(prompt, sampler, options, [&](std::string_view text) {
    EXPECT_FALSE(text.empty());
    streamed.append(text);
    ++n_pieces;
  });
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(streamed, tok.decode(r.tokens));
  EXPECT_GT(n_pieces, 1);
  EXPECT_EQ(r.n_prompt_tokens, (int64_t)prompt.size());
  EXPECT_EQ(r.n_generated, 48);
  EXPECT_GT(r.prompt_ms, 0);
  EXPECT_GT(r.decode_ms, 0);
  EXPECT_GT(r.decode_tokens_per_second(), 0);
}

TEST_F(GenerateTest, SameSeedSameTextDifferentSeedsDiffer) {
  auto model = load();
  const tokenizer::Tokenizer tok = tokenizer_of(*model);
  Generator gen(*model, tok);
  const std::vector<int32_t> prompt = tok.encode("seeds", true, false);
  GenerateOptions options;
  options.n_predict = 32;
  options.ignore_eos = true;
  auto run = [&](uint64_t seed) {
    Sampler s(random_sampling(seed), (int32_t)kVocab);
    return gen.generate(prompt, s, options);
  };
  const GenerationResult a = run(11), b = run(11), c = run(12);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.text, b.text);
  EXPECT_NE(a.tokens, c.tokens);  // 32 draws over 260 tokens: equal with negligible probability
}

TEST_F(GenerateTest, StopStringStopsAndIsNotEmitted) {
  auto model = load();
  const tokenizer::Tokenizer tok = tokenizer_of(*model);
  Generator gen(*model, tok);
  const std::vector<int32_t> prompt = tok.encode("stop strings", true, false);
  GenerateOptions options;
  options.n_predict = 48;
  options.ignore_eos = true;
  options.skip_special = true;
  Sampler s0(random_sampling(5), (int32_t)kVocab);
  const GenerationResult full = gen.generate(prompt, s0, options);
  ASSERT_GT(full.text.size(), 12u);

  // A stop string taken from the middle of that text (whole characters).
  size_t begin = full.text.size() / 2;
  while (begin > 0 && (static_cast<uint8_t>(full.text[begin]) & 0xC0) == 0x80) --begin;
  size_t end = begin + 1;
  for (int chars = 0; end < full.text.size(); ++end) {
    if ((static_cast<uint8_t>(full.text[end]) & 0xC0) != 0x80 && ++chars == 2) break;
  }
  const std::string stop = full.text.substr(begin, end - begin);
  const size_t first = full.text.find(stop);
  ASSERT_NE(first, std::string::npos);

  options.stop = {"never appears \x01\x02", stop};
  Sampler s1(random_sampling(5), (int32_t)kVocab);
  std::string streamed;
  const GenerationResult r = gen.generate(prompt, s1, options, [&](std::string_view t) { streamed.append(t); });
  EXPECT_EQ(r.finish, FinishReason::StopString);
  EXPECT_EQ(r.stop_index, 1);
  EXPECT_EQ(finish_reason_name(r.finish), "stop");
  EXPECT_EQ(r.text, full.text.substr(0, first));
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text.find(stop), std::string::npos);
  EXPECT_LT(r.tokens.size(), full.tokens.size());
}

TEST_F(GenerateTest, NPredictIsRespected) {
  auto model = load();
  const tokenizer::Tokenizer tok = tokenizer_of(*model);
  Generator gen(*model, tok);
  const std::vector<int32_t> prompt = tok.encode("count", true, false);
  for (int64_t n : {0, 1, 5}) {
    Sampler s(greedy(), (int32_t)kVocab);
    GenerateOptions options;
    options.n_predict = n;
    options.ignore_eos = true;
    const GenerationResult r = gen.generate(prompt, s, options);
    EXPECT_EQ(r.n_generated, n);
    EXPECT_EQ((int64_t)r.tokens.size(), n);
    EXPECT_EQ(r.n_decode_steps, std::max<int64_t>(0, n - 1));  // no forward whose logits go unused
    EXPECT_EQ(r.finish, FinishReason::MaxTokens);
    EXPECT_EQ(finish_reason_name(r.finish), "length");
  }
}

TEST_F(GenerateTest, FullContextFinishesWithLength) {
  auto model = load(/*n_ctx=*/16);
  const tokenizer::Tokenizer tok = tokenizer_of(*model);
  Generator gen(*model, tok);
  std::vector<int32_t> prompt = tok.encode("ten bytes", true, false);
  ASSERT_EQ(prompt.size(), 10u);
  GenerateOptions options;  // n_predict < 0: until something stops it
  options.ignore_eos = true;
  Sampler s(random_sampling(1), (int32_t)kVocab);
  GenerationResult r;
  ASSERT_NO_THROW(r = gen.generate(prompt, s, options));
  EXPECT_EQ(r.finish, FinishReason::ContextFull);
  EXPECT_EQ(finish_reason_name(r.finish), "length");
  EXPECT_EQ(r.n_generated, 6);  // prompt + generated == n_ctx

  // A prompt that fills the context: no token, no throw.
  prompt.resize(16, 'a');
  Sampler s2(greedy(), (int32_t)kVocab);
  ASSERT_NO_THROW(r = gen.generate(prompt, s2, options));
  EXPECT_EQ(r.finish, FinishReason::ContextFull);
  EXPECT_EQ(r.n_generated, 0);

  // One that cannot fit is the caller's error.
  prompt.push_back('a');
  EXPECT_THROW(gen.generate(prompt, s2, options), Error);
  EXPECT_THROW(gen.generate(std::vector<int32_t>{}, s2, options), Error);
}

TEST_F(GenerateTest, EndOfGenerationStops) {
  auto model = load();
  const tokenizer::Tokenizer tok = tokenizer_of(*model);
  Generator gen(*model, tok);
  EXPECT_TRUE(gen.is_end_of_generation(kEos));
  EXPECT_TRUE(gen.is_end_of_generation(kImEnd));  // by its text
  EXPECT_FALSE(gen.is_end_of_generation(kBos));
  EXPECT_FALSE(gen.is_end_of_generation('a'));

  const std::vector<int32_t> prompt = tok.encode("eos", true, false);
  SamplingParams p = greedy();
  p.logit_bias = {{kImEnd, 1000.0f}};
  Sampler s(p, (int32_t)kVocab);
  GenerateOptions options;
  options.n_predict = 8;
  std::string streamed;
  GenerationResult r = gen.generate(prompt, s, options, [&](std::string_view t) { streamed.append(t); });
  EXPECT_EQ(r.finish, FinishReason::EndOfGeneration);
  EXPECT_EQ(r.tokens, std::vector<int32_t>{kImEnd});
  EXPECT_TRUE(streamed.empty());
  EXPECT_TRUE(r.text.empty());

  options.ignore_eos = true;
  Sampler s2(p, (int32_t)kVocab);
  r = gen.generate(prompt, s2, options);
  EXPECT_EQ(r.finish, FinishReason::MaxTokens);
  EXPECT_EQ(r.tokens.size(), 8u);
  EXPECT_NE(r.text.find("<|im_end|>"), std::string::npos);
}

TEST_F(GenerateTest, CancelFlag) {
  auto model = load();
  const tokenizer::Tokenizer tok = tokenizer_of(*model);
  std::atomic<bool> cancel{true};
  GenerateOptions options;
  options.cancel = &cancel;
  Sampler s(greedy(), (int32_t)kVocab);
  const GenerationResult r = Generator(*model, tok).generate(tok.encode("x", true, false), s, options);
  EXPECT_EQ(r.finish, FinishReason::Cancelled);
  EXPECT_EQ(r.n_generated, 0);
}

TEST_F(GenerateTest, BatchedDecodeEqualsOneSequenceAtATime) {
  auto single = load(128, 64, 1);
  auto batched = load(128, 8, 3);  // a step of 8 tokens: the packed prefill splits inside prompts
  const tokenizer::Tokenizer tok = tokenizer_of(*single);
  const std::vector<std::vector<int32_t>> prompts = {tok.encode("first sequence", true, false),
                                                     tok.encode("second", true, false),
                                                     tok.encode("a third, longer prompt here", true, false)};
  std::vector<Sampler> samplers;
  for (size_t i = 0; i < prompts.size(); ++i) samplers.emplace_back(greedy(), (int32_t)kVocab);
  const BatchedResult br = generate_batched(*batched, prompts, samplers, 12);
  ASSERT_EQ(br.tokens.size(), 3u);
  EXPECT_EQ(br.n_generated, 36);
  EXPECT_EQ(br.n_decode_steps, 11);

  Generator gen(*single, tok);
  for (size_t i = 0; i < prompts.size(); ++i) {
    Sampler s(greedy(), (int32_t)kVocab);
    GenerateOptions options;
    options.n_predict = 12;
    options.ignore_eos = true;
    EXPECT_EQ(br.tokens[i], gen.generate(prompts[i], s, options).tokens) << "sequence " << i;
  }

  // More sequences than slots is an error.
  std::vector<std::vector<int32_t>> four(4, prompts[1]);
  std::vector<Sampler> four_samplers(4, Sampler(greedy(), (int32_t)kVocab));
  EXPECT_THROW(generate_batched(*batched, four, four_samplers, 2), Error);
}

}  // namespace
}  // namespace velocity::runtime
