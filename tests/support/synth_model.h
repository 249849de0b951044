// A synth model (random weights) for tests, written once per test process under the temp
// directory "velocity-<tag>-<pid>" and reused by later calls.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "tools/synth.h"

namespace velocity::test {

inline std::string synth_model(const std::string& tag, const std::string& arch, const std::string& type) {
  const auto dir = std::filesystem::temp_directory_path() / ("velocity-" + tag + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / (arch + "-" + type + ".gguf")).string();
  if (!std::filesystem::exists(path)) {
    tools::SynthOptions o;
    o.arch = arch;
    o.type = type;
    o.output = path;
    tools::synth(o);
  }
  return path;
}

}  // namespace velocity::test
