#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <vector>

#include "core/error.h"

namespace velocity::model {

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
  return backend(device).upload(t.name, t.type, t.shape, t.data);
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
  const gguf::TensorInfo* t = file_.find_tensor(name);
  if (!t) fail("{}: tensor {} is missing", file_.shards().at(0).path, name);
  const std::vector<int64_t> expected(shape);
  if (t->shape != expected)
    fail("{}: tensor {}: expected shape [{}], found [{}]", file_.shards().at(0).path, t->name, fmt::join(expected, ", "),
         fmt::join(t->shape, ", "));
  if (!t->data) fail("{}: tensor {} has no data (a header-only file cannot be run)", file_.shards().at(0).path, t->name);
  used_.insert(t->name);
  engine::Weight w = backend(device).upload(t->name, t->type, t->shape, t->data);
  shared_.emplace_back(key, w);
  return w;
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
