// core/cpu_features.h: the VELOCITY_CPU_ISA override and the test hook, against made-up CPUs.
#include <gtest/gtest.h>

#include "core/cpu_features.h"
#include "core/error.h"

namespace velocity {
namespace {

CpuFeatures avx2_cpu() {
  CpuFeatures f;
  f.avx2 = f.fma = f.f16c = f.bmi2 = true;
  return f;
}
CpuFeatures avx512_cpu() {
  CpuFeatures f = avx2_cpu();
  f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512vnni = true;
  return f;
}

TEST(CpuFeatures, ParsesIsaNames) {
  EXPECT_EQ(parse_cpu_isa("scalar"), CpuIsa::Scalar);
  EXPECT_EQ(parse_cpu_isa("AVX2"), CpuIsa::Avx2);
  EXPECT_EQ(parse_cpu_isa("avx512"), CpuIsa::Avx512);
  EXPECT_EQ(parse_cpu_isa("sse"), std::nullopt);
  EXPECT_EQ(parse_cpu_isa(""), std::nullopt);
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) EXPECT_EQ(parse_cpu_isa(cpu_isa_name(isa)), isa);
}

TEST(CpuFeatures, EnvironmentOverride) {
  EXPECT_EQ(resolve_cpu_isa(nullptr, avx512_cpu()), CpuIsa::Avx512);
  EXPECT_EQ(resolve_cpu_isa("", avx2_cpu()), CpuIsa::Avx2);
  EXPECT_EQ(resolve_cpu_isa(nullptr, CpuFeatures{}), CpuIsa::Scalar);
  EXPECT_EQ(resolve_cpu_isa("scalar", avx512_cpu()), CpuIsa::Scalar);
  EXPECT_EQ(resolve_cpu_isa("avx2", avx512_cpu()), CpuIsa::Avx2);
  EXPECT_THROW(resolve_cpu_isa("avx512", avx2_cpu()), Error);  // the CPU lacks it
  EXPECT_THROW(resolve_cpu_isa("avx2", CpuFeatures{}), Error);
  EXPECT_THROW(resolve_cpu_isa("neon", avx512_cpu()), Error);  // unknown name
}

TEST(CpuFeatures, Avx512NeedsVnniAndTheAvx2Set) {
  CpuFeatures f = avx512_cpu();
  f.avx512vnni = false;
  EXPECT_EQ(detect_cpu_isa(f), CpuIsa::Avx2);
  f = avx512_cpu();
  f.f16c = false;
  EXPECT_EQ(detect_cpu_isa(f), CpuIsa::Scalar);
}

TEST(CpuFeatures, TestHookForcesAndClears) {
  const CpuIsa best = detect_cpu_isa(cpu_features());
  set_cpu_isa_for_testing(CpuIsa::Scalar);
  EXPECT_EQ(best_cpu_isa(), CpuIsa::Scalar);
  set_cpu_isa_for_testing(std::nullopt);
  if (best != CpuIsa::Avx512) {
    EXPECT_THROW(set_cpu_isa_for_testing(CpuIsa::Avx512), Error);
  }
  EXPECT_FALSE(describe_cpu().empty());
  std::printf("%s\n", describe_cpu().c_str());
}

}  // namespace
}  // namespace velocity
