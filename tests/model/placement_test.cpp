// A model placed over several backends computes what it computes on one: the residual stream
// crosses devices at layer boundaries (model/forward.h), each backend holds the KV cache of its
// layers. Two CPU backends ("cpu" and "cpu:1") run the same kernels, so the logits must be equal
// bit for bit; the GPU tests do the same with cuda:0 against the CPU.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "../support/synth_model.h"
#include "core/error.h"
#include "core/mmap.h"
#include "model/model.h"

namespace velocity::model {
namespace {

std::string synth_model(const std::string& arch, const std::string& type) {
  return test::synth_model("placement", arch, type);
}

std::vector<float> run_steps(Model& m, int n_prompt, int n_decode) {
  const int64_t n_vocab = m.config().n_vocab;
  std::vector<float> all;
  engine::Batch b;
  for (int s = 0; s < 2; ++s)  // two sequences in one batch
    for (int i = 0; i < n_prompt; ++i)
      b.add(static_cast<int32_t>((i * 31 + s * 7 + 3) % n_vocab), i, s, i + 1 == n_prompt);
  auto logits = m.forward(b);
  all.insert(all.end(), logits.begin(), logits.end());
  for (int t = 0; t < n_decode; ++t) {
    b.clear();
    for (int s = 0; s < 2; ++s) b.add(static_cast<int32_t>((t * 13 + s) % n_vocab), n_prompt + t, s, true);
    logits = m.forward(b);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

class PlacementTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(PlacementTest, LayerSplitOverTwoBackendsEqualsOne) {
  const auto& [arch, type] = GetParam();
  const std::string path = synth_model(arch, type);
  LoadOptions one{.n_ctx = 32, .n_slots = 2, .max_batch = 16, .n_threads = 1};
  auto single = Model::load(path, one);
  const int64_t n_layer = single->config().n_layer;
  ASSERT_GE(n_layer, 2);

  LoadOptions split = one;
  split.placement.layers.assign(static_cast<size_t>(n_layer), engine::Device::cpu());
  for (int64_t il = n_layer / 2; il < n_layer; ++il) split.placement.layers[il] = engine::Device{engine::Device::Kind::Cpu, 1};
  auto two = Model::load(path, split);
  ASSERT_EQ(two->backends().size(), 2u);
  EXPECT_EQ(two->placement().to_string(),
            fmt::format("layers 0-{} cpu, {}-{} cpu:1, /^token_embd\\./ cpu, /^output(_norm)?\\./ cpu:1",
                        n_layer / 2 - 1, n_layer / 2, n_layer - 1));

  const std::vector<float> a = run_steps(*single, 5, 4), b = run_steps(*two, 5, 4);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));

  // Alternating layers: a crossing at every layer boundary.
  LoadOptions alternate = one;
  for (int64_t il = 0; il < n_layer; ++il)
    alternate.placement.layers.push_back(engine::Device{engine::Device::Kind::Cpu, static_cast<int32_t>(il % 2)});
  auto zigzag = Model::load(path, alternate);
  const std::vector<float> c = run_steps(*zigzag, 5, 4);
  EXPECT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Archs, PlacementTest,
                         ::testing::Values(std::tuple{"llama", "Q8_0"}, std::tuple{"qwen3moe", "Q4_K_M"},
                                           std::tuple{"qwen2", "F16"}));

TEST(Placement, TensorsOfOneLayerMustShareItsDevice) {
  const std::string path = synth_model("llama", "Q8_0");
  LoadOptions o{.n_ctx = 32, .n_slots = 1, .max_batch = 16, .n_threads = 1};
  o.placement.overrides.push_back({"blk\\.0\\.ffn_up", engine::Device{engine::Device::Kind::Cpu, 1}});
  try {
    Model::load(path, o);
    FAIL() << "a layer split across devices loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_up.weight on cpu:1 but layer 0 runs on cpu"), std::string::npos)
        << e.what();
  }
}

TEST(Placement, WrongLayerCountIsAnError) {
  const std::string path = synth_model("llama", "Q8_0");
  LoadOptions o{.n_ctx = 32, .n_slots = 1, .max_batch = 16, .n_threads = 1};
  o.placement.layers = {engine::Device::cpu()};
  EXPECT_THROW(Model::load(path, o), Error);
}

TEST(Placement, TensorLayerOfNames) {
  EXPECT_EQ(tensor_layer("blk.12.attn_q.weight"), 12);
  EXPECT_EQ(tensor_layer("blk.x.attn_q.weight"), -1);
  EXPECT_EQ(tensor_layer("blk.3"), -1);
  EXPECT_EQ(tensor_layer("output.weight"), -1);
}

TEST(Placement, OverridesFirstMatchThenLayersThenDefault) {
  const engine::Device cpu1{engine::Device::Kind::Cpu, 1}, cpu2{engine::Device::Kind::Cpu, 2};
  Placement p;
  p.layers = {engine::Device::cpu(), cpu1};
  p.overrides.push_back({"ffn_(up|gate)_exps", cpu2});
  p.overrides.push_back({"^output", cpu1});
  EXPECT_EQ(p.of("blk.0.ffn_up_exps.weight"), cpu2);
  EXPECT_EQ(p.of("blk.1.ffn_gate_exps.weight"), cpu2);
  EXPECT_EQ(p.of("blk.1.ffn_down_exps.weight"), cpu1);  // its layer
  EXPECT_EQ(p.of("blk.0.attn_q.weight"), engine::Device::cpu());
  EXPECT_EQ(p.of("output.weight"), cpu1);
  EXPECT_EQ(p.of("token_embd.weight"), engine::Device::cpu());
  Placement q = p;  // a copy with other patterns recompiles them
  q.overrides[0].pattern = "attn_q";
  EXPECT_EQ(q.of("blk.0.attn_q.weight"), cpu2);
  EXPECT_EQ(q.of("blk.0.ffn_up_exps.weight"), engine::Device::cpu());
  EXPECT_EQ(p.of("blk.0.ffn_up_exps.weight"), cpu2);
}

