// Tensor element types as GGUF stores them: the ggml type ids, block sizes and block byte sizes.
// Every id the GGUF ecosystem has assigned is known here, so that `inspect` and the reader can
// size any tensor; `has_reference` says which ones velocity can also quantise and compute with.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace velocity {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,  // these three are known by size only (ids and block sizes as @huggingface/gguf 0.4.6)
  Q1_0 = 41,
  Q2_0 = 42,
};

struct DTypeInfo {
  DType type;
  std::string_view name;    // as ggml prints it: "F32", "Q4_K", "MXFP4"
  int64_t block_size;       // elements per block (1 for plain types)
  int64_t block_bytes;      // bytes per block
  bool has_reference;       // velocity implements quantise/dequantise/dot for it
};

// Info for a raw GGUF type id; nullopt for ids no GGUF implementation assigns.
std::optional<DTypeInfo> dtype_info(uint32_t id);
// Info for a known type (never fails).
const DTypeInfo& dtype_info(DType type);
std::string_view dtype_name(DType type);
// Parses a name as printed by dtype_name (case-insensitive); nullopt when unknown.
std::optional<DType> dtype_from_name(std::string_view name);

inline int64_t dtype_block_size(DType t) { return dtype_info(t).block_size; }
inline int64_t dtype_block_bytes(DType t) { return dtype_info(t).block_bytes; }

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers that
// take outside input; VELOCITY_CHECK here).
int64_t dtype_row_bytes(DType type, int64_t n);

}  // namespace velocity
