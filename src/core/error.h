// velocity::Error — the one exception type for anything a user can cause (bad file, bad flag,
// bad request). Messages carry their context (file, byte offset, tensor, field) so the user can
// act on them. Invariant checks use VELOCITY_CHECK, which stays on in release builds.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace velocity {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

namespace detail {
inline std::string check_message() { return {}; }
template <class... Args>
std::string check_message(fmt::format_string<Args...> format, Args&&... args) {
  return ": " + fmt::format(format, std::forward<Args>(args)...);
}
}  // namespace detail

}  // namespace velocity

// Checks an invariant in every build type (never compiled out by NDEBUG).
#define VELOCITY_CHECK(cond, ...)                                                       \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      ::velocity::fail("internal check failed at {}:{}: {}{}", __FILE__, __LINE__,      \
                       #cond, ::velocity::detail::check_message(__VA_ARGS__));           \
    }                                                                                   \
  } while (0)
