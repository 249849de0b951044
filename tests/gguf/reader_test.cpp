// GGUF reader on valid files: every value type, arrays of arrays, tensors of several types,
// custom alignment, header-only files, v2 and v3; and every strict prefix of a valid file fails
// cleanly. Hostile files are in reader_hostile_test.cpp, split models in reader_split_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "gguf/file.h"
#include "reader_image.h"

namespace velocity::gguf {
namespace {

using test::Buf;
using test::Image;

// Every value type, once as a scalar and once as an array, plus arrays of arrays.
Image all_values(uint32_t version) {
  Image im(version);
  // Arrays of arrays: [[1, 2], [], [3]] of INT32, and [[["a"], []], [["b", "c"]]] of strings.
  Buf ints;
  test::put_bytes(ints, test::numeric_array_body<int32_t>({1, 2}));
  test::put_bytes(ints, test::numeric_array_body<int32_t>({}));
  test::put_bytes(ints, test::numeric_array_body<int32_t>({3}));
  Buf inner0, inner1, outer;
  test::put_bytes(inner0, test::string_array_body({"a"}));
  test::put_bytes(inner0, test::string_array_body({}));
  test::put_bytes(inner1, test::string_array_body({"b", "c"}));
  test::put_bytes(outer, test::array_body(ValueType::ARRAY, 2, inner0));
  test::put_bytes(outer, test::array_body(ValueType::ARRAY, 1, inner1));

  Buf bool_items = {0, 1, 0};
  im.kv_string("general.architecture", "llama")
      .kv_scalar<uint8_t>("t.u8", 200)
      .kv_scalar<int8_t>("t.i8", -100)
      .kv_scalar<uint16_t>("t.u16", 60000)
      .kv_scalar<int16_t>("t.i16", -30000)
      .kv_scalar<uint32_t>("t.u32", 4000000000u)
      .kv_scalar<int32_t>("t.i32", -2000000000)
      .kv_scalar<float>("t.f32", 0.25f)
      .kv("t.bool", ValueType::BOOL, test::body<uint8_t>(1))
      .kv_string("t.str", "h\xc3\xa9llo\nworld")
      .kv_string("t.empty_str", "")
      .kv_scalar<uint64_t>("t.u64", ~0ull)
      .kv_scalar<int64_t>("t.i64", std::numeric_limits<int64_t>::min())
      .kv_scalar<double>("t.f64", -1.5e300)
      .kv("a.u8", ValueType::ARRAY, test::numeric_array_body<uint8_t>({1, 2, 255}))
      .kv("a.i8", ValueType::ARRAY, test::numeric_array_body<int8_t>({-1, 0, 1}))
      .kv("a.u16", ValueType::ARRAY, test::numeric_array_body<uint16_t>({65535}))
      .kv("a.i16", ValueType::ARRAY, test::numeric_array_body<int16_t>({-2, 2}))
      .kv("a.u32", ValueType::ARRAY, test::numeric_array_body<uint32_t>({7, 8, 9, 10}))
      .kv("a.i32", ValueType::ARRAY, test::numeric_array_body<int32_t>({-7}))
      .kv("a.f32", ValueType::ARRAY, test::numeric_array_body<float>({0.5f, -0.5f}))
      .kv("a.bool", ValueType::ARRAY, test::array_body(ValueType::BOOL, 3, bool_items))
      .kv("a.u64", ValueType::ARRAY, test::numeric_array_body<uint64_t>({~0ull, 0}))
      .kv("a.i64", ValueType::ARRAY, test::numeric_array_body<int64_t>({-5}))
      .kv("a.f64", ValueType::ARRAY, test::numeric_array_body<double>({1e-300}))
      .kv("a.str", ValueType::ARRAY, test::string_array_body({"x", "", "yz"}))
      .kv("a.empty", ValueType::ARRAY, test::numeric_array_body<float>({}))
      .kv("a.ints_of_ints", ValueType::ARRAY, test::array_body(ValueType::ARRAY, 3, ints))
      .kv("a.strs3", ValueType::ARRAY, test::array_body(ValueType::ARRAY, 2, outer));
  return im;
}

void expect_all_values(const File& f) {
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.at("t.u8"), Value::scalar<uint8_t>(200));
  EXPECT_EQ(f.at("t.i8"), Value::scalar<int8_t>(-100));
  EXPECT_EQ(f.at("t.u16"), Value::scalar<uint16_t>(60000));
  EXPECT_EQ(f.at("t.i16"), Value::scalar<int16_t>(-30000));
  EXPECT_EQ(f.at("t.u32"), Value::scalar<uint32_t>(4000000000u));
  EXPECT_EQ(f.at("t.i32"), Value::scalar<int32_t>(-2000000000));
  EXPECT_EQ(f.at("t.f32"), Value::scalar<float>(0.25f));
  EXPECT_EQ(f.at("t.bool"), Value::scalar(true));
  EXPECT_EQ(f.at("t.str").as_string(), "h\xc3\xa9llo\nworld");
  EXPECT_EQ(f.at("t.empty_str").as_string(), "");
  EXPECT_EQ(f.at("t.u64").get<uint64_t>(), ~0ull);
  EXPECT_EQ(f.at("t.i64").get<int64_t>(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.at("t.f64").get<double>(), -1.5e300);
  EXPECT_EQ(f.at("a.u8").array_as<uint8_t>(), (std::vector<uint8_t>{1, 2, 255}));
  EXPECT_EQ(f.at("a.i8").array_as<int8_t>(), (std::vector<int8_t>{-1, 0, 1}));
  EXPECT_EQ(f.at("a.u16").array_as<uint16_t>(), (std::vector<uint16_t>{65535}));
  EXPECT_EQ(f.at("a.i16").array_as<int16_t>(), (std::vector<int16_t>{-2, 2}));
  EXPECT_EQ(f.at("a.u32").array_as<uint32_t>(), (std::vector<uint32_t>{7, 8, 9, 10}));
  EXPECT_EQ(f.at("a.i32").array_as<int32_t>(), (std::vector<int32_t>{-7}));
  EXPECT_EQ(f.at("a.f32").array_as<float>(), (std::vector<float>{0.5f, -0.5f}));
  EXPECT_EQ(f.at("a.bool").array_as<bool>(), (std::vector<bool>{false, true, false}));
  EXPECT_EQ(f.at("a.u64").array_as<uint64_t>(), (std::vector<uint64_t>{~0ull, 0}));
  EXPECT_EQ(f.at("a.i64").array_as<int64_t>(), (std::vector<int64_t>{-5}));
  EXPECT_EQ(f.at("a.f64").array_as<double>(), (std::vector<double>{1e-300}));
  EXPECT_EQ(f.at("a.str").strings(), (std::vector<std::string>{"x", "", "yz"}));
  EXPECT_EQ(f.at("a.empty").elem_type(), ValueType::FLOAT32);
  EXPECT_EQ(f.at("a.empty").array_size(), 0u);

  const Value ints =
      Value::array_of_arrays({Value::array(std::vector<int32_t>{1, 2}), Value::array(std::vector<int32_t>{}),
                              Value::array(std::vector<int32_t>{3})});
  EXPECT_EQ(f.at("a.ints_of_ints"), ints);
  const Value strs3 =
      Value::array_of_arrays({Value::array_of_arrays({Value::string_array({"a"}), Value::string_array({})}),
                              Value::array_of_arrays({Value::string_array({"b", "c"})})});
  EXPECT_EQ(f.at("a.strs3"), strs3);
  EXPECT_EQ(f.at("a.strs3").arrays()[1].arrays()[0].strings()[1], "c");

  // File order is kept.
  ASSERT_EQ(f.metadata().size(), 29u);
  EXPECT_EQ(f.metadata().front().first, "general.architecture");
  EXPECT_EQ(f.metadata().back().first, "a.strs3");
  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_TRUE(f.tensors().empty());
}

TEST(ReaderValid, EveryValueTypeV3) {
  const Buf bytes = all_values(3).build();
  const File f = File::parse(bytes, "v3.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  expect_all_values(f);
  ASSERT_EQ(f.shards().size(), 1u);
  EXPECT_EQ(f.shards()[0].path, "v3.gguf");
  EXPECT_EQ(f.shards()[0].file_size, bytes.size());
  EXPECT_EQ(f.shards()[0].data_offset % 32, 0u);
  EXPECT_FALSE(f.header_only());
}

TEST(ReaderValid, EveryValueTypeV2) {
  const File f = File::parse(all_values(2).build(), "v2.gguf");
  EXPECT_EQ(f.version(), 2u);
  expect_all_values(f);
}

TEST(ReaderValid, MissingKeyErrorNamesFileAndKey) {
  const File f = File::parse(all_values(3).build(), "k.gguf");
  try {
    (void)f.at("no.such.key");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("k.gguf"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no.such.key"), std::string::npos) << e.what();
  }
}

TEST(ReaderValid, BoolsAreCanonical) {
  Buf items = {0, 7, 255};
  Image im;
  im.kv("b", ValueType::BOOL, test::body<uint8_t>(42))
      .kv("bs", ValueType::ARRAY, test::array_body(ValueType::BOOL, 3, items));
  const File f = File::parse(im.build());
  EXPECT_EQ(f.at("b"), Value::scalar(true));
  EXPECT_EQ(f.at("bs"), Value::array(std::vector<bool>{false, true, true}));
}

TEST(ReaderValid, ArraysNestedEightLevelsDeep) {
  Buf v = test::numeric_array_body<uint8_t>({9});  // level 8
  for (int level = 7; level >= 1; --level) v = test::array_body(ValueType::ARRAY, 1, v);
  Image im;
  im.kv("deep", ValueType::ARRAY, v);
  const File f = File::parse(im.build());
  const Value* cur = &f.at("deep");
  for (int level = 1; level < 8; ++level) cur = &cur->arrays().at(0);
  EXPECT_EQ(cur->array_as<uint8_t>(), (std::vector<uint8_t>{9}));
}

Image several_tensors() {
  Image im;
  im.kv_string("general.architecture", "test")
      .tensor("f32", DType::F32, {4, 3})
      .tensor("f16", DType::F16, {8})
      .tensor("q4_0", DType::Q4_0, {64, 2})
      .tensor("q8_0", DType::Q8_0, {32})
      .tensor("q4_k", DType::Q4_K, {256, 1, 2})
      .tensor("bf16", DType::BF16, {2, 2, 2, 2})
      .tensor("mxfp4", DType::MXFP4, {32, 1});
  return im;
}

void expect_tensor_data(const File& f, const Image& im) {
  const auto offsets = im.offsets();
  ASSERT_EQ(f.tensors().size(), offsets.size());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const TensorInfo& t = f.tensors()[i];
    EXPECT_EQ(t.offset, offsets[i]) << t.name;
    EXPECT_EQ(t.file_offset, f.shards()[t.shard].data_offset + t.offset) << t.name;
    ASSERT_EQ(t.bytes().size(), t.n_bytes) << t.name;
    for (uint64_t j = 0; j < t.n_bytes; ++j) ASSERT_EQ(t.bytes()[j], Image::pattern(i, j)) << t.name << " byte " << j;
  }
}

TEST(ReaderValid, TensorsOfSeveralTypes) {
  const Image im = several_tensors();
  uint64_t data_offset = 0;
  const Buf bytes = im.build(&data_offset);
  const File f = File::parse(bytes, "t.gguf");
  EXPECT_EQ(f.shards()[0].data_offset, data_offset);
  expect_tensor_data(f, im);

  struct Want {
    const char* name;
    DType type;
    std::vector<int64_t> shape;
    int64_t n_elements, n_rows;
    uint64_t n_bytes;
  };
  const Want want[] = {
      {"f32", DType::F32, {4, 3}, 12, 3, 48},          {"f16", DType::F16, {8}, 8, 1, 16},
      {"q4_0", DType::Q4_0, {64, 2}, 128, 2, 72},      {"q8_0", DType::Q8_0, {32}, 32, 1, 34},
      {"q4_k", DType::Q4_K, {256, 1, 2}, 512, 2, 288}, {"bf16", DType::BF16, {2, 2, 2, 2}, 16, 8, 32},
      {"mxfp4", DType::MXFP4, {32, 1}, 32, 1, 17},
  };
  for (size_t i = 0; i < std::size(want); ++i) {
    const TensorInfo& t = f.tensors()[i];
    EXPECT_EQ(t.name, want[i].name);
    EXPECT_EQ(t.type, want[i].type) << t.name;
    EXPECT_EQ(t.shape, want[i].shape) << t.name;
    EXPECT_EQ(t.n_elements, want[i].n_elements) << t.name;
    EXPECT_EQ(t.n_rows(), want[i].n_rows) << t.name;
    EXPECT_EQ(t.n_bytes, want[i].n_bytes) << t.name;
    EXPECT_EQ(t.shard, 0u);
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ(f.find_tensor(want[i].name), &t);
  }
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
}

TEST(ReaderValid, CustomAlignment) {
  for (uint32_t alignment : {1u, 8u, 64u, 4096u}) {
    Image im = several_tensors();
    im.align(alignment);
    uint64_t data_offset = 0;
    const Buf bytes = im.build(&data_offset);
    const File f = File::parse(bytes);
    EXPECT_EQ(f.alignment(), alignment);
    EXPECT_EQ(f.shards()[0].data_offset, data_offset);
    EXPECT_EQ(f.shards()[0].data_offset % alignment, 0u);
    EXPECT_EQ(f.at("general.alignment").get<uint32_t>(), alignment);
    expect_tensor_data(f, im);
  }
}

TEST(ReaderValid, TensorsOutOfOffsetOrderAndEmptyTensors) {
  // ggml itself writes tensors in offset order; the format does not require it. Dimensions of
  // zero are accepted as ggml accepts them (an empty tensor, no bytes).
  Image im;
  im.tensor("second", DType::F32, {8}, 32).tensor("first", DType::F32, {8}, 0).tensor("empty", DType::F32, {0, 5}, 64);
  const Buf bytes = im.build();
  const File f = File::parse(bytes);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[1].bytes()[0], Image::pattern(1, 0));
  const TensorInfo& empty = *f.find_tensor("empty");
  EXPECT_EQ(empty.n_elements, 0);
  EXPECT_EQ(empty.n_bytes, 0u);
  EXPECT_EQ(empty.n_rows(), 5);
  EXPECT_TRUE(empty.bytes().empty());
}

TEST(ReaderValid, HeaderOnly) {
  Image im = several_tensors();
  im.kv("velocity.header_only", ValueType::BOOL, test::body<uint8_t>(1)).kv_string("pad", "x");
  im.data_size = 0;  // nothing after the header padding
  uint64_t header_end = 0;
  Buf bytes = im.build(nullptr, &header_end);
  const File f = File::parse(bytes);
  EXPECT_TRUE(f.header_only());
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.data, nullptr) << t.name;
    EXPECT_TRUE(t.bytes().empty());
    EXPECT_GT(t.n_bytes, 0u);
  }
  // Even without the header padding.
  ASSERT_LT(header_end, bytes.size());
  bytes.resize(header_end);
  EXPECT_NO_THROW(File::parse(bytes));
}

