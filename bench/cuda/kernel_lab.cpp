// velocity_kernel_lab: runs the lab sections registered by the *_lab.cpp files of bench/cuda
// (lab_util.h), every one or those whose name contains one of the arguments, then prints a
// summary table.
//   velocity_kernel_lab                 every section
//   velocity_kernel_lab matmul_decode   sections whose name contains "matmul_decode"
//   velocity_kernel_lab --list          the sections and what they measure
#include <cstdio>
#include <cstring>
#include <string>

#include "lab_util.h"

int main(int argc, char** argv) {
  using velocity::lab::sections;
  if (argc > 1 && std::strcmp(argv[1], "--list") == 0) {
    for (const auto& s : sections()) std::printf("%-20s %s\n", s.name.c_str(), s.what.c_str());
    return 0;
  }
  int n_devices = 0;
  if (cudaGetDeviceCount(&n_devices) != cudaSuccess || n_devices == 0) {
    std::printf("kernel lab: no CUDA GPU\n");
    return 77;
  }
  cudaDeviceProp prop{};
  velocity::lab::check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s (sm_%d%d, %d SMs, %.0f MiB)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
              static_cast<double>(prop.totalGlobalMem) / (1 << 20));
  velocity::lab::copy_ceiling_gbps();
  int ran = 0;
  for (const auto& s : sections()) {
    bool wanted = argc == 1;
    for (int i = 1; i < argc; ++i) wanted = wanted || s.name.find(argv[i]) != std::string::npos;
    if (!wanted) continue;
    std::printf("\n== %s: %s\n", s.name.c_str(), s.what.c_str());
    s.run();
    ++ran;
  }
  if (ran == 0) std::printf("no section matches; --list shows them\n");
  velocity::lab::print_summary();
  return 0;
}
