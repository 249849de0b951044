// Waking: the caller bumps a 32-bit generation counter; workers spin on it for a while (a decode
// step's regions come microseconds apart, and a spinning worker starts within ~100 ns), then
// sleep on it with futex(2) so that an idle server does not burn its cores. The caller issues
// the futex wake only when a worker has announced (sleepers > 0) that it may be asleep; the
// seq_cst order of "sleepers++ then re-read generation" (worker) against "generation++ then read
// sleepers" (caller) means one of the two always sees the other, so no wake is lost.
//
// Sharing: the caller runs index 0; indices 1..n-1 are claimed from `claim` (the region's
// generation in the high 32 bits, the next index in the low 32) by whichever thread gets there
// first, the caller included once its own share is done. A worker the OS has not scheduled yet
// therefore holds nothing up: on an oversubscribed machine the caller runs its indices, and the
// late worker finds none left (its claim names a generation that is over, so it cannot run a
// stale region). The claim's release/acquire publishes fn and ctx; a region cannot end while a
// claimed index is running, so fn and ctx stay valid for whoever claimed one.
//
// Finishing: every finished index bumps `done`; the caller spins on it (then yields: a worker
// that claimed an index and was descheduled may need this core).
#include "core/thread_pool.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/error.h"

namespace velocity {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

// How long an idle worker spins before it sleeps.
constexpr auto kSpinTime = std::chrono::microseconds(200);

}  // namespace

struct ThreadPool::State {
  int n_threads = 1;
  std::vector<std::thread> threads;

  alignas(64) std::atomic<uint32_t> generation{0};
  alignas(64) std::atomic<int> sleepers{0};
  alignas(64) std::atomic<uint64_t> claim{0};
  alignas(64) std::atomic<int> done{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> in_region{false};

  // The current region; written by the caller before the generation bump (release), read by
  // the workers after they see it (acquire).
  void (*fn)(void*, int, int) = nullptr;
  void* ctx = nullptr;

  std::mutex error_mutex;
  std::exception_ptr error;

  void record(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!error) error = std::move(e);
  }

  // The next unclaimed index of region `gen`, or -1 when that region has none left or is over.
  int claim_index(uint32_t gen) {
    uint64_t c = claim.load(std::memory_order_acquire);
    for (;;) {
      if (static_cast<uint32_t>(c >> 32) != gen || static_cast<int>(c & 0xffffffffu) >= n_threads) return -1;
      if (claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return static_cast<int>(c & 0xffffffffu);
    }
  }

  void run_claimed(uint32_t gen) {
    for (int k; (k = claim_index(gen)) >= 0;) {
      try {
        fn(ctx, k, n_threads);
      } catch (...) {
        record(std::current_exception());
      }
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void worker() {
    uint32_t seen = 0;
    for (;;) {
      uint32_t g = generation.load(std::memory_order_acquire);
      if (g == seen) {
        auto start = std::chrono::steady_clock::now();
        for (int i = 1;; ++i) {
          cpu_relax();
          g = generation.load(std::memory_order_acquire);
          if (g != seen) break;
          if (i % 256 == 0 && std::chrono::steady_clock::now() - start > kSpinTime) {
            sleepers.fetch_add(1, std::memory_order_seq_cst);
            if (generation.load(std::memory_order_seq_cst) == seen) futex_wait(&generation, seen);
            sleepers.fetch_sub(1, std::memory_order_seq_cst);
            start = std::chrono::steady_clock::now();
          }
        }
      }
      seen = g;
      if (stop.load(std::memory_order_acquire)) return;
      run_claimed(g);
    }
  }

  void wake() {
    generation.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) futex_wake_all(&generation);
  }
};

ThreadPool::ThreadPool(int n_threads) : state_(std::make_unique<State>()) {
  if (n_threads <= 0) n_threads = (int)std::max(1u, std::thread::hardware_concurrency());
  state_->n_threads = n_threads;
  state_->threads.reserve((size_t)n_threads - 1);
  for (int i = 1; i < n_threads; ++i) state_->threads.emplace_back([s = state_.get()] { s->worker(); });
}

ThreadPool::~ThreadPool() {
  state_->stop.store(true, std::memory_order_release);
  state_->wake();
  for (std::thread& t : state_->threads) t.join();
}

int ThreadPool::size() const { return state_->n_threads; }

void ThreadPool::run_impl(void (*fn)(void*, int, int), void* ctx) {
  State& s = *state_;
  VELOCITY_CHECK(!s.in_region.exchange(true, std::memory_order_acquire), "{}",
                 "ThreadPool::run called from inside a region of the same pool");
  s.fn = fn;
  s.ctx = ctx;
  s.error = nullptr;
  s.done.store(0, std::memory_order_relaxed);
  const uint32_t gen = s.generation.load(std::memory_order_relaxed) + 1;  // the one wake() publishes
  s.claim.store(static_cast<uint64_t>(gen) << 32 | 1u, std::memory_order_release);
  if (s.n_threads > 1) s.wake();
  try {
    fn(ctx, 0, s.n_threads);
  } catch (...) {
    s.record(std::current_exception());
  }
  s.run_claimed(gen);  // whatever the workers have not started
  // Spin a few microseconds (claimed indices usually finish together with the caller), then
  // yield: on an oversubscribed machine the worker we wait for may need this core.
  for (int i = 1; s.done.load(std::memory_order_acquire) != s.n_threads - 1; ++i) {
    if (i < 4096) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  std::exception_ptr error = std::move(s.error);
  s.error = nullptr;
  s.in_region.store(false, std::memory_order_release);
  if (error) std::rethrow_exception(error);
}

}  // namespace velocity
