#include "model/memory_check.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace velocity::model {

namespace {

std::string gb(double bytes) { return fmt::format("{:.2f} GB", bytes / 1e9); }

// Headroom for what is allocated outside the counted buffers (graphs, kernel modules, the
// allocator's rounding).
constexpr double kHeadroomFraction = 0.01;
constexpr double kHeadroomBytes = 256.0 * (1 << 20);

}  // namespace

void check_device_memory(const gguf::File& file, const Placement& placement, const std::vector<DeviceNeed>& needs) {
  for (const DeviceNeed& need : needs) {
    engine::Backend& b = *need.backend;
    const std::optional<uint64_t> free = b.free_bytes();
    if (!free) continue;
    double weights = 0;
    for (const gguf::TensorInfo& t : file.tensors())
      if (placement.of(t.name) == b.device()) weights += static_cast<double>(b.weight_bytes(t.type, t.shape));
    for (const std::string& name : need.extra)
      if (const gguf::TensorInfo* t = file.find_tensor(name)) weights += static_cast<double>(b.weight_bytes(t->type, t->shape));
    const engine::StepShape& s = need.shape;
    // First: reserve_bytes refuses cache types the backend cannot store (a head dim that is not
    // whole blocks) with a clear Error, before kv_cache_bytes would size them.
    const double reserve = static_cast<double>(b.reserve_bytes(s));
    const double kv = static_cast<double>(engine::Backend::kv_cache_bytes(s));
    const double buffers = reserve - kv + static_cast<double>(s.max_tokens * s.n_embd * 4);
    const double needed = weights + kv + buffers;
    const double available = static_cast<double>(*free) * (1 - kHeadroomFraction) - kHeadroomBytes;
    if (needed <= available) continue;

    // What would fit: the KV cache is the part the settings size.
    std::vector<std::string> fits;
    const double room_for_kv = available - weights - buffers;
    const double kv_per_position = s.n_ctx > 0 ? kv / static_cast<double>(s.n_ctx) : 0;
    if (kv > 0 && room_for_kv > 0) {
      const int64_t ctx = static_cast<int64_t>(room_for_kv / kv_per_position) / 256 * 256;
      if (ctx >= 256) fits.push_back(fmt::format("--ctx {} (KV cache {})", ctx, gb(kv_per_position * ctx)));
      const int64_t slots = static_cast<int64_t>(room_for_kv / (kv / static_cast<double>(s.n_slots)));
      if (slots >= 1 && slots < s.n_slots) fits.push_back(fmt::format("--slots {}", slots));
      engine::StepShape q8 = s;
      q8.cache_type_k = q8.cache_type_v = DType::Q8_0;
      const double kv_q8 = static_cast<double>(engine::Backend::kv_cache_bytes(q8));
      if ((s.cache_type_k != DType::Q8_0 || s.cache_type_v != DType::Q8_0) && kv_q8 < kv && kv_q8 <= room_for_kv &&
          s.head_dim_k % 32 == 0 && s.head_dim_v % 32 == 0)
        fits.push_back(fmt::format("--cache-type-k q8_0 --cache-type-v q8_0 (KV cache {})", gb(kv_q8)));
    }
    std::string advice;
    if (weights > available)
      advice = fmt::format(
          "the weights alone need {}: use a smaller quantisation, keep layers or experts in host RAM, or run on the CPU "
          "(--device cpu)",
          gb(weights));
    else if (fits.empty())
      advice = "no smaller context or slot count fits next to the weights";
    else
      advice = "fits with " + fmt::format("{}", fmt::join(fits, ", or "));
    fail("{}: not enough GPU memory for this model: needs {} (weights {}, KV cache {} for {} slots x {} positions "
         "{}/{}, buffers {}) but {} is free; {}",
         b.name(), gb(needed), gb(weights), gb(kv), s.n_slots, s.n_ctx, dtype_name(s.cache_type_k),
         dtype_name(s.cache_type_v), gb(buffers), gb(static_cast<double>(*free)), advice);
  }
}

}  // namespace velocity::model
