// GGUF reader on corrupt and hostile files: each must fail with a velocity::Error
// "<file>: at byte <offset>: <what is wrong>", never crash, hang or allocate without bound.
//
// Byte offsets below follow the layout: 24-byte header (magic, version, n_tensors, n_kv), then a
// key "k" takes 8 + 1 bytes so its value type id is at 33 and an array's element type at 37; a
// tensor info for "t" (with no metadata) puts n_dims at 33, dims from 37, then type and offset.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <limits>

#include "gguf/file.h"
#include "reader_image.h"

namespace velocity::gguf {
namespace {

using test::Buf;
using test::Image;
using test::TensorSpec;

std::string error_of(const Buf& bytes) {
  try {
    (void)File::parse(bytes, "bad.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "(parsed without error)";
}

// The error names the file, the byte offset `at`, and contains `what`.
void expect_error(const Buf& bytes, uint64_t at, std::string_view what) {
  const std::string msg = error_of(bytes);
  EXPECT_EQ(msg.rfind(fmt::format("bad.gguf: at byte {}: ", at), 0), 0u) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << "wanted '" << what << "' in: " << msg;
}

Buf header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  Buf b;
  test::put<uint32_t>(b, kMagic);
  test::put<uint32_t>(b, version);
  test::put<uint64_t>(b, n_tensors);
  test::put<uint64_t>(b, n_kv);
  return b;
}

// One key "k" with a value of `type` and the given body, padded with `slack` spare bytes so that
// bounds checks are not satisfied by the end of file alone.
Buf one_kv(ValueType type, const Buf& value_body, size_t slack = 64) {
  Image im;
  im.kv("k", type, value_body);
  Buf b = im.build();
  b.insert(b.end(), slack, uint8_t{0});
  return b;
}

Buf one_tensor(TensorSpec spec) {
  Image im;
  im.tensor(std::move(spec));
  im.data_size = 64;
  return im.build();
}

// --- header ----------------------------------------------------------------------------------

TEST(ReaderHostile, EmptyAndTinyFiles) {
  expect_error({}, 0, "unexpected end of file reading the magic");
  expect_error({'G', 'G'}, 0, "unexpected end of file");
  expect_error({'G', 'G', 'U', 'F', 3, 0}, 4, "unexpected end of file reading the version");
}

TEST(ReaderHostile, BadMagic) {
  Buf b = Image().build();
  b[3] = 'X';
  expect_error(b, 0, "magic is 'GGUX', expected 'GGUF'");
  b[0] = 0;
  expect_error(b, 0, "not a GGUF file");
}

TEST(ReaderHostile, BadVersion) {
  expect_error(Image(0).build(), 4, "GGUF version 0 is not supported");
  expect_error(Image(1).build(), 4, "GGUF version 1 is not supported");
  expect_error(Image(4).build(), 4, "GGUF version 4 is not supported");
  expect_error(Image(0x7fffffff).build(), 4, "version 2147483647 is not supported");
  expect_error(Image(0xffffffff).build(), 4, "not supported");
  expect_error(Image(0x03000000).build(), 4, "big-endian");
}

TEST(ReaderHostile, AbsurdCounts) {
  Buf b = header(3, 1ull << 63, 0);
  b.resize(4096, 0);
  expect_error(b, 8, "tensor count 9223372036854775808 cannot fit");
  b = header(3, 0, ~0ull);
  b.resize(4096, 0);
  expect_error(b, 16, "metadata count 18446744073709551615 cannot fit");
  // Plausible counts that the file is still too small for.
  b = header(3, 0, 1000);
  b.resize(1024, 0);
  expect_error(b, 16, "metadata count 1000 cannot fit");
  b = header(3, 100, 0);
  b.resize(1024, 0);
  expect_error(b, 8, "tensor count 100 cannot fit");
}

// --- metadata --------------------------------------------------------------------------------

TEST(ReaderHostile, OversizedStringLength) {
  expect_error(one_kv(ValueType::STRING, test::body<uint64_t>(1ull << 63)), 37,
               "a string has length 9223372036854775808");
  expect_error(one_kv(ValueType::STRING, test::body<uint64_t>(1000), 50), 37, "a string has length 1000 but only");
  // The key itself.
  Buf b = header(3, 0, 1);
  test::put<uint64_t>(b, ~0ull);
  b.resize(200, 'k');
  expect_error(b, 24, "a key has length 18446744073709551615");
  // A string inside a string array.
  Buf items;
  test::put_string(items, "ok");
  test::put<uint64_t>(items, 1ull << 40);
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::STRING, 2, items)), 59, "array string has length");
}

