// A decode step allocates nothing on the host (engine/backend.h: everything a step touches is
// allocated at load), for every architecture and a dense and an MoE mix: operator new is counted
// while a step runs (on every thread: the CPU backend's pool too). The GPU test binary checks
// the CUDA backend the same way.
#include <gtest/gtest.h>

#include <string>

#include "../support/alloc_counter.h"
#include "../support/synth_model.h"
#include "model/model.h"

namespace velocity::model {
namespace {

class NoAlloc : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(NoAlloc, DecodeStepAllocatesNothing) {
  const auto& [arch, type] = GetParam();
  const std::string path = test::synth_model("noalloc", arch, type);
  auto model = Model::load(path, {.n_ctx = 64, .n_slots = 3, .max_batch = 16, .n_threads = 2});
  engine::Batch b;
  for (int32_t s = 0; s < 3; ++s) b.add(1 + s, 0, s, s == 0 ? engine::Output::Logits : engine::Output::Token);
  b.n_decode = 3;
  model->step(b);
  for (int32_t s = 0; s < 3; ++s) b.positions[s] = 1;
  EXPECT_EQ(test::count_allocations([&] { model->step(b); }), 0);
}

INSTANTIATE_TEST_SUITE_P(Archs, NoAlloc,
                         ::testing::Values(std::tuple{"llama", "Q4_K_M"}, std::tuple{"qwen2", "Q8_0"},
                                           std::tuple{"qwen3", "F16"}, std::tuple{"qwen3moe", "Q4_K_M"},
                                           std::tuple{"qwen3moe", "MXFP4_MOE"}));

}  // namespace
}  // namespace velocity::model
