// Seeded random tensor data for `velocity synth`, generated directly in the GGUF block formats.
//
// Determinism: a tensor's bytes depend only on (seed, tensor name, type). Data is produced in
// units — one block for quantised types, 64 elements for F32/F16/BF16 — and each unit draws from
// its own splitmix64 stream keyed by (tensor key, unit index), so any chunking (and any order)
// writes the same bytes.
//
// Magnitudes: weight matrices have an RMS of about 0.02 (a typical init scale), norm weights lie
// in [0.95, 1.05], biases in ±0.02, attention sinks in ±0.5. Quantised blocks get random codes
// and finite, normal fp16 scales chosen for that RMS, with the K-quant minimums set so that the
// weights are centred on zero. No NaN or Inf is ever produced.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/dtype.h"

namespace velocity::tools::synthetic {

// splitmix64's finaliser: a bijective 64-bit mix.
inline uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// splitmix64 stream.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ull;
    return mix64(state_);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  float uniform_f() { return static_cast<float>(next() >> 40) * 0x1.0p-24f; }  // [0, 1)
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }                     // [0, n)

 private:
  uint64_t state_;
};

// Key of a tensor's data: seed and name mixed (FNV-1a of the name, then mix64).
uint64_t tensor_key(uint64_t seed, std::string_view name);

// What a tensor holds, which sets its value distribution.
enum class ValueKind {
  Weight,  // matrices, embeddings, experts, router: RMS ~0.02
  Norm,    // RMSNorm weights: ~1
  Bias,    // small, ~±0.02
  Sinks,   // attention sink logits: ±0.5
};

// Elements per generation unit: the block size of a quantised type, 64 for plain types.
int64_t unit_elements(DType type);

// Writes units [first_unit, first_unit + n_units) of a tensor of n_elements elements of `type`
// to `out` and returns the bytes written (the last unit of a plain-type tensor may be partial).
// Quantised types support only ValueKind::Weight. `type` must have a reference (has_reference).
uint64_t fill_units(DType type, ValueKind kind, uint64_t key, int64_t n_elements, int64_t first_unit,
                    int64_t n_units, uint8_t* out);

}  // namespace velocity::tools::synthetic