TEST(ReaderHostile, OversizedArrayLength) {
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::UINT32, 1ull << 62)), 37,
               "array of 4611686018427387904 UINT32 items cannot fit");
  // n * 4 would wrap around to a small number.
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::UINT32, (1ull << 62) + 1)), 37, "cannot fit");
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::UINT8, 200), 64), 37, "array of 200 UINT8 items");
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::STRING, 1ull << 40)), 37,
               "STRING items cannot fit");
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::FLOAT64, ~0ull)), 37, "FLOAT64 items cannot fit");
}

TEST(ReaderHostile, OversizedNestedArray) {
  // [[ 2^50 x UINT8 ]]: the inner header is at 37 + 12.
  const Buf inner = test::array_body(ValueType::UINT8, 1ull << 50);
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::ARRAY, 1, inner)), 49, "UINT8 items cannot fit");
  // 2^40 empty nested arrays would be 12 TB of file.
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::ARRAY, 1ull << 40)), 37,
               "ARRAY items cannot fit in the");
  // Each nested array needs 12 bytes even when empty: 20 of them do not fit in ~115 bytes.
  expect_error(one_kv(ValueType::ARRAY, test::array_body(ValueType::ARRAY, 20), 100), 37,
               "each takes at least 12 bytes");
}

TEST(ReaderHostile, ArraysNestedTooDeep) {
  Buf v = test::numeric_array_body<uint8_t>({1});  // level 9
  for (int level = 8; level >= 1; --level) v = test::array_body(ValueType::ARRAY, 1, v);
  expect_error(one_kv(ValueType::ARRAY, v), 37 + 8 * 12, "nested more than 8 levels deep");
}

TEST(ReaderHostile, DuplicateKey) {
  Image im;
  im.kv_scalar<uint8_t>("k", 1).kv_scalar<uint8_t>("k", 2);
  expect_error(im.build(), 24 + 14, "key 'k': duplicate key");
}

TEST(ReaderHostile, EmptyKey) {
  Image im;
  im.kv_scalar<uint8_t>("", 1);
  expect_error(im.build(), 24, "metadata entry 0: empty key");
}

TEST(ReaderHostile, UnknownValueTypes) {
  Image im;
  im.kv_raw("k", 13, test::body<uint64_t>(0));
  expect_error(im.build(), 33, "key 'k': unknown value type id 13");
  Image im2;
  im2.kv_raw("k", 0xffffffff, {});
  expect_error(im2.build(), 33, "unknown value type id 4294967295");
  expect_error(one_kv(ValueType::ARRAY, test::array_body((ValueType)13, 0)), 37, "unknown element type id 13");
}

TEST(ReaderHostile, UnprintableKeyIsEscapedInErrors) {
  Image im;
  im.kv_raw("a\nb", 99, {});
  expect_error(im.build(), 35, "key 'a\\x0ab'");
}

TEST(ReaderHostile, AlignmentOfTheWrongType) {
  const uint64_t at = 24 + 8 + 17;  // after "general.alignment"
  Image a;
  a.kv_scalar<int32_t>("general.alignment", 32);
  expect_error(a.build(), at, "key 'general.alignment': must be UINT32, found INT32");
  Image b;
  b.kv_scalar<uint64_t>("general.alignment", 32);
  expect_error(b.build(), at, "must be UINT32, found UINT64");
  Image c;
  c.kv_string("general.alignment", "32");
  expect_error(c.build(), at, "must be UINT32, found STRING");
  Image d;
  d.kv("general.alignment", ValueType::ARRAY, test::numeric_array_body<uint32_t>({32}));
  expect_error(d.build(), at, "must be UINT32, found ARRAY of UINT32");
}

TEST(ReaderHostile, AlignmentNotAPowerOfTwo) {
  for (uint32_t alignment : {0u, 3u, 48u, 0x80000001u}) {
    Image im;
    im.kv_scalar<uint32_t>("general.alignment", alignment);
    expect_error(im.build(), 49, fmt::format("alignment {} is not a nonzero power of two", alignment));
  }
}

