// Looks up a model's tensors by name, checks each shape against what the architecture expects
// (Error: "<file>: tensor <name>: expected shape [..], found [..]") and uploads it to the backend
// of the device the placement gives it. Counts the bytes a decode token reads, for bandwidth
// bounds.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "gguf/file.h"
#include "model/placement.h"

namespace velocity::model {

class Weights {
 public:
  // backends: one for each device of the placement.
  // A load that copies to a GPU logs its progress (a line every ~10% of the bytes, at most one a
  // second, and one at the end with the rate): a 40 GB model takes a while to come off the disk.
  // cancel (may be null): checked before each tensor is placed; set, the load throws Cancelled.
  Weights(const gguf::File& file, const Placement& placement, std::vector<engine::Backend*> backends,
          const std::atomic<bool>* cancel = nullptr);

  // A tensor that must exist, with this shape (GGUF order).
  engine::Weight get(const std::string& name, std::initializer_list<int64_t> shape);
  // A tensor that may be absent (returns an absent Weight); when present its shape must match.
  engine::Weight optional(const std::string& name, std::initializer_list<int64_t> shape);
  // A tensor several layers read (rope frequency factors): one copy on each device asked for.
  engine::Weight on_device(const std::string& name, std::initializer_list<int64_t> shape, engine::Device device);
  bool has(const std::string& name) const { return file_.find_tensor(name) != nullptr; }
  const gguf::File& file() const { return file_; }
  // A tensor the architecture reworks at load (deepseek2's attn_kv_b, split into attn_k_b and
  // attn_v_b): shape-checked, marked used, not uploaded; its bytes are in the file's mapping.
  const gguf::TensorInfo& host(const std::string& name, std::initializer_list<int64_t> shape);
  // Marks every tensor whose name starts with `prefix` used without uploading it (tensors a
  // file carries and the forward pass ignores: deepseek2's next-token-prediction layers).
  void skip_prefix(const std::string& prefix);
  // The device of layer il (its attention and KV cache).
  engine::Device layer_device(int64_t il) const { return placement_.layer(il); }
  engine::Backend& backend(engine::Device device) const;
  // Per-layer name: "blk.<il>.<suffix>".
  static std::string layer(int64_t il, const char* suffix);

  // Every tensor in the file must have been taken (an unused tensor means the file is not what
  // the architecture expects). Error listing the first few unused names.
  void check_all_used() const;
  // The closing progress line (when anything went to a GPU).
  void finish_progress();

  // Decode-token bytes: every dense weight counts in full; for expert tensors the caller passes
  // the fraction of experts used.
  // (GGUF row bytes: a backend's packed layout may carry a few more bytes per row.)
  void count_bytes(const engine::Weight& w, double fraction = 1.0) {
    bytes_per_token_ += static_cast<double>(w.n_mat * w.n_out * dtype_row_bytes(w.type, w.n_in)) * fraction;
  }
  uint64_t bytes_per_token() const { return static_cast<uint64_t>(bytes_per_token_); }

 private:
  engine::Weight take(const gguf::TensorInfo& t, std::initializer_list<int64_t> shape, engine::Device device);
  engine::Weight upload(const gguf::TensorInfo& t, engine::Device device);
  const gguf::File& file_;
  const Placement& placement_;
  const std::atomic<bool>* cancel_ = nullptr;
  std::vector<engine::Backend*> backends_;
  std::set<std::string> used_;
  std::vector<std::pair<std::string, engine::Weight>> shared_;  // on_device copies
  double bytes_per_token_ = 0;
  struct Progress {
    uint64_t total = 0, done = 0;  // bytes bound for devices other than the CPU
    double start = 0, last = 0;    // seconds (steady clock)
    uint64_t last_done = 0;
    std::string devices;
  } progress_;
};

}  // namespace velocity::model
