// libFuzzer target for the safetensors reader: SafetensorsFile::parse on arbitrary bytes must
// either succeed or throw a velocity::Error naming the file ("fuzz.safetensors: ..."); anything
// else (a crash, a sanitizer report, another exception, a hang) is a finding. On success every
// tensor's bytes are touched so out-of-bounds views are caught by ASan.
//
//   ./build/fuzz/fuzz/fuzz_safetensors -max_total_time=90 -rss_limit_mb=2048 -timeout=10 \
//       corpus fuzz/corpus/safetensors
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "tools/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using velocity::tools::SafeTensor;
  using velocity::tools::SafetensorsFile;
  volatile size_t sink = 0;
  try {
    const SafetensorsFile f = SafetensorsFile::parse({data, size}, "fuzz.safetensors");
    uint64_t covered = 0;
    for (const SafeTensor& t : f.tensors()) {
      sink = sink + t.name.size() + (size_t)t.n_elements + (size_t)t.dtype;
      for (int64_t d : t.shape) sink = sink + (size_t)d;
      for (uint8_t b : t.data) sink = sink + b;
      if (f.find(t.name) != &t) abort();
      if (t.data.size() != t.end - t.begin) abort();
      if ((uint64_t)t.n_elements * (uint64_t)velocity::tools::safe_dtype_size(t.dtype) != t.data.size()) abort();
      if (t.begin != covered) abort();  // back to back in offset order
      covered = t.end;
      if (!t.data.empty() && (t.data.data() < data || t.data.data() + t.data.size() > data + size)) abort();
    }
    if (8 + f.header_size() + covered != size) abort();  // the buffer is covered exactly
    for (const auto& [key, value] : f.metadata()) sink = sink + key.size() + value.size();
  } catch (const velocity::Error& e) {
    if (std::string_view(e.what()).rfind("fuzz.safetensors: ", 0) != 0) abort();
  }
  return 0;
}
