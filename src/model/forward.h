// One step's walk over the layers when a model spans several backends: the residual stream x
// [T, D] lives on the backend of the layer being run and moves (read to a host staging buffer,
// write to the next backend) when a layer's device differs from the last one's. With one
// backend it is a plain reference to it.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend.h"

namespace velocity::model {

class ForwardPass {
 public:
  // layer_backends: [n_layer]; backends: each distinct backend once; residuals: [backend] an
  // activation of [max_tokens, D] on that backend; staging: host [max_tokens * D].
  ForwardPass(std::vector<engine::Backend*> layer_backends, std::vector<engine::Backend*> backends,
              std::vector<engine::Act> residuals, std::vector<float>* staging);

  // Starts a step on `b` (where the embedding is).
  void begin(engine::Backend& b);
  // The backend of layer il, with the residual stream moved there first.
  engine::Backend& layer(int64_t il) { return to(*layer_backends_[static_cast<size_t>(il)]); }
  // Moves the residual stream to `b` (no-op when it is there) and returns b.
  engine::Backend& to(engine::Backend& b);
  // The residual stream on the current backend.
  engine::Act& x() { return residuals_[current_]; }
  engine::Backend& current() { return *backends_[current_]; }

 private:
  size_t index(const engine::Backend& b) const;

  std::vector<engine::Backend*> layer_backends_;
  std::vector<engine::Backend*> backends_;
  std::vector<engine::Act> residuals_;
  std::vector<float>* staging_;
  size_t current_ = 0;
};

}  // namespace velocity::model
