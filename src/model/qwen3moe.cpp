// qwen3moe: Qwen3-30B-A3B / 235B-A22B: the Qwen3 attention (Q/K norm, NEOX RoPE) and a MoE FFN in
// every layer: softmax router over expert_count experts, top expert_used_count, weights
// renormalised to sum to 1 (llama.cpp always renormalises for this architecture), SwiGLU experts
// of expert_feed_forward_length.
#include "core/error.h"
#include "model/architecture.h"

namespace velocity::model {

namespace {

class Qwen3Moe final : public Architecture {
 public:
  void read_config(const Hparams& h, Config& c) override {
    c.rope_type = engine::RopeType::Neox;
    c.qk_norm = true;
    refuse_rope_scaling(h);
    c.n_expert = h.count("expert_count");
    c.n_expert_used = h.count("expert_used_count");
    c.n_ff_expert = h.count("expert_feed_forward_length");
    c.moe_norm_weights = true;
    if (c.n_expert_used > c.n_expert)
      fail("{}: {}.expert_used_count {} exceeds expert_count {}", h.file().shards().at(0).path, h.arch(),
           c.n_expert_used, c.n_expert);
  }

  void load(Weights& w, const Config& c) override {
    config_ = c;
    for (int64_t il = 0; il < c.n_layer; ++il) layers_.push_back(load_decoder_layer(w, c, il, {.qk_norm = true}));
  }

  void forward(ForwardPass& pass) override { decoder_forward(pass, config_, layers_); }

 private:
  Config config_;
  std::vector<DecoderLayer> layers_;
};

}  // namespace

std::unique_ptr<Architecture> make_qwen3moe() { return std::make_unique<Qwen3Moe>(); }

}  // namespace velocity::model