TEST(ReaderHostile, KnownKeysOfTheWrongType) {
  struct Case {
    const char* key;
    ValueType type;
    Buf body;
    const char* what;
  };
  const Case cases[] = {
      {"tokenizer.ggml.tokens", ValueType::ARRAY, test::numeric_array_body<int32_t>({1}),
       "must be ARRAY of STRING, found ARRAY of INT32"},
      {"tokenizer.ggml.tokens", ValueType::STRING, test::str_body("a"), "must be ARRAY of STRING, found STRING"},
      {"tokenizer.ggml.merges", ValueType::ARRAY, test::array_body(ValueType::ARRAY, 0),
       "must be ARRAY of STRING, found ARRAY of ARRAY"},
      {"tokenizer.ggml.scores", ValueType::ARRAY, test::numeric_array_body<double>({1}),
       "must be ARRAY of FLOAT32, found ARRAY of FLOAT64"},
      {"tokenizer.ggml.token_type", ValueType::ARRAY, test::numeric_array_body<uint32_t>({1}),
       "must be ARRAY of INT32, found ARRAY of UINT32"},
      {"tokenizer.ggml.model", ValueType::UINT8, test::body<uint8_t>(1), "must be STRING, found UINT8"},
      {"tokenizer.ggml.pre", ValueType::ARRAY, test::string_array_body({"x"}), "must be STRING, found ARRAY of STRING"},
      {"general.architecture", ValueType::UINT32, test::body<uint32_t>(1), "must be STRING, found UINT32"},
      {"split.no", ValueType::INT32, test::body<int32_t>(0), "must be UINT16, found INT32"},
      {"split.count", ValueType::UINT32, test::body<uint32_t>(2), "must be UINT16, found UINT32"},
      {"split.tensors.count", ValueType::UINT64, test::body<uint64_t>(2), "must be INT32, found UINT64"},
      {"velocity.header_only", ValueType::UINT8, test::body<uint8_t>(1), "must be BOOL, found UINT8"},
  };
  for (const auto& c : cases) {
    Image im;
    im.kv(c.key, c.type, c.body);
    expect_error(im.build(), 24 + 8 + std::string_view(c.key).size(), fmt::format("key '{}': {}", c.key, c.what));
  }
}

// --- tensor infos ----------------------------------------------------------------------------

TEST(ReaderHostile, NDimsOutOfRange) {
  expect_error(one_tensor({"t", 0, {}, 0, 0}), 33, "tensor 't': n_dims is 0, must be 1..4");
  expect_error(one_tensor({"t", 0, {1, 1, 1, 1, 1}, 0, 5}), 33, "n_dims is 5, must be 1..4");
  expect_error(one_tensor({"t", 0, {1}, 0, 0xffffffff}), 33, "n_dims is 4294967295");
}

TEST(ReaderHostile, NegativeDimension) {
  expect_error(one_tensor({"t", 0, {4, -1}, 0, {}}), 45, "tensor 't': dimension 1 is -1 (negative as int64)");
  expect_error(one_tensor({"t", 0, {std::numeric_limits<int64_t>::min()}, 0, {}}), 37, "dimension 0 is");
}

TEST(ReaderHostile, OverflowingElementCount) {
  expect_error(one_tensor({"t", 0, {1ll << 32, 1ll << 32}, 0, {}}), 33,
               "shape [4294967296, 4294967296] has more elements than fit in int64");
  expect_error(one_tensor({"t", 0, {2, 3, std::numeric_limits<int64_t>::max()}, 0, {}}), 33, "more elements");
  // Zero dimensions do not hide an overflow of the others (n_rows() must stay defined).
  expect_error(one_tensor({"t", 0, {0, 1ll << 32, 1ll << 32}, 0, {}}), 33, "more elements");
  // The element count fits but the byte count does not: 2^62 F32 = 2^64 bytes.
  expect_error(one_tensor({"t", 0, {1ll << 62}, 0, {}}), 45, "F32 takes more bytes than fit in int64");
}

TEST(ReaderHostile, UnknownTensorType) {
  expect_error(one_tensor({"t", 4, {32}, 0, {}}), 45, "tensor 't': unknown tensor type id 4");
  expect_error(one_tensor({"t", 1000, {32}, 0, {}}), 45, "unknown tensor type id 1000");
  expect_error(one_tensor({"t", 0xffffffff, {32}, 0, {}}), 45, "unknown tensor type id 4294967295");
}

TEST(ReaderHostile, RowNotAMultipleOfTheBlockSize) {
  expect_error(one_tensor({"t", (uint32_t)DType::Q4_0, {33}, 0, {}}), 45,
               "row of 33 elements is not a multiple of Q4_0's block size 32");
  expect_error(one_tensor({"t", (uint32_t)DType::Q4_K, {128, 2}, 0, {}}), 53, "Q4_K's block size 256");
}

