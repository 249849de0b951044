#include "model/placement.h"

#include <charconv>

#include <fmt/format.h>

#include "core/error.h"

namespace velocity::model {

int64_t tensor_layer(std::string_view name) {
  if (!name.starts_with("blk.")) return -1;
  const std::string_view rest = name.substr(4);
  int64_t il = -1;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), il);
  if (ec != std::errc() || end == rest.data() || end == rest.data() + rest.size() || *end != '.') return -1;
  return il;
}

engine::Device Placement::layer(int64_t il) const {
  if (layers.empty()) return device;
  VELOCITY_CHECK(il >= 0 && il < static_cast<int64_t>(layers.size()), "layer {} of a placement for {} layers", il,
                 layers.size());
  return layers[il];
}

engine::Device Placement::of(std::string_view name) const {
  if (compiled_.size() != overrides.size()) {
    compiled_.clear();
    for (const TensorOverride& o : overrides) {
      try {
        compiled_.emplace_back(o.pattern, std::regex::ECMAScript | std::regex::optimize);
      } catch (const std::regex_error& e) {
        fail("tensor placement pattern \"{}\" is not a valid regular expression: {}", o.pattern, e.what());
      }
    }
  }
  for (size_t i = 0; i < overrides.size(); ++i)
    if (std::regex_search(name.begin(), name.end(), compiled_[i])) return overrides[i].device;
  const int64_t il = tensor_layer(name);
  if (il >= 0 && !layers.empty() && il < static_cast<int64_t>(layers.size())) return layers[il];
  return device;
}

std::vector<engine::Device> Placement::devices() const {
  std::vector<engine::Device> out{device};
  auto add = [&](engine::Device d) {
    for (const engine::Device& e : out)
      if (e == d) return;
    out.push_back(d);
  };
  for (const engine::Device& d : layers) add(d);
  for (const TensorOverride& o : overrides) add(o.device);
  return out;
}

std::string Placement::to_string() const {
  std::string out;
  if (layers.empty()) {
    out = device.to_string();
  } else {
    size_t begin = 0;
    for (size_t i = 1; i <= layers.size(); ++i) {
      if (i < layers.size() && layers[i] == layers[begin]) continue;
      out += fmt::format("{}{}-{} {}", out.empty() ? "layers " : ", ", begin, i - 1, layers[begin].to_string());
      begin = i;
    }
  }
  for (const TensorOverride& o : overrides) out += fmt::format(", /{}/ {}", o.pattern, o.device.to_string());
  return out;
}

}  // namespace velocity::model
