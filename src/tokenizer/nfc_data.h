// Unicode tables for NFC (generated into nfc_data.cpp by scripts/gen_nfc_tables.py). Sorted by
// code point (compositions by the pair), for binary search.
#pragma once

#include <cstddef>
#include <cstdint>

namespace velocity::tokenizer::nfc_data {

struct CccRange { uint32_t first, last, ccc; };     // canonical combining class != 0
struct Decomposition { uint32_t cp, first, second; }; // canonical, one level; second 0 if single
struct Composition { uint32_t first, second, composite; };  // primary composites
struct Range { uint32_t first, last; };

extern const CccRange kCcc[];
extern const size_t kCccSize;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionsSize;
extern const Composition kCompositions[];
extern const size_t kCompositionsSize;
// Code points that may change, or change their neighbours, under NFC (NFC_Quick_Check != Yes,
// ccc != 0, or the second half of a composition). Text without them is already NFC.
extern const Range kMaybeChanged[];
extern const size_t kMaybeChangedSize;

}  // namespace velocity::tokenizer::nfc_data
