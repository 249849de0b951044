// Which device holds each tensor of a model, decided before anything is read (by flags, the
// config, or the plan). Attention and the KV cache of a layer live on the layer's device; the
// residual stream moves between devices at layer boundaries (model/forward.h).
//
//   Placement p;                       // everything on the CPU
//   p.device = Device::cuda(0);        // everything on GPU 0
//   p.layers = {cuda:0 x 20, cuda:1 x 12};   // a layer split over two GPUs
//   p.overrides.push_back({"ffn_.*_exps", Device::cpu()});  // experts in host RAM (issue 14)
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/device.h"

namespace velocity::model {

struct TensorOverride {
  std::string pattern;     // regular expression (PCRE2 syntax) searched in the tensor name
  engine::Device device;
};

struct Placement {
  engine::Device device;                // tensors nothing else places
  std::vector<engine::Device> layers;   // [n_layer] device of each layer's tensors; empty: device
  std::vector<TensorOverride> overrides;  // first match wins, before layers and device
  // llama.cpp's -ngl N, when `layers` is empty and `device` a GPU: the last N layers on `device`,
  // the others (and the embedding, which goes with the first layer) on the CPU; N >= n_layer is
  // everything on `device`, 0 everything on the CPU. -1: not set (everything on `device`).
  // Resolved into `layers` by resolve_gpu_layers once the layer count is known.
  int64_t gpu_layers = -1;
  void resolve_gpu_layers(int64_t n_layer);

  // The device of tensor `name` ("blk.<il>.*" names follow their layer).
  engine::Device of(std::string_view name) const;
  // The device of layer il (its attention and KV cache).
  engine::Device layer(int64_t il) const;
  // Every device used, the default first, without repeats.
  std::vector<engine::Device> devices() const;
  std::string to_string() const;  // "cuda:0", "layers 0-19 cuda:0, 20-31 cuda:1", ...

 private:
  struct Compiled;  // the override patterns, compiled on first use (PCRE2)
  mutable std::shared_ptr<const Compiled> compiled_;
};

// The layer index of a "blk.<il>.<rest>" tensor name, or -1.
int64_t tensor_layer(std::string_view name);

}  // namespace velocity::model
