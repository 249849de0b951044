// Read-only memory map of a whole file (RAII). Empty files map to an empty span.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace velocity {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path` read-only; throws velocity::Error naming the file on failure. With `read` the
  // file is read into page-aligned memory instead (llama.cpp's --no-mmap: no page faults later,
  // nothing evicted under memory pressure, for slow or network file systems).
  explicit MappedFile(const std::string& path, bool read = false);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owned_ = false;  // data_ is our allocation (read), not a mapping
  void release();
};

}  // namespace velocity
