#include "server/nvml.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <array>

#include "server/metrics.h"

namespace velocity::server {

namespace {

// The NVML ABI (nvml.h, stable since driver 319): return codes are an enum with 0 success;
// devices are opaque pointers; the structs below are the v1 layouts the plain getters fill.
using NvmlReturn = int;
using NvmlDevice = struct NvmlDeviceOpaque*;
constexpr NvmlReturn kNvmlSuccess = 0;
constexpr int kNvmlTemperatureGpu = 0;          // NVML_TEMPERATURE_GPU
constexpr unsigned kNvmlDeviceNameBuffer = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE

struct NvmlMemory {  // nvmlMemory_t
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

// nvmlMemory_v2_t (drivers >= 510): `used` leaves out the memory the driver reserves, which the
// v1 call counts as used; nvidia-smi prints the v2 number.
struct NvmlMemoryV2 {
  unsigned int version;
  unsigned long long total;
  unsigned long long reserved;
  unsigned long long free;
  unsigned long long used;
};
// NVML_STRUCT_VERSION(Memory, 2): the struct's size with the version in the top byte.
constexpr unsigned kNvmlMemoryV2Version = (unsigned)sizeof(NvmlMemoryV2) | (2u << 24);

struct NvmlUtilization {  // nvmlUtilization_t: percent of the last sample period
  unsigned int gpu;
  unsigned int memory;
};

template <class F>
F symbol(void* library, const char* name) {
  return reinterpret_cast<F>(dlsym(library, name));
}

}  // namespace

struct Nvml::Api {
  void* library = nullptr;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  const char* (*error_string)(NvmlReturn) = nullptr;
  NvmlReturn (*device_count)(unsigned*) = nullptr;
  NvmlReturn (*device_by_index)(unsigned, NvmlDevice*) = nullptr;
  NvmlReturn (*name)(NvmlDevice, char*, unsigned) = nullptr;
  NvmlReturn (*memory)(NvmlDevice, NvmlMemory*) = nullptr;
  NvmlReturn (*memory_v2)(NvmlDevice, NvmlMemoryV2*) = nullptr;
  NvmlReturn (*power)(NvmlDevice, unsigned*) = nullptr;  // milliwatts
  NvmlReturn (*utilization)(NvmlDevice, NvmlUtilization*) = nullptr;
  NvmlReturn (*temperature)(NvmlDevice, int, unsigned*) = nullptr;

