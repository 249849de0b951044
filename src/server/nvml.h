// GPU gauges for /metrics from NVML (the NVIDIA Management Library), when the machine has it.
//
// NVML ships with the NVIDIA driver, not the CUDA toolkit, and its header is not installed on
// build machines: libnvidia-ml.so.1 is opened with dlopen at run time and the few functions
// used are declared here. No driver (no library, or nvmlInit failing) means no GPU metrics,
// not an error.
//
// Families (one sample per GPU, labels gpu="<index>", name="<product name>"):
//   velocity_gpu_memory_used_bytes       gauge  device memory in use by all processes (as nvidia-smi
//                                               shows it: without what the driver reserves)
//   velocity_gpu_memory_total_bytes      gauge
//   velocity_gpu_power_watts             gauge  board power draw (NVML reports milliwatts)
//   velocity_gpu_utilization_ratio       gauge  fraction of the last sample period a kernel ran (0..1)
//   velocity_gpu_temperature_celsius     gauge  GPU die
// A reading the device does not support is left out (its family too, when no GPU has it).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace velocity::server {

// One GPU's readings at one moment.
struct GpuSample {
  unsigned index = 0;  // NVML device index
  std::string name;    // "NVIDIA H100 80GB HBM3"
  std::optional<uint64_t> memory_used_bytes;
  std::optional<uint64_t> memory_total_bytes;
  std::optional<double> power_watts;
  std::optional<double> utilization_ratio;  // 0..1
  std::optional<double> temperature_celsius;
};

// The Prometheus text (with # HELP and # TYPE) of `samples`; "" when there are none.
std::string gpu_metrics_text(const std::vector<GpuSample>& samples);

class Nvml {
 public:
  // Opens `library` and initialises NVML; on any failure the object is disabled and reason()
  // says why. Never throws for a missing or broken driver.
  explicit Nvml(const std::string& library = "libnvidia-ml.so.1");
  ~Nvml();  // nvmlShutdown, dlclose
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;

  bool enabled() const { return api_ != nullptr; }
  const std::string& reason() const { return reason_; }  // why disabled; "" when enabled
  unsigned device_count() const { return n_devices_; }

  // Current readings of every GPU; empty when disabled. Safe to call from several threads
  // (NVML is thread-safe).
  std::vector<GpuSample> sample() const;

 private:
  struct Api;
  std::unique_ptr<Api> api_;
  std::string reason_;
  unsigned n_devices_ = 0;
};

// A Metrics collector (Metrics::add_collector) appending gpu_metrics_text(nvml->sample()).
std::function<void(std::string& out)> gpu_metrics_collector(std::shared_ptr<const Nvml> nvml);

}  // namespace velocity::server
