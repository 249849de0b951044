// ThreadPool (core/thread_pool.h) and the bandwidth probe that runs on it (core/membw.h).
#include <gtest/gtest.h>

#include <array>
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

TEST(ThreadPool, NestedRunIsAnError) {  // a bug in the caller: a failed VELOCITY_CHECK
  ThreadPool pool(2);
  EXPECT_THROW(pool.run([&](int ith, int) {
    if (ith == 0) pool.run([](int, int) {});
  }),
               InternalError);
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

// Many pools with more threads than cores, driven at once, with random stalls inside regions:
// every index of every region still runs exactly once, and indices a late worker leaves behind
// are run by the caller (some region sees one thread run two indices).
TEST(ThreadPool, OversubscribedPoolsRunEveryIndexOnce) {
  constexpr int kPools = 6, kThreads = 4, kRegions = 300;
  std::atomic<int64_t> wrong{0}, shared_regions{0};
  std::vector<std::thread> callers;
  for (int p = 0; p < kPools; ++p) {
    callers.emplace_back([&, p] {
      ThreadPool pool(kThreads);
      for (int r = 0; r < kRegions; ++r) {
        std::array<std::atomic<int>, kThreads> hits{};
        std::array<std::atomic<std::thread::id>, kThreads> who{};
        pool.run([&](int ith, int nth) {
          if (nth != kThreads) wrong.fetch_add(1);
          hits[ith].fetch_add(1);
          who[ith] = std::this_thread::get_id();
          if ((ith * 7 + r + p) % 13 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        });
        for (int i = 0; i < kThreads; ++i) wrong += hits[i].load() != 1;
        bool repeated = false;
        for (int i = 0; i < kThreads; ++i)
          for (int j = i + 1; j < kThreads; ++j) repeated |= who[i].load() == who[j].load();
        shared_regions += repeated;
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(wrong.load(), 0);
  std::printf("regions in which one thread ran several indices: %lld of %d\n", (long long)shared_regions.load(),
              kPools * kRegions);
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
