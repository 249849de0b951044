// Test helper: renders templates with Python jinja2 exactly as transformers does (through
// render_reference.py, one batched process) and compares velocity's rendering byte for byte.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace velocity::test {

inline constexpr int64_t kFixedTime = 1700000000;  // strftime_now() on both sides

struct ReferenceCase {
  std::string label;
  std::string source;
  nlohmann::ordered_json context;
};

struct ReferenceResult {
  bool ok = false;
  std::string output;  // when ok
  std::string error;   // Python's exception, when not ok
};

// Empty when /usr/bin/python3 with jinja2 is usable; otherwise why not (for GTEST_SKIP).
std::string reference_unavailable();

// One Python process renders every case; results are in the same order.
std::vector<ReferenceResult> render_reference(const std::vector<ReferenceCase>& cases);

// Renders `c` with velocity and compares with `ref`: equal output, or both raise. Returns the
// empty string on agreement, else a description of the difference.
std::string compare_with_reference(const ReferenceCase& c, const ReferenceResult& ref);

}  // namespace velocity::test
