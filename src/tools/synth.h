// `velocity synth`: a complete, loadable GGUF of a real architecture with random (seeded)
// weights, streamed tensor by tensor so that any size is written with bounded memory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace velocity::tools {

struct SynthOptions {
  std::string arch;              // llama, qwen2, qwen3, qwen3moe, deepseek2, gpt-oss
  std::string preset = "tiny";   // see synth_presets(arch)
  std::string type = "Q8_0";     // a single weight type (F32, F16, BF16, Q8_0, Q4_K, MXFP4 …) or
                                 // a mix: Q4_K_M, MXFP4_MOE (the GGUF ecosystem's per-tensor rules)
  std::string output;            // output path (split shards derive their names from it)
  uint64_t seed = 1;
  bool header_only = false;      // metadata + tensor infos only (for planning huge models)
  uint64_t split_max_bytes = 0;  // 0: one file
  std::string chat_template;     // tokenizer.chat_template ("": none)
  // Called after each written chunk of tensor data (not for header-only output).
  std::function<void(uint64_t bytes_written, uint64_t bytes_total)> on_progress;
};

struct SynthResult {
  std::vector<std::string> paths;  // written files
  uint64_t n_tensors = 0;
  uint64_t n_params = 0;
  uint64_t n_bytes = 0;            // tensor data bytes (also for header-only output)
};

// Throws velocity::Error for an unknown arch/preset/type or an unwritable output.
SynthResult synth(const SynthOptions& options);

std::vector<std::string> synth_archs();
std::vector<std::string> synth_presets(const std::string& arch);

}  // namespace velocity::tools