  std::string error(NvmlReturn code) const {
    const char* s = error_string ? error_string(code) : nullptr;
    return s ? fmt::format("{} (NVML error {})", s, code) : fmt::format("NVML error {}", code);
  }
};

Nvml::Nvml(const std::string& library) {
  auto api = std::make_unique<Api>();
  api->library = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!api->library) {
    const char* e = dlerror();
    reason_ = fmt::format("cannot load {}: {}", library, e ? e : "unknown error");
    return;
  }
  void* lib = api->library;
  // The _v2 entry points exist since driver 325; the plain names remain as fallbacks.
  api->init = symbol<decltype(api->init)>(lib, "nvmlInit_v2");
  if (!api->init) api->init = symbol<decltype(api->init)>(lib, "nvmlInit");
  api->shutdown = symbol<decltype(api->shutdown)>(lib, "nvmlShutdown");
  api->error_string = symbol<decltype(api->error_string)>(lib, "nvmlErrorString");
  api->device_count = symbol<decltype(api->device_count)>(lib, "nvmlDeviceGetCount_v2");
  if (!api->device_count) api->device_count = symbol<decltype(api->device_count)>(lib, "nvmlDeviceGetCount");
  api->device_by_index = symbol<decltype(api->device_by_index)>(lib, "nvmlDeviceGetHandleByIndex_v2");
  if (!api->device_by_index)
    api->device_by_index = symbol<decltype(api->device_by_index)>(lib, "nvmlDeviceGetHandleByIndex");
  api->name = symbol<decltype(api->name)>(lib, "nvmlDeviceGetName");
  api->memory = symbol<decltype(api->memory)>(lib, "nvmlDeviceGetMemoryInfo");
  api->memory_v2 = symbol<decltype(api->memory_v2)>(lib, "nvmlDeviceGetMemoryInfo_v2");
  api->power = symbol<decltype(api->power)>(lib, "nvmlDeviceGetPowerUsage");
  api->utilization = symbol<decltype(api->utilization)>(lib, "nvmlDeviceGetUtilizationRates");
  api->temperature = symbol<decltype(api->temperature)>(lib, "nvmlDeviceGetTemperature");
  if (!api->init || !api->shutdown || !api->device_count || !api->device_by_index) {
    reason_ = fmt::format("{} lacks nvmlInit/nvmlShutdown/nvmlDeviceGetCount/nvmlDeviceGetHandleByIndex", library);
    dlclose(lib);
    return;
  }
  if (const NvmlReturn r = api->init(); r != kNvmlSuccess) {
    reason_ = "nvmlInit failed: " + api->error(r);
    dlclose(lib);
    return;
  }
  unsigned n = 0;
  if (const NvmlReturn r = api->device_count(&n); r != kNvmlSuccess) {
    reason_ = "nvmlDeviceGetCount failed: " + api->error(r);
    api->shutdown();
    dlclose(lib);
    return;
  }
  n_devices_ = n;
  api_ = std::move(api);
}

Nvml::~Nvml() {
  if (!api_) return;
  api_->shutdown();
  dlclose(api_->library);
}

std::vector<GpuSample> Nvml::sample() const {
  std::vector<GpuSample> out;
  if (!api_) return out;
  const Api& a = *api_;
  for (unsigned i = 0; i < n_devices_; ++i) {
    NvmlDevice device = nullptr;
    if (a.device_by_index(i, &device) != kNvmlSuccess) continue;  // e.g. a GPU without permission
    GpuSample s;
    s.index = i;
    std::array<char, kNvmlDeviceNameBuffer> name{};
    if (a.name && a.name(device, name.data(), (unsigned)name.size()) == kNvmlSuccess) s.name = name.data();
    NvmlMemoryV2 memory_v2{};
    memory_v2.version = kNvmlMemoryV2Version;
    NvmlMemory memory{};
    if (a.memory_v2 && a.memory_v2(device, &memory_v2) == kNvmlSuccess) {
      s.memory_used_bytes = memory_v2.used;
      s.memory_total_bytes = memory_v2.total;
    } else if (a.memory && a.memory(device, &memory) == kNvmlSuccess) {
      s.memory_used_bytes = memory.used;
      s.memory_total_bytes = memory.total;
    }
    unsigned milliwatts = 0;
    if (a.power && a.power(device, &milliwatts) == kNvmlSuccess) s.power_watts = milliwatts / 1000.0;
    NvmlUtilization utilization{};
    if (a.utilization && a.utilization(device, &utilization) == kNvmlSuccess)
      s.utilization_ratio = utilization.gpu / 100.0;
    unsigned celsius = 0;
    if (a.temperature && a.temperature(device, kNvmlTemperatureGpu, &celsius) == kNvmlSuccess)
      s.temperature_celsius = (double)celsius;
    out.push_back(std::move(s));
  }
  return out;
}

std::string gpu_metrics_text(const std::vector<GpuSample>& samples) {
  std::string out;
  auto family = [&](const char* name, const char* help, auto value) {
    bool any = false;
    for (const GpuSample& s : samples) {
      const auto v = value(s);
      if (!v) continue;
      if (!any) out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
      any = true;
      out += fmt::format("{}{{gpu=\"{}\",name=\"{}\"}} {}\n", name, s.index, prometheus_escape(s.name), *v);
    }
  };
  family("velocity_gpu_memory_used_bytes",
         "GPU memory in use by all processes, driver-reserved memory excluded (NVML).",
         [](const GpuSample& s) { return s.memory_used_bytes; });
  family("velocity_gpu_memory_total_bytes", "GPU memory in all (NVML).",
         [](const GpuSample& s) { return s.memory_total_bytes; });
  family("velocity_gpu_power_watts", "GPU board power draw in watts (NVML).",
         [](const GpuSample& s) { return s.power_watts; });
  family("velocity_gpu_utilization_ratio", "Fraction of the last sample period a kernel ran on the GPU (NVML).",
         [](const GpuSample& s) { return s.utilization_ratio; });
  family("velocity_gpu_temperature_celsius", "GPU die temperature in degrees Celsius (NVML).",
         [](const GpuSample& s) { return s.temperature_celsius; });
  return out;
}

std::function<void(std::string& out)> gpu_metrics_collector(std::shared_ptr<const Nvml> nvml) {
  return [nvml = std::move(nvml)](std::string& out) {
    if (nvml && nvml->enabled()) out += gpu_metrics_text(nvml->sample());
  };
}

}  // namespace velocity::server
