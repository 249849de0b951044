// Read bandwidth: each thread first writes its own slice (so the pages exist, and on NUMA
// machines live near it), then all threads read their slices with the widest loads the CPU has,
// xor-folding into a few accumulators whose result is published through an atomic (an
// observable side effect), so the compiler cannot drop the reads. One warm-up pass, then `repetitions` timed passes; the best
// pass counts (the ceiling, not the average).
#include "core/membw.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/cpu_features.h"
#include "core/error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace velocity {
namespace {

#if defined(__x86_64__)
__attribute__((target("avx512f"))) uint64_t read_avx512(const uint8_t* p, size_t bytes) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 256 <= bytes; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  const __m512i a = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  alignas(64) uint64_t lanes[8];  // (not _mm512_reduce_*: GCC 12's header warns under -Wuninitialized)
  _mm512_store_si512(lanes, a);
  uint64_t folded = 0;
  for (uint64_t lane : lanes) folded ^= lane;
  return folded;
}

__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= bytes; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a);
  return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}
#endif

uint64_t read_scalar(const uint8_t* p, size_t bytes) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (size_t i = 0; i + 32 <= bytes; i += 32) {
    uint64_t v[4];
    std::memcpy(v, p + i, 32);
    a0 ^= v[0];
    a1 ^= v[1];
    a2 ^= v[2];
    a3 ^= v[3];
  }
  return a0 ^ a1 ^ a2 ^ a3;
}

using ReadFn = uint64_t (*)(const uint8_t*, size_t);

ReadFn pick_reader() {
#if defined(__x86_64__)
  const CpuFeatures& f = cpu_features();
  if (f.avx512f) return read_avx512;
  if (f.avx2) return read_avx2;
#endif
  return read_scalar;
}

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

}  // namespace

BandwidthResult measure_read_bandwidth(ThreadPool& pool, uint64_t buffer_bytes, int repetitions) {
  constexpr uint64_t kAlign = 2u << 20;  // huge-page aligned, so THP can back it
  const int nth = pool.size();
  // Every thread's slice a multiple of 256 bytes (the widest loop step).
  const uint64_t slice = std::max<uint64_t>(256, buffer_bytes / (uint64_t)nth / 256 * 256);
  const uint64_t total = slice * (uint64_t)nth;
  std::unique_ptr<uint8_t, FreeDeleter> buffer(
      static_cast<uint8_t*>(std::aligned_alloc(kAlign, (total + kAlign - 1) / kAlign * kAlign)));
  if (!buffer) fail("cannot allocate {} bytes for the bandwidth probe", total);
#ifdef MADV_HUGEPAGE
  madvise(buffer.get(), total, MADV_HUGEPAGE);  // a hint; failure is harmless
#endif
  uint8_t* base = buffer.get();
  pool.run([&](int ith, int) { std::memset(base + slice * (uint64_t)ith, ith + 1, slice); });

  const ReadFn reader = pick_reader();
  std::atomic<uint64_t> sink{0};
  BandwidthResult result;
  result.buffer_bytes = total;
  result.repetitions = std::max(1, repetitions);
  for (int rep = -1; rep < result.repetitions; ++rep) {  // rep -1: warm-up
    const auto start = std::chrono::steady_clock::now();
    pool.run([&](int ith, int) { sink.fetch_xor(reader(base + slice * (uint64_t)ith, slice), std::memory_order_relaxed); });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (rep >= 0 && seconds > 0) result.bytes_per_second = std::max(result.bytes_per_second, (double)total / seconds);
  }
  return result;
}

}  // namespace velocity
