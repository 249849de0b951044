#include "runtime/demo_model.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace velocity::runtime {

namespace fs = std::filesystem;

std::string find_demo_model(const std::string& argv0) {
  if (const char* env = std::getenv("VELOCITY_DEMO_MODEL"); env && *env) return env;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (const fs::path& start : {exe, fs::path(argv0)}) {
    if (start.empty()) continue;
    fs::path dir = fs::absolute(start, ec).parent_path();
    for (int up = 0; up < 5 && !dir.empty(); ++up, dir = dir.parent_path())
      candidates.push_back(dir / "models" / "demo" / "demo.gguf");
  }
  candidates.push_back(fs::current_path(ec) / "models" / "demo" / "demo.gguf");
  for (const auto& c : candidates)
    if (fs::exists(c, ec)) return c.string();
  return {};
}

}  // namespace velocity::runtime
