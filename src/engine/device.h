// Where memory lives and ops run: the host CPU or one CUDA GPU. Tensors carry their device, a
// model's placement maps tensor names to devices, and every Backend computes on one device.
// (Light on purpose: the CUDA kernels include it through engine/tensor.h, and nvcc's front end
// is kept away from fmt and other heavy headers.)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace velocity::engine {

struct Device {
  enum class Kind : uint8_t { Cpu, Cuda };
  Kind kind = Kind::Cpu;
  int32_t index = 0;  // N of cuda:N; 0 for the CPU (a second CPU backend, "cpu:1", exists only in
                      // tests of the cross-device paths)

  static Device cpu() { return {}; }
  static Device cuda(int32_t index) { return {Kind::Cuda, index}; }
  bool is_cpu() const { return kind == Kind::Cpu; }
  bool is_cuda() const { return kind == Kind::Cuda; }
  std::string to_string() const;  // "cpu", "cuda:0"
  // Parses "cpu" or "cuda:N" (N a decimal in [0, 1023]; "cuda" alone is cuda:0); throws Error.
  static Device parse(std::string_view text);

  friend bool operator==(const Device&, const Device&) = default;
};

}  // namespace velocity::engine
