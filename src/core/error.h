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

// A broken invariant (VELOCITY_CHECK): a bug in velocity, not something the user did. Not a
// velocity::Error, so code that turns user errors into messages or 4xx answers lets it pass:
// the CLI reports it as an internal error, the server answers 500 and logs it.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Work abandoned because its client went away or shutdown began (a cancel flag was set). Not a
// velocity::Error: the handlers that turn errors into HTTP 400 must let it through.
class Cancelled : public std::runtime_error {
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

// Checks an invariant in every build type (never compiled out by NDEBUG); throws InternalError.
#define VELOCITY_CHECK(cond, ...)                                                       \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      throw ::velocity::InternalError(                                                  \
          ::fmt::format("internal check failed at {}:{}: {}{}", __FILE__, __LINE__,     \
                        #cond, ::velocity::detail::check_message(__VA_ARGS__)));        \
    }                                                                                   \
  } while (0)
