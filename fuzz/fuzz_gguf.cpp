// libFuzzer target for the GGUF reader: File::parse on arbitrary bytes must either succeed or
// throw a velocity::Error of the form "<file>: at byte <offset>: ..."; anything else (a crash, a
// sanitizer report, another exception, a malformed message) is a finding. On success every value
// and every tensor byte is touched so out-of-bounds views are caught by ASan.
//
//   ./build/fuzz/fuzz/fuzz_gguf -max_total_time=120 -rss_limit_mb=2048 -timeout=10 corpus fuzz/corpus/gguf
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "gguf/file.h"

namespace {

using velocity::gguf::File;
using velocity::gguf::Value;
using velocity::gguf::ValueType;

size_t touch(const Value& v) {
  size_t n = v.summary().size();
  if (!v.is_array()) return n;
  switch (v.elem_type()) {
    case ValueType::STRING:
      for (const auto& s : v.strings()) n += s.size();
      break;
    case ValueType::ARRAY:
      for (const auto& item : v.arrays()) n += touch(item);
      break;
    default:
      for (uint8_t b : v.packed()) n += b;
  }
  return n + v.array_size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  volatile size_t sink = 0;
  try {
    const File f = File::parse({data, size}, "fuzz.gguf");
    sink = sink + f.version() + f.alignment() + f.architecture().size() + f.header_only();
    for (const auto& [key, value] : f.metadata()) {
      sink = sink + key.size() + touch(value);
      if (f.find(key) == nullptr) abort();
    }
    for (const auto& t : f.tensors()) {
      sink = sink + (size_t)t.n_rows() + (size_t)t.n_elements + t.name.size() + (size_t)t.type;
      for (int64_t d : t.shape) sink = sink + (size_t)d;
      for (uint8_t b : t.bytes()) sink = sink + b;
      if (f.find_tensor(t.name) != &t) abort();
      if (t.data && (t.data < data || t.data + t.n_bytes > data + size)) abort();
    }
  } catch (const velocity::Error& e) {
    if (std::string_view(e.what()).rfind("fuzz.gguf: at byte ", 0) != 0) abort();
  }
  const auto split = velocity::gguf::parse_split_path({reinterpret_cast<const char*>(data), size});
  if (split.index != 0 && velocity::gguf::split_path(split.prefix, split.index, split.count) !=
                              std::string_view(reinterpret_cast<const char*>(data), size))
    abort();
  return 0;
}
