// qwen3: Qwen3 dense: no biases, per-head RMSNorm of Q and K before RoPE (NEOX), head dim set
// explicitly (attention.key_length; 128 for every size, not n_embd / n_head).
#include "model/architecture.h"

namespace velocity::model {

namespace {

class Qwen3 final : public Architecture {
 public:
  void read_config(const Hparams& h, Config& c) override {
    c.rope_type = engine::RopeType::Neox;
    c.qk_norm = true;
    refuse_rope_scaling(h);
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

std::unique_ptr<Architecture> make_qwen3() { return std::make_unique<Qwen3>(); }

}  // namespace velocity::model
