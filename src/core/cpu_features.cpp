// cpuid leaves used: 1 (ecx: fma bit 12, osxsave 27, avx 28, f16c 29), 7.0 (ebx: avx2 5, bmi2 8,
// avx512f 16, avx512dq 17, avx512bw 30, avx512vl 31; ecx: avx512vnni 11), 7.1 (eax: avx_vnni 4,
// avx512bf16 5). xgetbv(0) must report the OS saving XMM/YMM (bits 1, 2) and, for AVX-512, the
// opmask and upper ZMM state (bits 5, 6, 7).
#include "core/cpu_features.h"

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define VELOCITY_X86 1
#endif

namespace velocity {
namespace {

#ifdef VELOCITY_X86
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t)edx << 32 | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;
  const bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;
  if (!os_ymm) return f;
  f.fma = (ecx >> 12) & 1;
  f.f16c = (ecx >> 29) & 1;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.avx2 = (ebx >> 5) & 1;
  f.bmi2 = (ebx >> 8) & 1;
  if (os_zmm) {
    f.avx512f = (ebx >> 16) & 1;
    f.avx512dq = (ebx >> 17) & 1;
    f.avx512bw = (ebx >> 30) & 1;
    f.avx512vl = (ebx >> 31) & 1;
    f.avx512vnni = (ecx >> 11) & 1;
  }
  const unsigned max_sub = eax;
  if (max_sub >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx_vnni = (eax >> 4) & 1;
    f.avx512bf16 = os_zmm && ((eax >> 5) & 1);
  }
  return f;
}

std::string brand_string() {
  unsigned regs[12];
  if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000004u) return {};
  for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
  char text[49];
  std::memcpy(text, regs, 48);
  text[48] = 0;
  return text;
}
#else
CpuFeatures detect() { return {}; }
std::string brand_string() { return {}; }
#endif

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  while (!s.empty() && !not_space((unsigned char)s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && !not_space((unsigned char)s[i])) ++i;
  return s.substr(i);
}

std::string model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return trim(line.substr(colon + 1));
    }
  }
  return trim(brand_string());
}

// -1: no override; else the CpuIsa value.
std::atomic<int> g_test_override{-1};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string_view cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512: return "avx512";
  }
  return "?";
}

std::optional<CpuIsa> parse_cpu_isa(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = (char)std::tolower((unsigned char)c);
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512})
    if (lower == cpu_isa_name(isa)) return isa;
  return std::nullopt;
}

bool cpu_supports(const CpuFeatures& f, CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return true;
    case CpuIsa::Avx2: return f.avx2 && f.fma && f.f16c && f.bmi2;
    case CpuIsa::Avx512:
      return cpu_supports(f, CpuIsa::Avx2) && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
  }
  return false;
}

CpuIsa detect_cpu_isa(const CpuFeatures& f) {
  if (cpu_supports(f, CpuIsa::Avx512)) return CpuIsa::Avx512;
  if (cpu_supports(f, CpuIsa::Avx2)) return CpuIsa::Avx2;
  return CpuIsa::Scalar;
}

CpuIsa resolve_cpu_isa(const char* env_value, const CpuFeatures& features) {
  const CpuIsa best = detect_cpu_isa(features);
  if (env_value == nullptr || *env_value == 0) return best;
  const std::optional<CpuIsa> asked = parse_cpu_isa(env_value);
  if (!asked) fail("VELOCITY_CPU_ISA='{}' is not one of scalar, avx2, avx512", env_value);
  if (!cpu_supports(features, *asked))
    fail("VELOCITY_CPU_ISA={} asks for an instruction set this CPU lacks (it supports up to {})", env_value,
         cpu_isa_name(best));
  return *asked;
}

CpuIsa best_cpu_isa() {
  const int forced = g_test_override.load(std::memory_order_relaxed);
  if (forced >= 0) return (CpuIsa)forced;
  // Resolved once; a bad value throws every time it is asked for, not only the first.
  static const char* env = std::getenv("VELOCITY_CPU_ISA");
  return resolve_cpu_isa(env, cpu_features());
}

void set_cpu_isa_for_testing(std::optional<CpuIsa> isa) {
  if (isa && !cpu_supports(cpu_features(), *isa))
    fail("cannot force {}: this CPU supports up to {}", cpu_isa_name(*isa), cpu_isa_name(detect_cpu_isa(cpu_features())));
  g_test_override.store(isa ? (int)*isa : -1, std::memory_order_relaxed);
}

std::string describe_cpu() {
  const CpuFeatures& f = cpu_features();
  std::string name = model_name();
  if (name.empty()) name = "unknown CPU";
  std::string extras;
  const auto add = [&](bool have, const char* what) {
    if (!have) return;
    if (!extras.empty()) extras += ", ";
    extras += what;
  };
  add(f.avx2 && f.fma, "avx2+fma");
  add(f.f16c, "f16c");
  add(f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq, "avx512f/bw/vl/dq");
  add(f.avx512vnni, "avx512vnni");
  add(f.avx_vnni, "avx_vnni");
  add(f.avx512bf16, "avx512bf16");
  return fmt::format("{}, kernels {} ({})", name, cpu_isa_name(detect_cpu_isa(f)), extras.empty() ? "no SIMD" : extras);
}

}  // namespace velocity
