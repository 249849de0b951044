// One architecture = one file (llama.cpp, qwen2.cpp, qwen3.cpp, qwen3moe.cpp): its hparam keys,
// its tensors and its forward pass, written against the backend's blocks. Model (model.cpp) does
// what is common: open the file, the embedding table, the output norm and head, the step.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/hparams.h"
#include "model/weights.h"

namespace velocity::model {

class Architecture {
 public:
  virtual ~Architecture() = default;
  // Reads the architecture's hparams into `config` (the common ones are already there: n_vocab,
  // n_embd, n_layer, n_head, n_head_kv, head dims, n_ff, rms_eps, rope base/scale, n_rot).
  virtual void read_config(const Hparams& hparams, Config& config) = 0;
  // Takes the per-layer tensors.
  virtual void load(Weights& weights, const Config& config) = 0;
  // pass.x() [T, D] (the embedded tokens) -> x after the last layer, before the output norm;
  // each layer runs on pass.layer(il).
  virtual void forward(ForwardPass& pass) = 0;
};

// The architecture for general.architecture; Error listing the supported ones otherwise.
std::unique_ptr<Architecture> make_architecture(const std::string& arch, const std::string& file);
std::vector<std::string> supported_architectures();

// The pieces the llama family shares (llama, qwen2, qwen3, qwen3moe, Mixtral).
struct DecoderLayer {
  engine::AttentionLayer attn;
  engine::FfnLayer ffn;   // dense layers
  engine::MoeLayer moe;   // MoE layers (moe.router present)
  engine::Weight rope_freqs;  // llama 3 frequency factors on the layer's device, or absent
};

struct DecoderOptions {
  bool qkv_bias = false;  // attn_{q,k,v}.bias
  bool qk_norm = false;   // attn_{q,k}_norm.weight [Dh]
};

// Refuses <arch>.rope.scaling.type other than "none" (architectures without scaling support).
void refuse_rope_scaling(const Hparams& h);
// Reads <arch>.rope.scaling.* for type "yarn" (Error for another type other than "none", or a
// factor or original context that is missing or not positive) into the rope_yarn_* fields.
void read_yarn_rope(const Hparams& h, Config& c);
// Loads the attention tensors of layer il (input norm, Q/K/V/O, the options' biases and Q/K norms).
engine::AttentionLayer load_attention(Weights& w, const Config& c, int64_t il, const DecoderOptions& options);
// Loads the attention tensors of layer il and either the dense FFN or (n_expert > 0) the MoE one.
DecoderLayer load_decoder_layer(Weights& w, const Config& c, int64_t il, const DecoderOptions& options);
// Attention block parameters of layer il.
engine::AttentionParams attention_params(const Config& c, const DecoderLayer& l, int64_t il);
// The RoPE of a config over n_rot dims: type, base, linear scale, YaRN and its magnitude (the
// frequency factors, a tensor, are the caller's).
engine::RopeParams rope_params(const Config& c, int64_t n_rot);
// Runs every layer: attention block then FFN or MoE block.
void decoder_forward(ForwardPass& pass, const Config& c, const std::vector<DecoderLayer>& layers);

}  // namespace velocity::model
