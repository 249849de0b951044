#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/error.h"
#include "core/log.h"

namespace velocity::model {

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Weights::Weights(const gguf::File& file, const Placement& placement, std::vector<engine::Backend*> backends,
                 const std::atomic<bool>* cancel)
    : file_(file), placement_(placement), cancel_(cancel), backends_(std::move(backends)) {
  for (const gguf::TensorInfo& t : file_.tensors())
    if (placement_.of(t.name).kind != engine::Device::Kind::Cpu) progress_.total += t.n_bytes;
  for (const engine::Device& d : placement_.devices())
    if (d.kind != engine::Device::Kind::Cpu) progress_.devices += (progress_.devices.empty() ? "" : ", ") + d.to_string();
  progress_.start = progress_.last = now_seconds();
}

engine::Weight Weights::upload(const gguf::TensorInfo& t, engine::Device device) {
  if (cancel_ != nullptr && cancel_->load(std::memory_order_relaxed))
    throw Cancelled(fmt::format("{}: loading cancelled", file_.shards().at(0).path));
  engine::Weight w = backend(device).upload(t.name, t.type, t.shape, t.data);
  if (device.kind == engine::Device::Kind::Cpu || progress_.total == 0) return w;
  progress_.done += t.n_bytes;
  const double now = now_seconds();
  if (progress_.done - progress_.last_done >= progress_.total / 10 && now - progress_.last >= 1.0 &&
      progress_.done < progress_.total) {
    log_line(fmt::format("loading {}: {:.1f} of {:.1f} GB copied to {} ({:.0f}%)", file_.shards().at(0).path,
                         static_cast<double>(progress_.done) / 1e9, static_cast<double>(progress_.total) / 1e9,
                         progress_.devices, 100.0 * static_cast<double>(progress_.done) / static_cast<double>(progress_.total)));
    progress_.last = now;
    progress_.last_done = progress_.done;
  }
  return w;
}

void Weights::finish_progress() {
  if (progress_.total == 0) return;
  const double seconds = now_seconds() - progress_.start;
  log_line(fmt::format("loaded {}: {:.2f} GB on {} in {:.1f} s ({:.1f} GB/s)", file_.shards().at(0).path,
                       static_cast<double>(progress_.done) / 1e9, progress_.devices, seconds,
                       static_cast<double>(progress_.done) / 1e9 / std::max(seconds, 1e-9)));
}

std::string Weights::layer(int64_t il, const char* suffix) { return fmt::format("blk.{}.{}", il, suffix); }

engine::Backend& Weights::backend(engine::Device device) const {
  for (engine::Backend* b : backends_)
    if (b->device() == device) return *b;
  fail("{}: the placement uses device {}, which has no backend", file_.shards().at(0).path, device.to_string());
}

engine::Weight Weights::take(const gguf::TensorInfo& t, std::initializer_list<int64_t> shape, engine::Device device) {
  const std::vector<int64_t> expected(shape);
  if (t.shape != expected)
    fail("{}: tensor {}: expected shape [{}], found [{}]", file_.shards().at(0).path, t.name, fmt::join(expected, ", "),
         fmt::join(t.shape, ", "));
  if (!t.data) fail("{}: tensor {} has no data (a header-only file cannot be run)", file_.shards().at(0).path, t.name);
  const int64_t il = tensor_layer(t.name);
  if (il >= 0 && device != placement_.layer(il))
    fail("{}: the placement puts tensor {} on {} but layer {} runs on {}: a layer's tensors share its device", file_.shards().at(0).path,
         t.name, device.to_string(), il, placement_.layer(il).to_string());
  used_.insert(t.name);
  return upload(t, device);
}

engine::Weight Weights::get(const std::string& name, std::initializer_list<int64_t> shape) {
  const gguf::TensorInfo* t = file_.find_tensor(name);
  if (!t) fail("{}: tensor {} is missing", file_.shards().at(0).path, name);
  return take(*t, shape, placement_.of(name));
}

engine::Weight Weights::optional(const std::string& name, std::initializer_list<int64_t> shape) {
  const gguf::TensorInfo* t = file_.find_tensor(name);
  return t ? take(*t, shape, placement_.of(name)) : engine::Weight{};
}

engine::Weight Weights::on_device(const std::string& name, std::initializer_list<int64_t> shape, engine::Device device) {
  const std::string key = name + "@" + device.to_string();
  for (const auto& [k, w] : shared_)
    if (k == key) return w;
  engine::Weight w = upload(host(name, shape), device);
  shared_.emplace_back(key, w);
  return w;
}

const gguf::TensorInfo& Weights::host(const std::string& name, std::initializer_list<int64_t> shape) {
  const gguf::TensorInfo* t = file_.find_tensor(name);
  if (!t) fail("{}: tensor {} is missing", file_.shards().at(0).path, name);
  const std::vector<int64_t> expected(shape);
  if (t->shape != expected)
    fail("{}: tensor {}: expected shape [{}], found [{}]", file_.shards().at(0).path, t->name, fmt::join(expected, ", "),
         fmt::join(t->shape, ", "));
  if (!t->data) fail("{}: tensor {} has no data (a header-only file cannot be run)", file_.shards().at(0).path, t->name);
  used_.insert(t->name);
  return *t;
}

void Weights::skip_prefix(const std::string& prefix) {
  for (const auto& t : file_.tensors())
    if (t.name.starts_with(prefix)) used_.insert(t.name);
}

void Weights::check_all_used() const {
  std::vector<std::string> unused;
  for (const auto& t : file_.tensors())
    if (!used_.count(t.name)) unused.push_back(t.name);
  if (unused.empty()) return;
  const size_t shown = std::min<size_t>(unused.size(), 5);
  fail("{}: {} tensor(s) this architecture does not use: {}{}", file_.shards().at(0).path, unused.size(),
       fmt::join(unused.begin(), unused.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
       unused.size() > shown ? ", ..." : "");
}

}  // namespace velocity::model
