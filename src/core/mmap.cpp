#include "core/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace velocity {

MappedFile::MappedFile(const std::string& path, bool read) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  size_ = (size_t)st.st_size;
  if (size_ > 0 && read) {
    void* p = nullptr;
    if (::posix_memalign(&p, 4096, size_) != 0) {
      ::close(fd);
      fail("{}: cannot allocate {} bytes to read it into (--no-mmap)", path, size_);
    }
    size_t done = 0;
    while (done < size_) {
      const ssize_t n = ::pread(fd, static_cast<uint8_t*>(p) + done, size_ - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        std::free(p);
        ::close(fd);
        fail("{}: read error at byte {}: {}", path, done, n < 0 ? std::strerror(err) : "the file got shorter");
      }
      done += static_cast<size_t>(n);
    }
    data_ = static_cast<const uint8_t*>(p);
    owned_ = true;
  } else if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot mmap {} bytes: {}", path, size_, std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

void MappedFile::release() {
  if (!data_) return;
  if (owned_) std::free(const_cast<uint8_t*>(data_));
  else ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      owned_(std::exchange(other.owned_, false)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    owned_ = std::exchange(other.owned_, false);
  }
  return *this;
}

}  // namespace velocity