// llama.cpp's -ngl N: the last N layers on the GPU, the first ones on the CPU; N >= n_layer is
// the whole model on the GPU, 0 none of it (no GPU backend at all); a CPU device, an explicit
// layer list or -1 leave the placement as it is.
TEST(Placement, GpuLayersPutTheLastLayersOnTheGpu) {
  const engine::Device gpu = engine::Device::cuda(1), cpu = engine::Device::cpu();
  auto resolved = [&](int64_t gpu_layers, engine::Device device = engine::Device::cuda(1)) {
    Placement p;
    p.device = device;
    p.gpu_layers = gpu_layers;
    p.resolve_gpu_layers(6);
    return p;
  };
  Placement p = resolved(2);
  ASSERT_EQ(p.layers.size(), 6u);
  for (int64_t il = 0; il < 6; ++il) EXPECT_EQ(p.layer(il), il < 4 ? cpu : gpu) << il;
  EXPECT_EQ(p.device, gpu);
  EXPECT_EQ(p.devices().size(), 2u);
  for (int64_t n : {int64_t{6}, int64_t{99}, int64_t{-1}}) {
    p = resolved(n);
    EXPECT_TRUE(p.layers.empty()) << n;
    EXPECT_EQ(p.device, gpu) << n;
  }
  p = resolved(0);
  EXPECT_TRUE(p.layers.empty());
  EXPECT_EQ(p.device, cpu);
  EXPECT_EQ(p.devices(), std::vector<engine::Device>{cpu});
  p = resolved(3, cpu);
  EXPECT_TRUE(p.layers.empty());
  EXPECT_EQ(p.device, cpu);
  Placement q;
  q.device = gpu;
  q.layers = {cpu, gpu, gpu, gpu, gpu, gpu};
  q.gpu_layers = 1;
  q.resolve_gpu_layers(6);
  EXPECT_EQ(q.layer(1), gpu);  // the explicit list wins
}

// -ngl 0 on a GPU device loads the whole model on the CPU: no GPU backend is made (so it works on
// a machine without one), and the logits are the CPU's.
TEST(Placement, ZeroGpuLayersLoadsOnTheCpuAlone) {
  const std::string path = synth_model("llama", "Q8_0");
  LoadOptions cpu{.n_ctx = 32, .n_slots = 2, .max_batch = 16, .n_threads = 1};
  LoadOptions none = cpu;
  none.placement.device = engine::Device::cuda(0);
  none.placement.gpu_layers = 0;
  auto a = Model::load(path, cpu), b = Model::load(path, none);
  ASSERT_EQ(b->backends().size(), 1u);
  EXPECT_TRUE(b->backend().device().is_cpu());
  const std::vector<float> la = run_steps(*a, 5, 2), lb = run_steps(*b, 5, 2);
  EXPECT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)));
}

// --no-mmap reads the file into memory: the same bytes as the mapping, the same logits.
TEST(Placement, ReadInsteadOfMappedGivesTheSameModel) {
  const std::string path = synth_model("qwen3moe", "Q4_K_M");
  const MappedFile mapped(path), read(path, /*read=*/true);
  ASSERT_EQ(mapped.bytes().size(), read.bytes().size());
  EXPECT_EQ(0, std::memcmp(mapped.bytes().data(), read.bytes().data(), read.bytes().size()));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(read.bytes().data()) % 4096, 0u);
  LoadOptions a{.n_ctx = 32, .n_slots = 2, .max_batch = 16, .n_threads = 1};
  LoadOptions b = a;
  b.mmap = false;
  auto ma = Model::load(path, a), mb = Model::load(path, b);
  const std::vector<float> la = run_steps(*ma, 5, 2), lb = run_steps(*mb, 5, 2);
  EXPECT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)));
  EXPECT_THROW(MappedFile("/nonexistent/x.gguf", true), Error);
}

// A load stops at its next tensor once its cancel flag is set: serve abandons the other models'
// loads when one fails its checks, and shutdown abandons a load under way (issue 15).
TEST(Placement, LoadStopsWhenCancelled) {
  const std::string path = synth_model("llama", "Q4_K_M");
  std::atomic<bool> cancel{false};
  LoadOptions o{.n_ctx = 32, .n_slots = 1, .max_batch = 16, .n_threads = 1};
  o.cancel = &cancel;
  bool checked = false;
  o.on_checked = [&](const Config&, const gguf::File&) {  // set once the checks pass, as serve does
    checked = true;
    cancel = true;
  };
  try {
    Model::load(path, o);
    ADD_FAILURE() << "the load went on";
  } catch (const Cancelled& e) {
    EXPECT_NE(std::string(e.what()).find("loading cancelled"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(checked);
  cancel = false;
  o.on_checked = nullptr;
  EXPECT_NE(Model::load(path, o), nullptr);  // the flag, not the file, stopped it
}

TEST(Placement, InvalidPatternIsAClearError) {
  Placement p;
  p.overrides.push_back({"ffn_(up", engine::Device::cpu()});
  try {
    p.of("blk.0.ffn_up.weight");
    FAIL() << "an unbalanced pattern compiled";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"ffn_(up\" is not a valid regular expression"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace velocity::model
