// ThreadPool (core/thread_pool.h) and the bandwidth probe that runs on it (core/membw.h).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/membw.h"
#include "core/thread_pool.h"

namespace velocity {
namespace {

TEST(ThreadPool, EveryIndexRunsOnce) {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    ASSERT_EQ(pool.size(), n);
    std::vector<std::atomic<int>> hits(n);
    std::atomic<int> seen_nth{0};
    pool.run([&](int ith, int nth) {
      hits[ith].fetch_add(1);
      if (nth == n) seen_nth.fetch_add(1);
    });
    for (int i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "ith " << i << " of " << n;
    EXPECT_EQ(seen_nth.load(), n);
  }
}

TEST(ThreadPool, ParallelForCoversTheRangeOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 2, 3, 7, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << i << " of " << n;
  }
}

TEST(ThreadPool, FirstExceptionIsRethrownAfterAllFinish) {
  ThreadPool pool(3);
  std::atomic<int> finished{0};
  try {
    pool.run([&](int ith, int) {
      if (ith == 1) throw std::runtime_error("worker failed");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      finished.fetch_add(1);
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "worker failed");
  }
  EXPECT_EQ(finished.load(), 2);  // the others ran to the end before run() returned
  // the caller's own exception too, and the pool still works afterwards
  EXPECT_THROW(pool.run([](int ith, int) {
    if (ith == 0) throw Error("caller failed");
  }),
               Error);
  std::atomic<int> count{0};
  pool.run([&](int, int) { count.fetch_add(1); });
  EXPECT_EQ(count.load(), 3);
}

TEST(ThreadPool, NestedRunIsAnError) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.run([&](int ith, int) {
    if (ith == 0) pool.run([](int, int) {});
  }),
               Error);
}

TEST(ThreadPool, ManyBackToBackRegions) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  constexpr int kRegions = 20000;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRegions; ++i) pool.run([&](int ith, int) { total.fetch_add(ith + 1, std::memory_order_relaxed); });
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / kRegions;
  EXPECT_EQ(total.load(), (int64_t)kRegions * 3);
  std::printf("ThreadPool(2): %.2f us per empty region\n", us);
}

TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(2);
  std::atomic<int> count{0};
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));  // longer than the spin: workers are asleep
    pool.run([&](int, int) { count.fetch_add(1); });
  }
  EXPECT_EQ(count.load(), 10);
}

TEST(MemoryBandwidth, MeasuresSomething) {
  ThreadPool pool(2);
  const BandwidthResult r = measure_read_bandwidth(pool, 64ull << 20, 2);
  EXPECT_GT(r.bytes_per_second, 1e8);
  EXPECT_GE(r.buffer_bytes, 60ull << 20);
  EXPECT_EQ(r.repetitions, 2);
}

}  // namespace
}  // namespace velocity
