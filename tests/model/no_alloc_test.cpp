// A decode step allocates nothing on the host (engine/backend.h: everything a step touches is
// allocated at load), for every architecture and a dense and an MoE mix: operator new is counted
// while a step runs (on every thread: the CPU backend's pool too). The GPU test binary checks
// the CUDA backend the same way.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>

#include "model/model.h"
#include "tools/synth.h"

namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<int64_t> g_allocations{0};
void* counted(std::size_t n) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace
void* operator new(std::size_t n) { return counted(n); }
void* operator new[](std::size_t n) { return counted(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
// The nothrow forms too (std::stable_sort's buffer): each new must meet its own delete (ASan checks).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted(n); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted(n); } catch (...) { return nullptr; }
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace velocity::model {
namespace {

class NoAlloc : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(NoAlloc, DecodeStepAllocatesNothing) {
  const auto& [arch, type] = GetParam();
  const auto dir = std::filesystem::temp_directory_path() / ("velocity-noalloc-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / (arch + "-" + type + ".gguf")).string();
  tools::SynthOptions o;
  o.arch = arch;
  o.type = type;
  o.output = path;
  tools::synth(o);
  auto model = Model::load(path, {.n_ctx = 64, .n_slots = 3, .max_batch = 16, .n_threads = 2});
  engine::Batch b;
  for (int32_t s = 0; s < 3; ++s) b.add(1 + s, 0, s, s == 0 ? engine::Output::Logits : engine::Output::Token);
  b.n_decode = 3;
  model->step(b);
  for (int32_t s = 0; s < 3; ++s) b.positions[s] = 1;
  g_allocations = 0;
  g_count_allocations = true;
  model->step(b);
  g_count_allocations = false;
  EXPECT_EQ(g_allocations.load(), 0);
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Archs, NoAlloc,
                         ::testing::Values(std::tuple{"llama", "Q4_K_M"}, std::tuple{"qwen2", "Q8_0"},
                                           std::tuple{"qwen3", "F16"}, std::tuple{"qwen3moe", "Q4_K_M"},
                                           std::tuple{"qwen3moe", "MXFP4_MOE"}));

}  // namespace
}  // namespace velocity::model
