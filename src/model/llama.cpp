// llama: Llama 2, Llama 3.x (rope_freqs frequency factors), Mistral, and llama-style MoE
// (Mixtral: <arch>.expert_count > 0, experts as merged 3-D tensors). The converter permutes the
// Q/K rows so that RoPE rotates adjacent pairs ("normal" RoPE).
#include "core/error.h"
#include "model/architecture.h"

namespace velocity::model {

namespace {

class Llama final : public Architecture {
 public:
  void read_config(const Hparams& h, Config& c) override {
    c.rope_type = engine::RopeType::Normal;
    if (auto type = h.string("rope.scaling.type")) {
      if (*type == "linear") {
        c.rope_freq_scale = 1.0f / h.real("rope.scaling.factor", 1.0f);
      } else if (*type != "none") {
        fail("{}: {}.rope.scaling.type \"{}\" is not supported yet (linear or none)", h.file().shards().at(0).path,
             h.arch(), *type);
      }
    }
    c.n_expert = h.count("expert_count", 0);
    if (c.n_expert > 0) {
      c.n_expert_used = h.count("expert_used_count");
      c.n_ff_expert = c.n_ff;  // Mixtral: feed_forward_length is each expert's width
      c.moe_norm_weights = true;
    }
  }

  void load(Weights& w, const Config& c) override {
    config_ = c;
    for (int64_t il = 0; il < c.n_layer; ++il) layers_.push_back(load_decoder_layer(w, c, il, {}));
  }

  void forward(ForwardPass& pass) override { decoder_forward(pass, config_, layers_); }

 private:
  Config config_;
  std::vector<DecoderLayer> layers_;
};

}  // namespace

std::unique_ptr<Architecture> make_llama() { return std::make_unique<Llama>(); }

}  // namespace velocity::model
