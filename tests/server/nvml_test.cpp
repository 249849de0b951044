// GPU metrics: the NVML loader disables itself without a driver, and the Prometheus text of
// fake readings is well formed.
#include "server/nvml.h"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "server/metrics.h"

namespace velocity::server {
namespace {

GpuSample h100(unsigned index) {
  GpuSample s;
  s.index = index;
  s.name = "NVIDIA H100 80GB HBM3";
  s.memory_used_bytes = 1234567890ull;
  s.memory_total_bytes = 85520809984ull;
  s.power_watts = 312.5;
  s.utilization_ratio = 0.97;
  s.temperature_celsius = 61;
  return s;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(Nvml, MissingLibraryDisablesQuietly) {
  Nvml nvml("libvelocity-no-such-nvml.so.1");
  EXPECT_FALSE(nvml.enabled());
  EXPECT_NE(nvml.reason().find("libvelocity-no-such-nvml.so.1"), std::string::npos) << nvml.reason();
  EXPECT_EQ(nvml.device_count(), 0u);
  EXPECT_TRUE(nvml.sample().empty());
  std::string out;
  gpu_metrics_collector(std::make_shared<const Nvml>("libvelocity-no-such-nvml.so.1"))(out);
  EXPECT_EQ(out, "");
}

TEST(Nvml, LibraryWithoutNvmlDisablesQuietly) {
  Nvml nvml("libm.so.6");  // loads, but has no nvmlInit
  EXPECT_FALSE(nvml.enabled());
  EXPECT_NE(nvml.reason().find("nvmlInit"), std::string::npos) << nvml.reason();
}

TEST(Nvml, DefaultLibraryNeverThrows) {
  // On a machine without the NVIDIA driver this is disabled; with one, every sample has an index
  // below the device count.
  Nvml nvml;
  if (!nvml.enabled()) {
    EXPECT_FALSE(nvml.reason().empty());
    EXPECT_TRUE(nvml.sample().empty());
    return;
  }
  for (const GpuSample& s : nvml.sample()) EXPECT_LT(s.index, nvml.device_count());
}

TEST(Nvml, NoSamplesNoText) { EXPECT_EQ(gpu_metrics_text({}), ""); }

TEST(Nvml, PrometheusTextOfTwoGpus) {
  GpuSample second = h100(1);
  second.name = "odd \"name\"\\";
  second.power_watts.reset();  // unsupported reading: left out
  const std::string text = gpu_metrics_text({h100(0), second});
  const std::vector<std::string> got = lines(text);
  const std::vector<std::string> want = {
      "# HELP velocity_gpu_memory_used_bytes GPU memory in use by all processes, driver-reserved memory excluded "
      "(NVML).",
      "# TYPE velocity_gpu_memory_used_bytes gauge",
      "velocity_gpu_memory_used_bytes{gpu=\"0\",name=\"NVIDIA H100 80GB HBM3\"} 1234567890",
      "velocity_gpu_memory_used_bytes{gpu=\"1\",name=\"odd \\\"name\\\"\\\\\"} 1234567890",
      "# HELP velocity_gpu_memory_total_bytes GPU memory in all (NVML).",
      "# TYPE velocity_gpu_memory_total_bytes gauge",
      "velocity_gpu_memory_total_bytes{gpu=\"0\",name=\"NVIDIA H100 80GB HBM3\"} 85520809984",
      "velocity_gpu_memory_total_bytes{gpu=\"1\",name=\"odd \\\"name\\\"\\\\\"} 85520809984",
      "# HELP velocity_gpu_power_watts GPU board power draw in watts (NVML).",
      "# TYPE velocity_gpu_power_watts gauge",
      "velocity_gpu_power_watts{gpu=\"0\",name=\"NVIDIA H100 80GB HBM3\"} 312.5",
      "# HELP velocity_gpu_utilization_ratio Fraction of the last sample period a kernel ran on the GPU (NVML).",
      "# TYPE velocity_gpu_utilization_ratio gauge",
      "velocity_gpu_utilization_ratio{gpu=\"0\",name=\"NVIDIA H100 80GB HBM3\"} 0.97",
      "velocity_gpu_utilization_ratio{gpu=\"1\",name=\"odd \\\"name\\\"\\\\\"} 0.97",
      "# HELP velocity_gpu_temperature_celsius GPU die temperature in degrees Celsius (NVML).",
      "# TYPE velocity_gpu_temperature_celsius gauge",
      "velocity_gpu_temperature_celsius{gpu=\"0\",name=\"NVIDIA H100 80GB HBM3\"} 61",
      "velocity_gpu_temperature_celsius{gpu=\"1\",name=\"odd \\\"name\\\"\\\\\"} 61",
  };
  EXPECT_EQ(got, want) << text;
  // Every sample line matches the exposition grammar: name{labels} number.
  const std::regex sample(R"(^[a-z_]+\{gpu="\d+",name="([^"\\]|\\.)*"\} [0-9.e+-]+$)");
  for (const std::string& line : got) {
    if (!line.starts_with("#")) {
      EXPECT_TRUE(std::regex_match(line, sample)) << line;
    }
  }
}

TEST(Nvml, FamilyWithoutReadingsIsLeftOut) {
  GpuSample s;
  s.index = 0;
  s.name = "x";
  s.temperature_celsius = 40;
  const std::string text = gpu_metrics_text({s});
  EXPECT_EQ(text,
            "# HELP velocity_gpu_temperature_celsius GPU die temperature in degrees Celsius (NVML).\n"
            "# TYPE velocity_gpu_temperature_celsius gauge\n"
            "velocity_gpu_temperature_celsius{gpu=\"0\",name=\"x\"} 40\n");
}

TEST(Nvml, CollectorRunsInMetricsRender) {
  Metrics metrics;
  metrics.add_collector([](std::string& out) { out += gpu_metrics_text({h100(0)}); });
  const std::string text = metrics.render({});
  EXPECT_NE(text.find("velocity_gpu_power_watts{gpu=\"0\",name=\"NVIDIA H100 80GB HBM3\"} 312.5\n"), std::string::npos)
      << text;
}

}  // namespace
}  // namespace velocity::server
