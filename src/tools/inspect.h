// `velocity inspect`: what a GGUF model is and what it costs to run — architecture,
// hyperparameters, tokenizer summary, tensor table, totals, parameters, bits per weight, and the
// bytes a decoded token reads (for MoE, only the active experts).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <ostream>
#include <string>

#include "gguf/file.h"

namespace velocity::tools {

struct ModelSummary {
  std::string architecture;
  uint64_t n_params = 0;             // elements of all tensors
  uint64_t n_bytes = 0;              // tensor data bytes
  double bits_per_weight = 0;        // 8 * n_bytes / n_params
  uint64_t bytes_per_token = 0;      // weight bytes read to decode one token (batch 1)
  uint64_t n_expert = 0;             // 0 for dense models
  uint64_t n_expert_used = 0;
};

ModelSummary summarize(const gguf::File& file);

struct InspectOptions {
  bool json = false;
  bool all_metadata = false;  // print every metadata key in full (long arrays summarised otherwise)
};

void inspect(const gguf::File& file, const InspectOptions& options, std::ostream& out);
nlohmann::json inspect_json(const gguf::File& file);

}  // namespace velocity::tools
