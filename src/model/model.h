// A loaded model: its config, its weights on a backend, its KV cache, and forward().
//
//   auto model = Model::load("m.gguf", {.n_ctx = 4096, .n_slots = 4});
//   engine::Batch batch;
//   for (int i = 0; i < n; ++i) batch.add(ids[i], i, /*seq*/ 0, /*logits*/ i == n - 1);
//   std::span<const float> logits = model->forward(batch);   // [1, n_vocab]
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "engine/backend.h"
#include "engine/batch.h"
#include "gguf/file.h"
#include "model/config.h"

namespace velocity::model {

struct LoadOptions {
  int64_t n_ctx = 0;          // positions per sequence; 0: the model's context length, capped at 4096
  int64_t n_slots = 1;        // sequences held at once (seq ids 0..n_slots-1)
  int64_t max_batch = 512;    // tokens per forward() call
  int64_t max_logits = 0;     // tokens per call that may want logits; 0: max_batch (each costs n_vocab floats
                              // twice: set it low for big vocabularies when only the last token matters)
  DType cache_type_k = DType::F16;  // F32, F16, Q8_0, Q4_0
  DType cache_type_v = DType::F16;
  int n_threads = 0;          // CPU threads; 0: one per online core
  std::string device = "cpu";
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
  engine::Backend& backend() { return *backend_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_slots() const { return n_slots_; }
  int64_t max_batch() const { return max_batch_; }

  // One step (see engine/batch.h). Returns the logits [batch.n_logits(), n_vocab], valid until
  // the next forward(). Throws velocity::Error for an invalid batch (positions past n_ctx, ...).
  std::span<const float> forward(const engine::Batch& batch);

  // Bytes of weights one decode token reads (all dense weights, the used experts' share of the
  // expert tensors, the output head); for bandwidth bounds.
  uint64_t bytes_per_token() const { return bytes_per_token_; }

 private:
  Model() = default;
  std::unique_ptr<gguf::File> file_;  // the weights point into its mapping
  Config config_;
  std::unique_ptr<engine::Backend> backend_;
  std::unique_ptr<Architecture> arch_;
  std::unique_ptr<ModelWeights> weights_;
  engine::Act x_;                 // [max_batch, D] the residual stream
  std::vector<float> logits_;     // [max_batch, n_vocab] host copy
  uint64_t bytes_per_token_ = 0;
  int64_t n_ctx_ = 0, n_slots_ = 0, max_batch_ = 0;
};

}  // namespace velocity::model
