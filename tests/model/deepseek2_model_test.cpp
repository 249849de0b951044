// deepseek2 files as llama.cpp writes them: the synth presets read as llama.cpp's loader reads
// them; the older attn_kv_b form gives the same logits as the split attn_k_b / attn_v_b form; the
// next-token-prediction layers are skipped; files that are not what llama.cpp's deepseek2 is (a
// tensor missing or of the wrong shape, a key missing or wrong) fail to load with an Error naming
// the problem. The numbers are checked against transformers in hf_reference_test.cpp (cases
// deepseek3, deepseek2lite).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
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
  const fs::path dir = fs::temp_directory_path() / ("velocity-ds2-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

std::string synth_f32() { return test::synth_model("ds2", "deepseek2", "F32"); }

// A copy of `src` with metadata changed (`keys`: a value replaces, nullopt drops) and tensors
// rewritten by `edit` (name -> shape and F32 data; an empty map entry drops the tensor).
using Tensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;
std::string rewrite(const std::string& src, const std::string& name,
                    const std::map<std::string, std::optional<gguf::Value>>& keys,
                    const std::function<void(Tensors&)>& edit) {
  const gguf::File in = gguf::File::open(src);
  Tensors tensors;
  std::vector<std::string> order;
  for (const gguf::TensorInfo& t : in.tensors()) {
    EXPECT_EQ(t.type, DType::F32) << t.name;
    std::vector<float> data(t.n_bytes / 4);
    std::memcpy(data.data(), t.data, t.n_bytes);
    tensors[t.name] = {t.shape, std::move(data)};
    order.push_back(t.name);
  }
  edit(tensors);
  for (const auto& [n, t] : tensors)
    if (std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
  const std::string out = (temp_dir() / name).string();
  gguf::Writer w(out);
  for (const auto& [key, value] : in.metadata()) {
    const auto it = keys.find(key);
    if (it == keys.end())
      w.set(key, value);
    else if (it->second)
      w.set(key, *it->second);
  }
  for (const auto& [key, value] : keys)
    if (value && !in.find(key)) w.set(key, *value);
  std::vector<std::string> written;
  for (const std::string& n : order) {
    const auto it = tensors.find(n);
    if (it == tensors.end() || it->second.second.empty()) continue;
    w.add_tensor(n, DType::F32, it->second.first);
    written.push_back(n);
  }
  w.begin_data();
  for (const std::string& n : written) {
    const std::vector<float>& d = tensors[n].second;
    w.write_tensor(n, std::span(reinterpret_cast<const uint8_t*>(d.data()), d.size() * 4));
  }
  w.finish();
  return out;
}

void expect_load_error(const std::string& path, const std::string& needle,
                       const LoadOptions& options = {.n_ctx = 32, .n_threads = 1}) {
  try {
    Model::load(path, options);
    ADD_FAILURE() << path << " loaded; expected an error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

std::vector<float> logits_of(const std::string& path, int n) {
  auto model = Model::load(path, {.n_ctx = 32, .n_threads = 1});
  engine::Batch b;
  for (int i = 0; i < n; ++i) b.add((i * 37 + 5) % 2000, i, 0, true);
  std::span<const float> l = model->forward(b);
  return {l.begin(), l.end()};
}

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    ref = std::max(ref, std::abs(double(b[i])));
  }
  return err / ref;
}

const gguf::Value u32(uint32_t v) { return gguf::Value::scalar<uint32_t>(v); }

TEST(Deepseek2, SynthConfigReadsAsLlamaCpp) {
  auto model = Model::load(synth_f32(), {.n_ctx = 32, .n_threads = 1});
  const Config& c = model->config();
  EXPECT_EQ(c.arch, "deepseek2");
  EXPECT_TRUE(c.kv_latent);
  EXPECT_EQ(c.n_head_kv, 1);
  EXPECT_EQ(c.kv_lora_rank, 256);
  EXPECT_EQ(c.q_lora_rank, 256);
  EXPECT_EQ(c.qk_nope, 128);
  EXPECT_EQ(c.qk_rope, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.head_dim_k, 256 + 64);
  EXPECT_EQ(c.head_dim_v, 256);
  EXPECT_EQ(c.n_expert, 4);
  EXPECT_EQ(c.n_ff_shared, 512);
  EXPECT_EQ(c.rope_type, engine::RopeType::Normal);
  EXPECT_FLOAT_EQ(c.rope_yarn_factor, 40.0f);
  EXPECT_FLOAT_EQ(c.rope_attn_factor, 1.0f);
  for (engine::Feature f : c.features) EXPECT_TRUE(model->backend().supports(f)) << engine::feature_name(f);
  EXPECT_EQ(c.features.size(), 4u);  // latent attention, YaRN, shared experts, grouped routing
}

// The older files: one attn_kv_b [R -> H*(nope+v)] per layer, key/value_length the per-head
// widths and head_count_kv = H; the split at load gives the logits of the split file.
TEST(Deepseek2, KvBFormEqualsSplitForm) {
  const std::string split = synth_f32();
  const gguf::File f = gguf::File::open(split);
  const int64_t h = 4, r = 256, nope = 128, dv = 128, per_head = nope + dv;
  const std::string merged = rewrite(split, "kv-b.gguf",
                                     {{"deepseek2.attention.key_length", u32(nope + 64)},
                                      {"deepseek2.attention.value_length", u32(dv)},
                                      {"deepseek2.attention.head_count_kv", u32(h)},
                                      {"deepseek2.attention.key_length_mla", std::nullopt},
                                      {"deepseek2.attention.value_length_mla", std::nullopt}},
                                     [&](Tensors& t) {
                                       for (int il = 0; il < 3; ++il) {
                                         const std::string p = "blk." + std::to_string(il) + ".";
                                         const std::vector<float>& k_b =
                                             t[p + "attn_k_b.weight"].second;  // [h][r][nope]
                                         const std::vector<float>& v_b = t[p + "attn_v_b.weight"].second;  // [h][dv][r]
                                         std::vector<float> kv_b(static_cast<size_t>(h * per_head * r));
                                         for (int64_t hh = 0; hh < h; ++hh)
                                           for (int64_t c = 0; c < r; ++c) {
                                             for (int64_t i = 0; i < nope; ++i)
                                               kv_b[(hh * per_head + i) * r + c] = k_b[(hh * r + c) * nope + i];
                                             for (int64_t j = 0; j < dv; ++j)
                                               kv_b[(hh * per_head + nope + j) * r + c] = v_b[(hh * dv + j) * r + c];
                                           }
                                         t[p + "attn_kv_b.weight"] = {{r, h * per_head}, std::move(kv_b)};
                                         t[p + "attn_k_b.weight"].second.clear();
                                         t[p + "attn_v_b.weight"].second.clear();
                                       }
                                     });
  const auto a = logits_of(split, 9), b = logits_of(merged, 9);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_LT(max_rel(b, a), 1e-5);
}

// V3's multi-token-prediction layer: nextn_predict_layers trailing blocks are skipped.
TEST(Deepseek2, NextnLayersAreSkipped) {
  const std::string path =
      rewrite(synth_f32(), "nextn.gguf", {{"deepseek2.nextn_predict_layers", u32(1)}}, [](Tensors& t) {
        t["blk.2.nextn.eh_proj.weight"] = {{512, 256}, std::vector<float>(512 * 256, 0.01f)};
        t["blk.2.nextn.enorm.weight"] = {{256}, std::vector<float>(256, 1.0f)};
      });
  auto model = Model::load(path, {.n_ctx = 32, .n_threads = 1});
  EXPECT_EQ(model->config().n_layer, 2);
  engine::Batch b;
  for (int i = 0; i < 4; ++i) b.add(i + 3, i, 0, i == 3);
  for (float x : model->forward(b)) ASSERT_TRUE(std::isfinite(x));
}

// expert_gating_func 0 ("none", or V2 files from before the key) is softmax, as llama.cpp reads it;
// softmax and sigmoid routing give different logits on the synth file.
TEST(Deepseek2, GatingNoneIsSoftmax) {
  auto keep = [](Tensors&) {};
  const auto none =
      logits_of(rewrite(synth_f32(), "gating-0.gguf", {{"deepseek2.expert_gating_func", u32(0)}}, keep), 6);
  const auto softmax =
      logits_of(rewrite(synth_f32(), "gating-1.gguf", {{"deepseek2.expert_gating_func", u32(1)}}, keep), 6);
  EXPECT_EQ(none, softmax);
  EXPECT_GT(max_rel(logits_of(synth_f32(), 6), softmax), 1e-3);
}

TEST(Deepseek2, MissingTensorsAreErrors) {
  auto drop = [](std::string name) { return [name](Tensors& t) { t[name].second.clear(); }; };
  expect_load_error(rewrite(synth_f32(), "no-kv-a-norm.gguf", {}, drop("blk.1.attn_kv_a_norm.weight")),
                    "tensor blk.1.attn_kv_a_norm.weight is missing");
  expect_load_error(rewrite(synth_f32(), "no-v-b.gguf", {}, drop("blk.0.attn_v_b.weight")),
                    "tensor blk.0.attn_v_b.weight is missing");
  expect_load_error(rewrite(synth_f32(), "no-shexp.gguf", {}, drop("blk.2.ffn_up_shexp.weight")),
                    "tensor blk.2.ffn_up_shexp.weight is missing");
}

TEST(Deepseek2, WrongShapesAreErrors) {
  auto reshape = [](std::string name, std::vector<int64_t> shape) {
    return [name, shape](Tensors& t) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      t[name] = {shape, std::vector<float>(static_cast<size_t>(n), 0.5f)};
    };
  };
  expect_load_error(rewrite(synth_f32(), "k-b-shape.gguf", {}, reshape("blk.0.attn_k_b.weight", {128, 255, 4})),
                    "blk.0.attn_k_b.weight: expected shape [128, 256, 4], found [128, 255, 4]");
  expect_load_error(rewrite(synth_f32(), "kv-a-shape.gguf", {}, reshape("blk.1.attn_kv_a_mqa.weight", {256, 300})),
                    "blk.1.attn_kv_a_mqa.weight: expected shape [256, 320], found [256, 300]");
  expect_load_error(rewrite(synth_f32(), "bias-shape.gguf", {}, reshape("blk.1.exp_probs_b.bias", {5})),
                    "blk.1.exp_probs_b.bias: expected shape [4], found [5]");
}

TEST(Deepseek2, BadKeysAreErrors) {
  auto keep = [](Tensors&) {};
  expect_load_error(rewrite(synth_f32(), "no-kv-lora.gguf", {{"deepseek2.attention.kv_lora_rank", std::nullopt}}, keep),
                    "deepseek2.attention.kv_lora_rank: missing");
  expect_load_error(rewrite(synth_f32(), "gating.gguf", {{"deepseek2.expert_gating_func", u32(3)}}, keep),
                    "expert_gating_func 3");
  expect_load_error(rewrite(synth_f32(), "groups.gguf", {{"deepseek2.expert_group_count", u32(3)}}, keep),
                    "4 experts in 3 groups");
  expect_load_error(rewrite(synth_f32(), "key-length.gguf", {{"deepseek2.attention.key_length", u32(192)}}, keep),
                    "key_length 192");
  expect_load_error(rewrite(synth_f32(), "nextn.gguf", {{"deepseek2.nextn_predict_layers", u32(3)}}, keep),
                    "nextn_predict_layers 3 leaves no layer");
}

// A backend that computes none of deepseek2's features refuses the model before any weight is
// read; the CUDA backend answers no to every Feature (Backend's default) and the default device
// gives way to the CPU.
TEST(Deepseek2, BackendsWithoutTheFeaturesAreNamed) {
  for (engine::Feature f :
       {engine::Feature::LatentAttention, engine::Feature::SharedExperts, engine::Feature::GroupedRouting})
    EXPECT_STRNE(engine::feature_name(f), "?");
  if (engine::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: the refusal path runs on the GPU machine";
  LoadOptions o{.n_ctx = 32, .n_threads = 1};
  o.placement.device = engine::Device::cuda(0);
  expect_load_error(synth_f32(), "multi-head latent attention", o);
  o.device_is_default = true;
  EXPECT_EQ(Model::load(synth_f32(), o)->backend().device(), engine::Device::cpu());
}

}  // namespace
}  // namespace velocity::model
