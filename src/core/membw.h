// Measured memory read bandwidth of this machine: the ceiling every CPU decode number is
// compared with (velocity bench prints tok/s and the fraction of bytes_per_token / bandwidth).
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace velocity {

struct BandwidthResult {
  double bytes_per_second = 0;  // best of the repetitions
  uint64_t buffer_bytes = 0;    // working set read per repetition (far larger than the caches)
  int repetitions = 0;
};

// Reads a buffer of `buffer_bytes` (default 1 GiB) with all of the pool's threads using wide
// loads, `repetitions` times after one warm-up pass; reports the best rate.
BandwidthResult measure_read_bandwidth(ThreadPool& pool, uint64_t buffer_bytes = 1ull << 30, int repetitions = 5);

}  // namespace velocity
