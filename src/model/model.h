// A loaded model: its config, its weights on one or more backends (the placement), their KV
// caches, and a step.
//
//   auto model = Model::load("m.gguf", {.n_ctx = 4096, .n_slots = 4});
//   engine::Batch batch;
//   for (int i = 0; i < n; ++i) batch.add(ids[i], i, /*seq*/ 0, /*logits*/ i == n - 1);
//   std::span<const float> logits = model->forward(batch);   // [1, n_vocab]
//   engine::StepOutput out = model->step(batch);              // logits rows and/or argmax tokens
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "engine/backend.h"
#include "engine/batch.h"
#include "gguf/file.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/placement.h"

namespace velocity::model {

// The step-shape fields a model's config sizes beyond the common ones: the shared experts'
// width and, for multi-head latent attention, the latent cache and the MLA scratch.
void fill_latent_shape(const Config& c, engine::StepShape& s);

struct LoadOptions {
  int64_t n_ctx = 0;          // positions per sequence; 0: the model's context length, capped at 4096
  int64_t n_slots = 1;        // sequences held at once (seq ids 0..n_slots-1)
  int64_t max_batch = 512;    // tokens per forward() call
  int64_t max_logits = 0;     // tokens per call that may want logits; 0: max_batch (each costs n_vocab floats
                              // twice: set it low for big vocabularies when only the last token matters)
  DType cache_type_k = DType::F16;  // F32, F16, Q8_0, Q4_0
  DType cache_type_v = DType::F16;
  int n_threads = 0;          // CPU threads; 0: one per online core
  Placement placement;        // which device holds each tensor (default: all on the CPU)
  // placement.device came from engine::default_device(), not from the user: a model that needs
  // a feature the GPU backend lacks (engine::Feature; gpt-oss on CUDA) then loads on the CPU with
  // a warning instead of failing. Ignored when the placement names layers or tensor overrides.
  bool device_is_default = false;
  bool mmap = true;           // false: the file read into memory first (--no-mmap)
  // Called once the file, the architecture, the devices, the cache types and the memory needed
  // have passed their checks, before any weight is read (velocity serve opens its port then), with
  // the open file (its metadata: the caller's own checks). A throw stops the load with that error.
  std::function<void(const Config&, const gguf::File&)> on_checked;
  // When set (by another thread), the load stops before the next tensor is placed and throws
  // velocity::Cancelled: serve abandons the other models' loads when one fails its checks.
  const std::atomic<bool>* cancel = nullptr;
};

class Architecture;
struct ModelWeights;

class Model {
 public:
  // Opens the GGUF file (split models: the first shard), reads the config, checks every tensor's
  // name, type and shape (Error: expected vs found) and places the weights on the backend.
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& options = {});
  ~Model();

  const Config& config() const { return config_; }
  const gguf::File& file() const { return *file_; }
  // The backend of the first layer (the only one unless the placement spans devices).
  engine::Backend& backend() { return *backends_.front(); }
  const std::vector<std::unique_ptr<engine::Backend>>& backends() const { return backends_; }
  const Placement& placement() const { return placement_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_slots() const { return n_slots_; }
  int64_t max_batch() const { return max_batch_; }
  int64_t max_logits() const { return max_logits_; }  // output rows a step may have

  // One step (see engine/batch.h); the outputs stay valid until the next step. Throws
  // velocity::Error for an invalid batch (positions past n_ctx, ...), engine::DeviceFault when
  // a device failed.
  engine::StepOutput step(const engine::Batch& batch);
  // step() for a batch whose outputs are all logits: the logits [batch.n_outputs(), n_vocab].
  std::span<const float> forward(const engine::Batch& batch);

  // Bytes of weights one decode token reads (all dense weights, the used experts' share of the
  // expert tensors, the output head); for bandwidth bounds.
  uint64_t bytes_per_token() const { return bytes_per_token_; }

 private:
  Model() = default;
  void run_ops();

  std::unique_ptr<gguf::File> file_;  // the weights point into its mapping
  Config config_;
  Placement placement_;
  std::vector<std::unique_ptr<engine::Backend>> backends_;  // [0]: the default device's
  engine::Backend* embed_backend_ = nullptr;   // holds token_embd (the first layer's device)
  engine::Backend* output_backend_ = nullptr;  // holds the output head (the last layer's device)
  std::unique_ptr<Architecture> arch_;
  std::unique_ptr<ModelWeights> weights_;
  std::vector<float> staging_;    // [max_batch, D] host copy of the residual between devices
  std::unique_ptr<ForwardPass> pass_;
  uint64_t bytes_per_token_ = 0;
  int64_t n_ctx_ = 0, n_slots_ = 0, max_batch_ = 0, max_logits_ = 0;
};

}  // namespace velocity::model