TEST(ReaderHostile, MisalignedOffset) {
  expect_error(one_tensor({"t", 0, {4}, 4, {}}), 49, "tensor 't': offset 4 is not a multiple of the alignment 32");
  Image im;
  im.align(64).tensor("t", DType::F32, {4}, 32);
  im.data_size = 64;
  expect_error(im.build(), 24 + 8 + 17 + 4 + 4 + 8 + 1 + 4 + 8 + 4, "offset 32 is not a multiple of the alignment 64");
}

TEST(ReaderHostile, OverlappingTensors) {
  // "a" info is 33 bytes from 24, so "b" starts at 57 and its offset field is at 57 + 25.
  Image im;
  im.tensor("a", DType::F32, {16}, 0).tensor("b", DType::F32, {16}, 32);
  expect_error(im.build(), 82, "tensor 'b' at data offset [32, 96) overlaps tensor 'a' at [0, 64)");
  Image same;
  same.tensor("a", DType::F32, {8}, 0).tensor("b", DType::F32, {8}, 0);
  expect_error(same.build(), 82, "overlaps tensor 'a'");
  // A small tensor inside a big one listed after it, and one listed before it.
  Image inside;
  inside.tensor("a", DType::F32, {8}, 64).tensor("b", DType::F32, {64}, 0);
  expect_error(inside.build(), 49, "tensor 'a' at data offset [64, 96) overlaps tensor 'b' at [0, 256)");
  // Overlap with an earlier tensor that is not the nearest one in offset order.
  Image far;
  far.tensor("a", DType::F32, {64}, 0).tensor("b", DType::F32, {8}, 32).tensor("c", DType::F32, {8}, 128);
  EXPECT_NE(error_of(far.build()).find("overlaps tensor 'a'"), std::string::npos);
}

TEST(ReaderHostile, DataPastTheEndOfTheFile) {
  Image im;
  im.tensor("t", DType::F32, {16});
  uint64_t data_offset = 0;
  im.data_size = 63;
  const Buf b = im.build(&data_offset);
  expect_error(b, 49,
               fmt::format("tensor 't': data [{}, {}) extends past the end of the file ({} bytes)", data_offset,
                           data_offset + 64, b.size()));
  // An offset far past the end.
  im.data_size = 64;
  Image far;
  far.tensor("t", DType::F32, {16}, 1ull << 40);
  far.data_size = 64;
  expect_error(far.build(), 49, "extends past the end of the file");
}

TEST(ReaderHostile, OffsetOverflow) {
  expect_error(one_tensor({"t", 0, {16}, ~0ull - 31, {}}), 49, "overflows");
  // Checked even when the data is not expected to be present.
  Image im;
  im.kv("velocity.header_only", ValueType::BOOL, test::body<uint8_t>(1)).tensor("t", DType::F32, {16}, ~0ull - 31);
  im.data_size = 0;
  EXPECT_NE(error_of(im.build()).find("overflows"), std::string::npos);
}

TEST(ReaderHostile, HeaderOnlyStillChecksOffsets) {
  Image misaligned;
  misaligned.kv("velocity.header_only", ValueType::BOOL, test::body<uint8_t>(1)).tensor("t", DType::F32, {4}, 4);
  misaligned.data_size = 0;
  EXPECT_NE(error_of(misaligned.build()).find("not a multiple of the alignment"), std::string::npos);
  Image overlapping;
  overlapping.kv("velocity.header_only", ValueType::BOOL, test::body<uint8_t>(1))
      .tensor("a", DType::F32, {16}, 0)
      .tensor("b", DType::F32, {16}, 32);
  overlapping.data_size = 0;
  EXPECT_NE(error_of(overlapping.build()).find("overlaps"), std::string::npos);
}

TEST(ReaderHostile, DuplicateTensorName) {
  Image im;
  im.tensor("a", DType::F32, {8}).tensor("a", DType::F32, {8});
  expect_error(im.build(), 57, "duplicate tensor name 'a' (first at byte 24 of bad.gguf)");
}

TEST(ReaderHostile, OversizedTensorName) {
  Buf b = header(3, 1, 0);
  test::put<uint64_t>(b, 1ull << 60);
  b.resize(256, 0);
  expect_error(b, 24, "tensor info 0: a tensor name has length 1152921504606846976");
}

}  // namespace
}  // namespace velocity::gguf