TEST(ReaderValid, HeaderOnlyFalseStillNeedsData) {
  Image im = several_tensors();
  im.kv("velocity.header_only", ValueType::BOOL, test::body<uint8_t>(0));
  im.data_size = 0;
  EXPECT_THROW(File::parse(im.build()), Error);
}

TEST(ReaderValid, OpenMapsTheFile) {
  test::TempDir dir;
  const Image im = several_tensors();
  const std::string path = dir.file("model.gguf");
  test::write_file(path, im.build());
  const File f = File::open(path);
  EXPECT_EQ(f.shards().at(0).path, path);
  EXPECT_EQ(f.architecture(), "test");
  expect_tensor_data(f, im);
  File moved = std::move(const_cast<File&>(f));
  expect_tensor_data(moved, im);
}

TEST(ReaderValid, OpenMissingFile) {
  test::TempDir dir;
  EXPECT_THROW(File::open(dir.file("absent.gguf")), Error);
}

// The fuzzer's seeds (fuzz/make_seeds.py, written without velocity's code) are valid files.
TEST(ReaderValid, FuzzSeedsParse) {
  const std::filesystem::path dir = VELOCITY_SOURCE_DIR "/fuzz/corpus/gguf";
  size_t n = 0, n_v2 = 0, n_with_tensors = 0, n_realigned = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    SCOPED_TRACE(entry.path().string());
    const File f = File::open(entry.path().string());
    ++n;
    n_v2 += f.version() == 2;
    n_with_tensors += !f.tensors().empty();
    n_realigned += f.alignment() != kDefaultAlignment;
  }
  if (n == 0) GTEST_SKIP() << "no seeds in " << dir;
  EXPECT_GE(n_v2, 1u);
  EXPECT_GE(n_with_tensors, 3u);
  EXPECT_GE(n_realigned, 1u);
}

// Every strict prefix of a valid file must fail with an Error naming the file and a byte offset:
// metadata, nested arrays, tensor infos, padding and data are all cut somewhere.
TEST(ReaderTruncated, EveryPrefixOfAValidFileFails) {
  Image im = all_values(3);
  im.align(64).tensor("a", DType::Q4_0, {32, 2}).tensor("b", DType::F16, {3}).tensor("c", DType::F32, {5});
  const Buf full = im.build();
  ASSERT_NO_THROW(File::parse(full));
  for (size_t n = 0; n < full.size(); ++n) {
    const Buf prefix(full.begin(), full.begin() + (ptrdiff_t)n);  // exact size, so ASan sees overreads
    try {
      (void)File::parse(prefix, "cut.gguf");
      ADD_FAILURE() << "prefix of " << n << " bytes parsed";
    } catch (const Error& e) {
      const std::string msg = e.what();
      ASSERT_EQ(msg.rfind("cut.gguf: at byte ", 0), 0u) << n << ": " << msg;
    }
  }
}

}  // namespace
}  // namespace velocity::gguf
