// qwen2: Qwen2 / Qwen2.5 (incl. Coder): llama layer with Q/K/V biases and NEOX RoPE (the converter
// keeps HF's row order, so RoPE rotates x[i] with x[i + n_rot/2]).
#include "model/architecture.h"

namespace velocity::model {

namespace {

class Qwen2 final : public Architecture {
 public:
  void read_config(const Hparams& h, Config& c) override {
    c.rope_type = engine::RopeType::Neox;
    c.qkv_bias = true;
    refuse_rope_scaling(h);
  }

  void load(Weights& w, const Config& c) override {
    config_ = c;
    for (int64_t il = 0; il < c.n_layer; ++il) layers_.push_back(load_decoder_layer(w, c, il, {.qkv_bias = true}));
  }

  void forward(ForwardPass& pass) override { decoder_forward(pass, config_, layers_); }

 private:
  Config config_;
  std::vector<DecoderLayer> layers_;
};

}  // namespace

std::unique_ptr<Architecture> make_qwen2() { return std::make_unique<Qwen2>(); }

}  // namespace velocity::model
