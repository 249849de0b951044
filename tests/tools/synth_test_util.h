// Shared helpers of the synth tests: a per-test temporary directory and small accessors.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gguf/file.h"
#include "tools/synth.h"

namespace velocity::tools::testing {

class SynthDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "-" + info->name();
    for (char& c : name)
      if (c == '/') c = '_';
    dir_ = std::filesystem::temp_directory_path() / ("velocity-synth-" + std::to_string(::getpid()) + "-" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string path(const std::string& file) const { return (dir_ / file).string(); }

  SynthResult run(const std::string& arch, const std::string& preset, const std::string& type,
                  const std::string& file, uint64_t seed = 1, bool header_only = false, uint64_t split = 0) {
    SynthOptions o;
    o.arch = arch;
    o.preset = preset;
    o.type = type;
    o.output = path(file);
    o.seed = seed;
    o.header_only = header_only;
    o.split_max_bytes = split;
    return synth(o);
  }

  std::filesystem::path dir_;
};

inline std::vector<int64_t> shape_of(const gguf::File& f, const std::string& name) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  if (!t) {
    ADD_FAILURE() << "missing tensor " << name;
    return {};
  }
  return t->shape;
}

inline DType type_of(const gguf::File& f, const std::string& name) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  if (!t) {
    ADD_FAILURE() << "missing tensor " << name;
    return DType::F32;
  }
  return t->type;
}

inline uint64_t u32_of(const gguf::File& f, const std::string& key) { return f.at(key).get<uint32_t>(); }

inline uint64_t n_params(const gguf::File& f) {
  uint64_t n = 0;
  for (const auto& t : f.tensors()) n += static_cast<uint64_t>(t.n_elements);
  return n;
}

inline uint64_t n_data_bytes(const gguf::File& f) {
  uint64_t n = 0;
  for (const auto& t : f.tensors()) n += t.n_bytes;
  return n;
}

}  // namespace velocity::tools::testing
