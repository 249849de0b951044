#include "engine/device.h"

#include <charconv>

#include <fmt/format.h>

#include "core/error.h"

namespace velocity::engine {

std::string Device::to_string() const {
  if (kind == Kind::Cpu) return index == 0 ? "cpu" : fmt::format("cpu:{}", index);  // cpu:N: tests only
  return fmt::format("cuda:{}", index);
}

Device Device::parse(std::string_view text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.starts_with("cuda:")) {
    const std::string_view digits = text.substr(5);
    int32_t index = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (!digits.empty() && ec == std::errc() && end == digits.data() + digits.size() && index >= 0 && index <= 1023 &&
        (digits.size() == 1 || digits[0] != '0'))
      return cuda(index);
  }
  fail("device \"{}\" is not one of: cpu, cuda, cuda:N", text);
}

}  // namespace velocity::engine
