// What this x86 CPU can run, from cpuid and xgetbv (the OS must also save the wide registers),
// and the kernel instruction set the CPU backend uses: the best one available, or the one named
// by VELOCITY_CPU_ISA=scalar|avx2|avx512 (tests and benchmarks force each in turn).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace velocity {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool bmi2 = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avx_vnni = false;    // the VEX-encoded 256-bit VNNI (Alder Lake, Zen 5)
  bool avx512bf16 = false;
};

// Detected once; all false on non-x86 builds.
const CpuFeatures& cpu_features();

// Instruction sets the kernels are compiled for (see src/CMakeLists.txt: *_avx2.cpp needs
// AVX2+FMA+F16C+BMI2, *_avx512.cpp AVX-512 F/BW/VL/DQ plus VNNI). Ordered: a larger one implies
// the smaller ones.
enum class CpuIsa { Scalar, Avx2, Avx512 };

std::string_view cpu_isa_name(CpuIsa isa);  // "scalar", "avx2", "avx512"
// Parses a name as cpu_isa_name prints it (case-insensitive); nullopt otherwise.
std::optional<CpuIsa> parse_cpu_isa(std::string_view name);
// Whether `features` can run kernels compiled for `isa`.
bool cpu_supports(const CpuFeatures& features, CpuIsa isa);
// The largest ISA `features` supports.
CpuIsa detect_cpu_isa(const CpuFeatures& features);
// The ISA to use given the value of VELOCITY_CPU_ISA (nullptr or "" when unset): an unknown name,
// or an ISA the CPU lacks, is a velocity::Error naming what was asked and what the CPU has.
CpuIsa resolve_cpu_isa(const char* env_value, const CpuFeatures& features);

// The ISA the kernels use now: a test override if set, else resolve_cpu_isa(getenv(...)) on this
// CPU (the environment is read once). Throws velocity::Error for a bad VELOCITY_CPU_ISA.
CpuIsa best_cpu_isa();

// Tests and benchmarks: force an ISA (checked against the CPU) or clear the override (nullopt).
// Process-wide; not meant to change while kernels run on other threads.
void set_cpu_isa_for_testing(std::optional<CpuIsa> isa);

// One line, e.g. "AMD EPYC 9B45, avx512 (avx512f/bw/vl/dq, avx512vnni, avx512bf16)".
std::string describe_cpu();

}  // namespace velocity
