#include "model/placement.h"

#include <algorithm>
#include <charconv>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include "core/error.h"

namespace velocity::model {

void Placement::resolve_gpu_layers(int64_t n_layer) {
  if (gpu_layers < 0 || !layers.empty() || device.is_cpu()) return;
  const int64_t on_gpu = std::min(gpu_layers, n_layer);
  if (on_gpu == n_layer) return;  // all of it on `device`
  if (on_gpu == 0) {
    device = engine::Device::cpu();
    return;
  }
  layers.assign(static_cast<size_t>(n_layer - on_gpu), engine::Device::cpu());
  layers.resize(static_cast<size_t>(n_layer), device);
}

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

struct Placement::Compiled {
  std::vector<std::string> patterns;  // what was compiled: a copy whose overrides changed recompiles
  std::vector<pcre2_code*> codes;

  explicit Compiled(const std::vector<TensorOverride>& overrides) {
    for (const TensorOverride& o : overrides) {
      int error = 0;
      PCRE2_SIZE offset = 0;
      pcre2_code* code =
          pcre2_compile(reinterpret_cast<PCRE2_SPTR>(o.pattern.data()), o.pattern.size(), 0, &error, &offset, nullptr);
      if (!code) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error, message, sizeof(message));
        fail("tensor placement pattern \"{}\" is not a valid regular expression (at offset {}): {}", o.pattern, offset,
             reinterpret_cast<const char*>(message));
      }
      codes.push_back(code);
      patterns.push_back(o.pattern);
    }
  }
  ~Compiled() {
    for (pcre2_code* c : codes) pcre2_code_free(c);
  }
  Compiled(const Compiled&) = delete;
  Compiled& operator=(const Compiled&) = delete;

  bool matches(size_t i, std::string_view name) const {  // called while loading: a match block per call
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(codes[i], nullptr);
    const int rc = pcre2_match(codes[i], reinterpret_cast<PCRE2_SPTR>(name.data()), name.size(), 0, 0, match, nullptr);
    pcre2_match_data_free(match);
    return rc >= 0;
  }
};

engine::Device Placement::of(std::string_view name) const {
  bool fresh = compiled_ && compiled_->patterns.size() == overrides.size();
  for (size_t i = 0; fresh && i < overrides.size(); ++i) fresh = compiled_->patterns[i] == overrides[i].pattern;
  if (!fresh) compiled_ = std::make_shared<const Compiled>(overrides);
  for (size_t i = 0; i < overrides.size(); ++i)
    if (compiled_->matches(i, name)) return overrides[i].device;
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
