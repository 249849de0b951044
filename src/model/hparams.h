// Typed access to `<arch>.<key>` metadata with errors that name the file and the key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "gguf/file.h"

namespace velocity::model {

class Hparams {
 public:
  Hparams(const gguf::File& file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  const std::string& arch() const { return arch_; }
  const gguf::File& file() const { return file_; }
  bool has(const std::string& key) const { return file_.find(arch_ + "." + key) != nullptr; }
  // A positive integer (Error when absent, not an integer, or <= 0).
  int64_t count(const std::string& key) const;
  int64_t count(const std::string& key, int64_t fallback) const;
  float real(const std::string& key, float fallback) const;
  std::optional<std::string> string(const std::string& key) const;
  bool flag(const std::string& key, bool fallback) const;

 private:
  [[noreturn]] void bad(const std::string& key, const std::string& what) const;
  const gguf::File& file_;
  std::string arch_;
};

}  // namespace velocity::model
