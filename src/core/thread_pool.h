// A fixed pool of worker threads for the CPU backend: one parallel region at a time, low latency
// (a decode step runs a few hundred regions, so waking the workers must cost microseconds).
#pragma once

#include <cstdint>
#include <memory>

namespace velocity {

class ThreadPool {
 public:
  // n_threads <= 0: one per online core. The calling thread is worker 0, so n - 1 threads start.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;

  // Runs fn(ith, nth) once for every ith in [0, nth) (nth = size()), concurrently, the caller
  // running ith = 0; returns when all have returned. The other indices go to whichever thread
  // claims them first: a worker the OS has not scheduled leaves its index to the caller, so one
  // thread may run several indices in sequence. fn must therefore not wait for another index of
  // the same region (no barriers inside a region). The first exception any of them throws is
  // rethrown here (after all have finished). Not reentrant: fn must not call run() on the same
  // pool.
  template <class F>
  void run(F&& fn) {
    run_impl(
        [](void* ctx, int ith, int nth) { (*static_cast<std::remove_reference_t<F>*>(ctx))(ith, nth); },
        &fn);
  }

  // Splits [0, n) into size() contiguous chunks and calls fn(begin, end) for each non-empty one.
  template <class F>
  void parallel_for(int64_t n, F&& fn) {
    run([&](int ith, int nth) {
      const int64_t begin = n * ith / nth, end = n * (ith + 1) / nth;
      if (begin < end) fn(begin, end);
    });
  }

 private:
  void run_impl(void (*fn)(void*, int, int), void* ctx);
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace velocity
