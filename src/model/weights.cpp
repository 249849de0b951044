#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <vector>

#include "core/error.h"
#include "core/quant.h"

namespace velocity::model {

std::string Weights::layer(int64_t il, const char* suffix) { return fmt::format("blk.{}.{}", il, suffix); }

engine::Weight Weights::take(const gguf::TensorInfo& t, std::initializer_list<int64_t> shape) {
  const std::vector<int64_t> expected(shape);
  if (t.shape != expected)
    fail("{}: tensor {}: expected shape [{}], found [{}]", file_.shards().at(0).path, t.name, fmt::join(expected, ", "),
         fmt::join(t.shape, ", "));
  if (!t.data) fail("{}: tensor {} has no data (a header-only file cannot be run)", file_.shards().at(0).path, t.name);
  used_.insert(t.name);
  return backend_.upload(t.name, t.type, t.shape, t.data);
}

engine::Weight Weights::get(const std::string& name, std::initializer_list<int64_t> shape) {
  const gguf::TensorInfo* t = file_.find_tensor(name);
  if (!t) fail("{}: tensor {} is missing", file_.shards().at(0).path, name);
  return take(*t, shape);
}

engine::Weight Weights::optional(const std::string& name, std::initializer_list<int64_t> shape) {
  const gguf::TensorInfo* t = file_.find_tensor(name);
  return t ? take(*t, shape) : engine::Weight{};
}

std::vector<float> Weights::host_f32(const std::string& name, int64_t n) {
  const gguf::TensorInfo* t = file_.find_tensor(name);
  if (!t) return {};
  if (t->shape != std::vector<int64_t>{n})
    fail("{}: tensor {}: expected shape [{}], found [{}]", file_.shards().at(0).path, name, n, fmt::join(t->shape, ", "));
  if (!dtype_info(t->type).has_reference || !t->data)
    fail("{}: tensor {}: type {} cannot be read", file_.shards().at(0).path, name, dtype_name(t->type));
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t->type, t->data, out.data(), n);
  used_.insert(name);
  return out;
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
