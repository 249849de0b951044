// gpt-oss files that are not what llama.cpp's gpt-oss is (a tensor missing or of the wrong shape,
// a key missing) fail to load with an Error naming the problem, never a crash; the synth presets'
// config reads as llama.cpp's loader reads it. The numbers are checked against the transformers
// reference in hf_reference_test.cpp (case gptoss).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "../support/synth_model.h"
#include "core/error.h"
#include "engine/backend.h"
#include "gguf/file.h"
#include "gguf/writer.h"
#include "model/model.h"

namespace velocity::model {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  const fs::path dir = fs::temp_directory_path() / ("velocity-gptoss-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// A copy of `src` with tensors dropped or reshaped and metadata keys dropped: `edit_tensor`
// returns false to drop a tensor and may change its shape (the data is cut or zero-padded to
// the new size).
std::string rewrite(const std::string& src, const std::string& name,
                    const std::function<bool(const std::string&, std::vector<int64_t>&)>& edit_tensor,
                    const std::vector<std::string>& drop_keys = {}) {
  const gguf::File in = gguf::File::open(src);
  const std::string out = (temp_dir() / name).string();
  gguf::Writer w(out);
  for (const auto& [key, value] : in.metadata())
    if (std::find(drop_keys.begin(), drop_keys.end(), key) == drop_keys.end()) w.set(key, value);
  struct Kept {
    const gguf::TensorInfo* info;
    std::vector<int64_t> shape;
  };
  std::vector<Kept> kept;
  for (const gguf::TensorInfo& t : in.tensors()) {
    std::vector<int64_t> shape = t.shape;
    if (!edit_tensor(t.name, shape)) continue;
    kept.push_back({&t, shape});
    w.add_tensor(t.name, t.type, shape);
  }
  w.begin_data();
  for (const Kept& k : kept) {
    int64_t n = 1;
    for (int64_t d : k.shape) n *= d;
    std::vector<uint8_t> bytes(static_cast<size_t>(dtype_row_bytes(k.info->type, k.shape[0]) * (n / k.shape[0])));
    std::copy_n(k.info->data, std::min<size_t>(bytes.size(), k.info->n_bytes), bytes.begin());
    w.write_tensor(k.info->name, bytes);
  }
  w.finish();
  return out;
}

std::string synth_f32() { return test::synth_model("gptoss", "gpt-oss", "F32"); }

void expect_load_error(const std::string& path, const std::string& needle,
                       const LoadOptions& options = {.n_ctx = 32, .n_threads = 1}) {
  try {
    Model::load(path, options);
    ADD_FAILURE() << path << " loaded; expected an error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(GptOss, SynthConfigReadsAsLlamaCpp) {
  auto model = Model::load(synth_f32(), {.n_ctx = 32, .n_threads = 1});
  const Config& c = model->config();
  EXPECT_EQ(c.arch, "gpt-oss");
  EXPECT_EQ(c.sliding_window, 128);
  EXPECT_EQ(c.rope_type, engine::RopeType::Neox);
  EXPECT_FLOAT_EQ(c.rope_yarn_factor, 32.0f);
  EXPECT_EQ(c.rope_yarn_orig_ctx, 4096);
  EXPECT_FALSE(c.rope_yarn_truncate);
  EXPECT_NEAR(c.rope_attn_factor, 0.1 * std::log(32.0) + 1.0, 1e-6);
  EXPECT_EQ(c.head_dim_k, 64);
  EXPECT_EQ(c.n_expert_used, 2);
  for (engine::Feature f : c.features) EXPECT_TRUE(model->backend().supports(f)) << engine::feature_name(f);
  EXPECT_EQ(c.features.size(), 6u);
}

TEST(GptOss, MissingSinksIsAnError) {
  const std::string path = rewrite(synth_f32(), "no-sinks.gguf", [](const std::string& name, std::vector<int64_t>&) {
    return name != "blk.1.attn_sinks.weight";
  });
  expect_load_error(path, "tensor blk.1.attn_sinks.weight is missing");
}

TEST(GptOss, WrongShapesAreErrors) {
  const std::string sinks = rewrite(synth_f32(), "sinks-shape.gguf", [](const std::string& name, std::vector<int64_t>& s) {
    if (name == "blk.0.attn_sinks.weight") s = {s[0] * 2};
    return true;
  });
  expect_load_error(sinks, "blk.0.attn_sinks.weight: expected shape [4], found [8]");
  const std::string bias = rewrite(synth_f32(), "bias-shape.gguf", [](const std::string& name, std::vector<int64_t>& s) {
    if (name == "blk.1.ffn_down_exps.bias") s = {s[0], s[1] - 1};
    return true;
  });
  expect_load_error(bias, "blk.1.ffn_down_exps.bias: expected shape [256, 4], found [256, 3]");
}

TEST(GptOss, MissingKeysAreErrors) {
  auto keep_all = [](const std::string&, std::vector<int64_t>&) { return true; };
  expect_load_error(rewrite(synth_f32(), "no-window.gguf", keep_all, {"gpt-oss.attention.sliding_window"}),
                    "gpt-oss.attention.sliding_window: missing");
  expect_load_error(rewrite(synth_f32(), "no-orig-ctx.gguf", keep_all, {"gpt-oss.rope.scaling.original_context_length"}),
                    "gpt-oss.rope.scaling.original_context_length: missing");
}

// A backend that computes none of gpt-oss's features refuses the model before any weight is
// read; the CUDA backend answers no to every Feature (Backend's default).
// Every backend computes gpt-oss's features since session 8 (the CUDA kernels came after the CPU
// ones): the model loads on cuda:0, named or chosen by default, with no fall-back to the CPU.
// (The refusal path for a backend that lacks a feature is tested with deepseek2's MLA.)
TEST(GptOss, LoadsOnEveryBackend) {
  for (engine::Feature f : {engine::Feature::AttentionSinks, engine::Feature::SlidingWindow, engine::Feature::YarnRope,
                            engine::Feature::AttentionOutputBias, engine::Feature::ExpertBiases,
                            engine::Feature::ClampedSwiglu})
    EXPECT_STRNE(engine::feature_name(f), "?");
  LoadOptions o{.n_ctx = 32, .n_threads = 1};
  EXPECT_EQ(Model::load(synth_f32(), o)->backend().device(), engine::Device::cpu());
  if (engine::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: the cuda:0 half runs on the GPU machine";
  o.placement.device = engine::Device::cuda(0);
  EXPECT_EQ(Model::load(synth_f32(), o)->backend().device(), engine::Device::cuda(0));
  o.device_is_default = true;  // as `velocity run` without --device
  EXPECT_EQ(Model::load(synth_f32(), o)->backend().device(), engine::Device::cuda(0));
}

}  // namespace
}  // namespace velocity::model
