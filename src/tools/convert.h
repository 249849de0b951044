// velocity convert: a Hugging Face model directory (config.json, *.safetensors shards with or
// without model.safetensors.index.json, tokenizer.json [+ tokenizer_config.json]) -> GGUF, with
// the tensor names, metadata keys and Q/K row layout that llama.cpp's convert_hf_to_gguf.py
// writes, so the result loads in any GGUF implementation. Streams tensor by tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace velocity::tools {

struct ConvertOptions {
  std::string input_dir;            // HF model directory
  std::string output;               // .gguf path
  DType type = DType::F16;          // F32, F16, BF16 or Q8_0 for 2-D weights (1-D stay F32)
  uint64_t split_max_bytes = 0;     // 0: one file
  bool quiet = false;               // no progress on stderr
};

struct ConvertResult {
  std::string arch;                 // GGUF architecture written
  int64_t n_tensors = 0;
  uint64_t n_bytes = 0;             // tensor data bytes written
  std::vector<std::string> paths;   // written files (one, or the split shards in order)
};

// Throws velocity::Error naming the file and field for bad or unsupported input.
ConvertResult convert_hf(const ConvertOptions& options);

}  // namespace velocity::tools
