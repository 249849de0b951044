// Counts the process's heap allocations while a scope asks for it, by replacing the global
// operator new/delete (every form, nothrow included: ASan checks that each new meets its own
// delete). Include it in exactly ONE .cpp of a test binary: the replacements are definitions.
//
//   EXPECT_EQ(count_allocations([&] { model->step(batch); }), 0);
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace velocity::test {
inline std::atomic<bool> g_count_allocations{false};
inline std::atomic<int64_t> g_allocations{0};

inline void* counted_alloc(std::size_t n) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}

// Allocations (any thread: a backend's pool too) while fn runs.
template <class F>
int64_t count_allocations(F&& fn) {
  g_allocations = 0;
  g_count_allocations = true;
  fn();
  g_count_allocations = false;
  return g_allocations.load();
}
}  // namespace velocity::test

void* operator new(std::size_t n) { return velocity::test::counted_alloc(n); }
void* operator new[](std::size_t n) { return velocity::test::counted_alloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return velocity::test::counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
// GCC (-O1 and up, with the sanitizers) inlines these into the code that called new and then
// sees free() meet a pointer from operator new: -Wmismatched-new-delete, a false positive here,
// where operator new itself is malloc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
