// Models written by `velocity synth` (real tensor layouts, real quant mixes) load and run, and the
// engine's consistency properties hold on them: a prompt computed in one batch, in chunks or token
// by token gives the same logits; sequences sharing a batch do not affect each other. These check
// the KV-cache and batching paths against each other; the numbers themselves are checked against
// Hugging Face transformers in hf_reference_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "../support/synth_model.h"
#include "core/error.h"
#include "gguf/writer.h"
#include "model/model.h"
#include "tools/synth.h"

namespace velocity::model {
namespace {

class SynthModelTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  static std::string make(const std::string& arch, const std::string& type) {
    return test::synth_model("model", arch, type);
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                ("velocity-model-" + std::to_string(::getpid())));
  }
};

std::vector<int32_t> tokens_for(int64_t n_vocab, int n, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 13) % n_vocab);
  return t;
}

// Max |a - b| / max |b| over one row of logits.
double rel_err(std::span<const float> a, std::span<const float> b) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    ref = std::max(ref, std::abs(double(b[i])));
  }
  return err / ref;
}

TEST_P(SynthModelTest, PrefillChunksAndDecodeAgree) {
  const auto& [arch, type] = GetParam();
  auto model = Model::load(make(arch, type), {.n_ctx = 64, .n_slots = 1, .max_batch = 32, .n_threads = 2});
  const int64_t nv = model->config().n_vocab;
  const auto toks = tokens_for(nv, 24, 1);
  // Whole prompt in one batch, logits everywhere.
  engine::Batch b;
  for (int i = 0; i < 24; ++i) b.add(toks[i], i, 0, true);
  const auto full_span = model->forward(b);
  const std::vector<float> full(full_span.begin(), full_span.end());
  for (float x : full) ASSERT_TRUE(std::isfinite(x));
  // Chunks of 5 then single tokens; each chunk's logits must equal the full run's rows.
  double worst = 0;
  int pos = 0;
  for (int chunk : {5, 5, 1, 1, 1, 11}) {
    b.clear();
    for (int i = 0; i < chunk; ++i, ++pos) b.add(toks[pos], pos, 0, true);
    const auto part = model->forward(b);
    for (int i = 0; i < chunk; ++i) {
      const int p = pos - chunk + i;
      worst = std::max(worst, rel_err(part.subspan(i * nv, nv), std::span<const float>(full).subspan(p * nv, nv)));
    }
  }
  // The same arithmetic per row, except the activation quantisation tiles: tight.
  EXPECT_LT(worst, 1e-4) << arch << " " << type;
}

TEST_P(SynthModelTest, SequencesInOneBatchAreIndependent) {
  const auto& [arch, type] = GetParam();
  auto model = Model::load(make(arch, type), {.n_ctx = 32, .n_slots = 3, .max_batch = 32, .n_threads = 2});
  const int64_t nv = model->config().n_vocab;
  std::vector<std::vector<int32_t>> seqs = {tokens_for(nv, 9, 2), tokens_for(nv, 4, 3), tokens_for(nv, 7, 4)};
  // Each alone, in slot 0 (positions overwrite the previous sequence's cache).
  std::vector<std::vector<float>> alone;
  for (const auto& s : seqs) {
    engine::Batch b;
    for (size_t i = 0; i < s.size(); ++i) b.add(s[i], static_cast<int32_t>(i), 0, i + 1 == s.size());
    const auto l = model->forward(b);
    alone.emplace_back(l.begin(), l.end());
  }
  // All three interleaved in one batch, slots 0..2.
  engine::Batch b;
  for (size_t i = 0; i < 9; ++i)
    for (int32_t sq = 0; sq < 3; ++sq)
      if (i < seqs[sq].size()) b.add(seqs[sq][i], static_cast<int32_t>(i), sq, i + 1 == seqs[sq].size());
  const auto l = model->forward(b);
  // Logit rows come in batch order: seq 1 ends first (i = 3), then seq 2 (i = 6), then seq 0.
  const int order[3] = {1, 2, 0};
  for (int r = 0; r < 3; ++r)
    EXPECT_LT(rel_err(l.subspan(r * nv, nv), alone[order[r]]), 1e-4) << arch << " seq " << order[r];
}

INSTANTIATE_TEST_SUITE_P(Archs, SynthModelTest,
                         ::testing::Values(std::tuple{"llama", "F32"}, std::tuple{"llama", "Q4_K_M"},
                                           std::tuple{"llama", "Q8_0"}, std::tuple{"qwen2", "Q4_0"},
                                           std::tuple{"qwen3", "Q6_K"}, std::tuple{"qwen3moe", "Q4_K_M"},
                                           std::tuple{"qwen3moe", "Q5_K"}, std::tuple{"llama", "BF16"},
                                           std::tuple{"gpt-oss", "MXFP4_MOE"}, std::tuple{"gpt-oss", "F16"},
                                           std::tuple{"deepseek2", "F16"}, std::tuple{"deepseek2", "Q4_K_M"}),
                         [](const auto& param_info) {
                           std::string n = std::get<0>(param_info.param) + "_" + std::get<1>(param_info.param);
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(SynthModel, UnsupportedArchitectureNamesIt) {
  const auto dir = std::filesystem::temp_directory_path() / ("velocity-model-arch-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "falcon.gguf").string();
  {
    gguf::Writer w(path);
    w.set("general.architecture", gguf::Value::string("falcon"));
    w.begin_data();
    w.finish();
  }
  try {
    Model::load(path);
    ADD_FAILURE() << "falcon loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"falcon\" is not supported"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace velocity::model
