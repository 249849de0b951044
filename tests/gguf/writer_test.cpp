// GGUF writer: round trips through gguf::File, layout (alignment, padding, split shards,
// header-only), streaming in odd chunks, every error a caller can cause, and cleanup.
#include "gguf/writer.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>

#include "gguf/file.h"

namespace velocity::gguf {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint64_t padded(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

struct TensorSpec {
  std::string name;
  DType type;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

uint64_t tensor_bytes(DType type, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return static_cast<uint64_t>(n / dtype_block_size(type) * dtype_block_bytes(type));
}

TensorSpec make_tensor(std::string name, DType type, std::vector<int64_t> shape, uint32_t seed) {
  const uint64_t n = tensor_bytes(type, shape);
  return {std::move(name), type, std::move(shape), random_bytes(n, seed)};
}

// A mix of plain and block types, 1 to 4 dims, sizes that are not multiples of 32.
std::vector<TensorSpec> sample_tensors() {
  return {
      make_tensor("token_embd.weight", DType::Q8_0, {64, 3}, 1),    // 204 bytes
      make_tensor("blk.0.attn_norm.weight", DType::F32, {7}, 2),     // 28
      make_tensor("blk.0.ffn_up.weight", DType::Q4_K, {256, 2}, 3),  // 288
      make_tensor("blk.0.attn_q.weight", DType::F16, {5, 2, 3}, 4),  // 60
      make_tensor("output.weight", DType::I8, {1, 1, 1, 33}, 5),     // 33
  };
}

// Calls `fn`, expects a velocity::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const auto& part : parts)
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    return;
  }
  ADD_FAILURE() << "no velocity::Error thrown";
}

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "velocity_writer_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  // Writes `tensors` with `options`, whole tensors at a time; returns the output paths.
  static std::vector<std::string> write_file(const std::string& path, const std::vector<TensorSpec>& tensors,
                                             WriterOptions options = {},
                                             const std::vector<std::pair<std::string, Value>>& metadata = {}) {
    Writer w(path, options);
    for (const auto& [key, value] : metadata) w.set(key, value);
    for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
    w.begin_data();
    if (!options.header_only)
      for (const auto& t : tensors) w.write_tensor(t.name, t.bytes);
    w.finish();
    return w.paths();
  }

  // Every tensor is present, in order, with its type, shape, size and bytes.
  static void expect_tensors(const File& file, const std::vector<TensorSpec>& tensors, bool header_only = false) {
    ASSERT_EQ(file.tensors().size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const TensorInfo& got = file.tensors()[i];
      const TensorSpec& want = tensors[i];
      SCOPED_TRACE(want.name);
      EXPECT_EQ(got.name, want.name);
      EXPECT_EQ(got.type, want.type);
      EXPECT_EQ(got.shape, want.shape);
      EXPECT_EQ(got.n_bytes, want.bytes.size());
      EXPECT_EQ(got.offset % file.shards().at(got.shard).alignment, 0u);
      if (header_only) {
        EXPECT_EQ(got.data, nullptr);
      } else {
        ASSERT_NE(got.data, nullptr);
        EXPECT_TRUE(std::equal(want.bytes.begin(), want.bytes.end(), got.bytes().begin(), got.bytes().end()));
      }
    }
  }

  std::string dir_;
};

// --- round trips -----------------------------------------------------------------------------

TEST_F(WriterTest, RoundTripsMetadataOfEveryType) {
  std::vector<std::string> big_strings;
  for (int i = 0; i < 100000; ++i) big_strings.push_back(fmt::format("{}{}", i % 3 == 0 ? "▁tok" : "t", i));
  const std::vector<std::pair<std::string, Value>> metadata = {
      {"general.architecture", Value::string("llama")},
      {"t.u8", Value::scalar<uint8_t>(255)},
      {"t.i8", Value::scalar<int8_t>(-128)},
      {"t.u16", Value::scalar<uint16_t>(65535)},
      {"t.i16", Value::scalar<int16_t>(-32768)},
      {"t.u32", Value::scalar<uint32_t>(4294967295u)},
      {"t.i32", Value::scalar<int32_t>(std::numeric_limits<int32_t>::min())},
      {"t.f32", Value::scalar(-1.25e-7f)},
      {"t.bool_true", Value::scalar(true)},
      {"t.bool_false", Value::scalar(false)},
      {"t.u64", Value::scalar<uint64_t>(~0ull)},
      {"t.i64", Value::scalar<int64_t>(std::numeric_limits<int64_t>::min())},
      {"t.f64", Value::scalar(3.141592653589793)},
      {"t.string", Value::string("héllo wörld ✓ 日本語 🦙")},
      {"t.empty_string", Value::string("")},
      {"t.string_with_nul", Value::string(std::string("a\0b", 3))},
      {"t.arr.u8", Value::array(std::vector<uint8_t>{0, 1, 255})},
      {"t.arr.i8", Value::array(std::vector<int8_t>{-1, 2})},
      {"t.arr.u16", Value::array(std::vector<uint16_t>{65535})},
      {"t.arr.i16", Value::array(std::vector<int16_t>{-2, 3, -4})},
      {"t.arr.u32", Value::array(std::vector<uint32_t>{7, 8})},
      {"t.arr.i32", Value::array(std::vector<int32_t>{1, -2, 3})},
      {"t.arr.f32", Value::array(std::vector<float>{0.5f, -2.0f})},
      {"t.arr.bool", Value::array(std::vector<bool>{true, false, true})},
      {"t.arr.u64", Value::array(std::vector<uint64_t>{~0ull})},
      {"t.arr.i64", Value::array(std::vector<int64_t>{-9, 9})},
      {"t.arr.f64", Value::array(std::vector<double>{1e300})},
      {"t.arr.string", Value::array(std::vector<std::string>{"a", "", "ü✓"})},
      {"t.arr.empty_i32", Value::array(std::vector<int32_t>{})},
      {"t.arr.empty_string", Value::array(std::vector<std::string>{})},
      {"t.arr.empty_arrays", Value::array_of_arrays({})},
      {"t.arr.arrays",
       Value::array_of_arrays({Value::array(std::vector<int32_t>{1, 2}), Value::array(std::vector<std::string>{"x"}),
                               Value::array(std::vector<float>{}),
                               Value::array_of_arrays({Value::array(std::vector<uint8_t>{9})})})},
      {"tokenizer.ggml.tokens", Value::array(big_strings)},
  };
  const auto tensors = sample_tensors();
  const std::string p = path("meta.gguf");
  write_file(p, tensors, {}, metadata);

  const File file = File::open(p);
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 32u);
  EXPECT_FALSE(file.header_only());
  EXPECT_EQ(file.find("general.alignment"), nullptr);  // the default is not written
  ASSERT_EQ(file.metadata().size(), metadata.size());
  for (size_t i = 0; i < metadata.size(); ++i) {
    SCOPED_TRACE(metadata[i].first);
    EXPECT_EQ(file.metadata()[i].first, metadata[i].first);
    EXPECT_EQ(file.metadata()[i].second.type(), metadata[i].second.type());
    EXPECT_TRUE(file.metadata()[i].second == metadata[i].second) << file.metadata()[i].second.summary();
  }
  EXPECT_EQ(file.at("tokenizer.ggml.tokens").strings(), big_strings);
  expect_tensors(file, tensors);
}

TEST_F(WriterTest, RoundTripsTensorsAndPadsEveryTensorWithZeros) {
  const auto tensors = sample_tensors();
  const std::string p = path("t.gguf");
  write_file(p, tensors, {}, {{"general.architecture", Value::string("llama")}});

  const File file = File::open(p);
  expect_tensors(file, tensors);
  ASSERT_EQ(file.shards().size(), 1u);
  const Shard& shard = file.shards()[0];
  EXPECT_EQ(shard.data_offset % 32, 0u);

  // Offsets are the running sum of padded sizes; the last tensor is padded too (gguf-py, ggml).
  const std::vector<uint8_t> raw = read_all(p);
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = file.tensors()[i];
    EXPECT_EQ(t.offset, offset) << t.name;
    EXPECT_EQ(t.file_offset, shard.data_offset + offset) << t.name;
    for (uint64_t b = t.file_offset + t.n_bytes; b < shard.data_offset + padded(offset + t.n_bytes, 32); ++b)
      ASSERT_EQ(raw[b], 0) << "padding byte " << b << " after " << t.name;
    offset = padded(offset + t.n_bytes, 32);
  }
  EXPECT_EQ(raw.size(), shard.data_offset + offset);
  EXPECT_EQ(shard.file_size, raw.size());
}

TEST_F(WriterTest, HeaderFieldsAreLittleEndianVersion3) {
  const auto tensors = sample_tensors();
  const std::string p = path("h.gguf");
  write_file(p, tensors, {}, {{"a", Value::scalar<uint32_t>(1)}, {"b", Value::string("x")}});
  const std::vector<uint8_t> raw = read_all(p);
  ASSERT_GE(raw.size(), 24u);
  EXPECT_EQ(std::string(raw.begin(), raw.begin() + 4), "GGUF");
  uint32_t version;
  uint64_t n_tensors, n_kv;
  std::memcpy(&version, raw.data() + 4, 4);
  std::memcpy(&n_tensors, raw.data() + 8, 8);
  std::memcpy(&n_kv, raw.data() + 16, 8);
  EXPECT_EQ(version, 3u);
  EXPECT_EQ(n_tensors, tensors.size());
  EXPECT_EQ(n_kv, 2u);
  // First KV: u64 key length, key, u32 type (UINT32 = 4), value.
  uint64_t key_len;
  std::memcpy(&key_len, raw.data() + 24, 8);
  EXPECT_EQ(key_len, 1u);
  EXPECT_EQ(raw[32], 'a');
  uint32_t type, value;
  std::memcpy(&type, raw.data() + 33, 4);
  std::memcpy(&value, raw.data() + 37, 4);
  EXPECT_EQ(type, 4u);
  EXPECT_EQ(value, 1u);
}

TEST_F(WriterTest, FileWithoutTensors) {
  const std::string p = path("empty.gguf");
  write_file(p, {}, {}, {{"general.architecture", Value::string("llama")}});
  const File file = File::open(p);
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(file.architecture(), "llama");
  EXPECT_EQ(file.shards()[0].file_size, file.shards()[0].data_offset);
}

// --- streaming ---------------------------------------------------------------------------------

TEST_F(WriterTest, ChunkedWritesEqualWholeTensorWrites) {
  const auto tensors = sample_tensors();
  const std::string whole = path("whole.gguf");
  write_file(whole, tensors);
  const std::vector<uint8_t> expected = read_all(whole);

  std::vector<uint8_t> all;  // every tensor's bytes, back to back
  for (const auto& t : tensors) all.insert(all.end(), t.bytes.begin(), t.bytes.end());

  for (size_t chunk : {size_t{1}, size_t{3}, size_t{7}, size_t{61}, size_t{205}, size_t{1000}, all.size()}) {
    SCOPED_TRACE(chunk);
    const std::string p = path("chunked_" + std::to_string(chunk) + ".gguf");
    Writer w(p);
    for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
    w.begin_data();
    EXPECT_EQ(w.next_tensor(), tensors[0].name);
    for (size_t pos = 0; pos < all.size(); pos += chunk)
      w.write(std::span(all).subspan(pos, std::min(chunk, all.size() - pos)));
    EXPECT_EQ(w.next_tensor(), "");
    w.finish();
    EXPECT_EQ(read_all(p), expected);
  }
}

TEST_F(WriterTest, NextTensorFollowsDeclarationOrder) {
  const auto tensors = sample_tensors();
  Writer w(path("n.gguf"));
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
  w.begin_data();
  for (const auto& t : tensors) {
    EXPECT_EQ(w.next_tensor(), t.name);
    w.write(std::span(t.bytes).first(t.bytes.size() - 1));
    EXPECT_EQ(w.next_tensor(), t.name);  // one byte still due
    w.write(std::span(t.bytes).last(1));
  }
  EXPECT_EQ(w.next_tensor(), "");
  w.finish();
}

TEST_F(WriterTest, ZeroByteTensorsNeedNoData) {
  const std::vector<TensorSpec> tensors = {
      make_tensor("empty.first", DType::F32, {0}, 1), make_tensor("a", DType::F32, {3}, 2),
      make_tensor("empty.middle", DType::Q8_0, {0, 4}, 3), make_tensor("b", DType::F16, {5}, 4),
      make_tensor("empty.last", DType::F32, {0}, 5)};
  const std::string p = path("z.gguf");
  Writer w(p);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
  w.begin_data();
  EXPECT_EQ(w.next_tensor(), "a");  // a zero-byte tensor is never due
  w.write_tensor("empty.first", {});  // still accepted, as a no-op
  w.write(tensors[1].bytes);
  EXPECT_EQ(w.next_tensor(), "b");
  w.write_tensor("b", tensors[3].bytes);
  EXPECT_EQ(w.next_tensor(), "");
  w.finish();
  const File file = File::open(p);
  expect_tensors(file, tensors);
  EXPECT_EQ(file.tensors()[2].offset, 32u);
  EXPECT_EQ(file.tensors()[3].offset, 32u);
}

// --- alignment ---------------------------------------------------------------------------------

class WriterAlignmentTest : public WriterTest, public ::testing::WithParamInterface<uint64_t> {};

TEST_P(WriterAlignmentTest, OffsetsAndDataSectionAreAligned) {
  const uint64_t alignment = GetParam();
  const auto tensors = sample_tensors();
  const std::string p = path("a.gguf");
  write_file(p, tensors, {.alignment = alignment}, {{"general.architecture", Value::string("llama")}});

  const File file = File::open(p);
  EXPECT_EQ(file.alignment(), alignment);
  EXPECT_EQ(file.shards()[0].data_offset % alignment, 0u);
  const Value* key = file.find("general.alignment");
  if (alignment == 32) {
    EXPECT_EQ(key, nullptr);
  } else {
    ASSERT_NE(key, nullptr);
    EXPECT_EQ(key->type(), ValueType::UINT32);
    EXPECT_EQ(key->get<uint32_t>(), alignment);
  }
  uint64_t end = 0;
  for (const auto& t : file.tensors()) {
    EXPECT_EQ(t.offset % alignment, 0u) << t.name;
    EXPECT_EQ(t.file_offset % alignment, 0u) << t.name;
    end = padded(t.offset + t.n_bytes, alignment);
  }
  EXPECT_EQ(file.shards()[0].file_size, file.shards()[0].data_offset + end);
  expect_tensors(file, tensors);
}

INSTANTIATE_TEST_SUITE_P(Writer, WriterAlignmentTest, ::testing::Values(32, 64, 256, 1, 4096));

TEST_F(WriterTest, AlignmentKeyMayBeSetWhenItAgrees) {
  const std::string p = path("k.gguf");
  write_file(p, sample_tensors(), {.alignment = 64},
             {{"general.alignment", Value::scalar<uint32_t>(64)}, {"x", Value::scalar<uint8_t>(1)}});
  const File file = File::open(p);
  ASSERT_EQ(file.metadata().size(), 2u);  // not written twice
  EXPECT_EQ(file.metadata()[0].first, "general.alignment");
  EXPECT_EQ(file.alignment(), 64u);
}

// --- split output ------------------------------------------------------------------------------

TEST_F(WriterTest, SplitsBySizeAndReadsBackAsOneModel) {
  // Padded sizes: 224, 32, 288, 64, 64. With a 320-byte limit: [224 32] [288] [64 64].
  const auto tensors = sample_tensors();
  const std::vector<std::pair<std::string, Value>> metadata = {
      {"general.architecture", Value::string("llama")}, {"general.name", Value::string("split test")}};
  const auto paths = write_file(path("model.gguf"), tensors, {.split_max_bytes = 320}, metadata);

  ASSERT_EQ(paths.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(paths[i], split_path(path("model"), i + 1, 3));
  EXPECT_EQ(files(), (std::vector<std::string>{"model-00001-of-00003.gguf", "model-00002-of-00003.gguf",
                                               "model-00003-of-00003.gguf"}));

  const File file = File::open(paths[0]);
  ASSERT_EQ(file.shards().size(), 3u);
  expect_tensors(file, tensors);
  const std::vector<uint32_t> want_shard = {0, 0, 1, 2, 2};
  for (size_t i = 0; i < tensors.size(); ++i) EXPECT_EQ(file.tensors()[i].shard, want_shard[i]) << tensors[i].name;
  EXPECT_EQ(file.architecture(), "llama");

  // First shard: the model's metadata, then the split keys (gguf-py's and gguf-split's order).
  const auto& md = file.metadata();
  ASSERT_EQ(md.size(), 5u);
  EXPECT_EQ(md[0].first, "general.architecture");
  EXPECT_EQ(md[1].first, "general.name");
  EXPECT_EQ(md[2].first, "split.no");
  EXPECT_EQ(md[3].first, "split.count");
  EXPECT_EQ(md[4].first, "split.tensors.count");
  EXPECT_EQ(md[2].second.type(), ValueType::UINT16);
  EXPECT_EQ(md[3].second.type(), ValueType::UINT16);
  EXPECT_EQ(md[4].second.type(), ValueType::INT32);
  EXPECT_EQ(md[2].second.get<uint16_t>(), 0);
  EXPECT_EQ(md[3].second.get<uint16_t>(), 3);
  EXPECT_EQ(md[4].second.get<int32_t>(), 5);

  // Later shards carry only the split keys.
  for (int i = 1; i < 3; ++i) {
    SCOPED_TRACE(paths[i]);
    const std::vector<uint8_t> raw = read_all(paths[i]);
    const File shard = File::parse(raw, paths[i]);
    ASSERT_EQ(shard.metadata().size(), 3u);
    EXPECT_EQ(shard.at("split.no").get<uint16_t>(), i);
    EXPECT_EQ(shard.at("split.count").get<uint16_t>(), 3);
    EXPECT_EQ(shard.at("split.tensors.count").get<int32_t>(), 5);
    EXPECT_EQ(shard.find("general.architecture"), nullptr);
  }
}

TEST_F(WriterTest, TensorLargerThanTheSplitLimitGetsItsOwnShard) {
  const auto tensors = sample_tensors();
  // Padded sizes 224, 32, 288, 64, 64 with a 100-byte limit: [224] [32] [288] [64] [64]; the
  // 224- and 288-byte tensors are over the limit, and no two neighbours fit together.
  const auto paths = write_file(path("big.gguf"), tensors, {.split_max_bytes = 100});
  ASSERT_EQ(paths.size(), 5u);
  const File file = File::open(paths[0]);
  expect_tensors(file, tensors);
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(file.tensors()[i].shard, i);
    EXPECT_EQ(file.tensors()[i].offset, 0u);
  }
  // Every shard's data section stays within the limit unless it is one oversized tensor.
  for (const auto& shard : file.shards()) {
    uint64_t data = shard.file_size - shard.data_offset;
    if (data > 100) {
      int n = 0;
      for (const auto& t : file.tensors()) n += t.shard == static_cast<uint32_t>(&shard - file.shards().data());
      EXPECT_EQ(n, 1) << shard.path;
    }
  }
}

TEST_F(WriterTest, SplitRepeatsANonDefaultAlignmentInEveryShard) {
  const auto tensors = sample_tensors();
  const auto paths = write_file(path("al.gguf"), tensors, {.alignment = 64, .split_max_bytes = 300},
                                {{"general.architecture", Value::string("llama")}});
  ASSERT_GT(paths.size(), 1u);
  const File file = File::open(paths[0]);
  expect_tensors(file, tensors);
  for (const auto& shard : file.shards()) {
    EXPECT_EQ(shard.alignment, 64u) << shard.path;
    EXPECT_EQ(shard.data_offset % 64, 0u) << shard.path;
  }
}

TEST_F(WriterTest, SplitThatFitsOneShardStillUsesShardNames) {
  const auto tensors = sample_tensors();
  const auto paths = write_file(path("one.gguf"), tensors, {.split_max_bytes = 1 << 20});
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_EQ(paths[0], split_path(path("one"), 1, 1));
  const File file = File::open(paths[0]);
  expect_tensors(file, tensors);
  EXPECT_EQ(file.at("split.count").get<uint16_t>(), 1);
}

// --- header-only -------------------------------------------------------------------------------

TEST_F(WriterTest, HeaderOnlyWritesInfosWithoutData) {
  const auto tensors = sample_tensors();
  const std::string full_path = path("full.gguf");
  const std::string header_path = path("header.gguf");
  write_file(full_path, tensors, {}, {{"general.architecture", Value::string("llama")}});
  write_file(header_path, tensors, {.header_only = true}, {{"general.architecture", Value::string("llama")}});

  const File full = File::open(full_path);
  const File header = File::open(header_path);
  EXPECT_TRUE(header.header_only());
  EXPECT_FALSE(full.header_only());
  const Value* flag = header.find(kHeaderOnlyKey);
  ASSERT_NE(flag, nullptr);
  EXPECT_EQ(flag->type(), ValueType::BOOL);
  EXPECT_TRUE(flag->get<bool>());
  expect_tensors(header, tensors, /*header_only=*/true);
  for (size_t i = 0; i < tensors.size(); ++i) EXPECT_EQ(header.tensors()[i].offset, full.tensors()[i].offset);
  EXPECT_EQ(header.shards()[0].file_size, header.shards()[0].data_offset);
}

TEST_F(WriterTest, HeaderOnlySplitMarksTheFirstShard) {
  const auto tensors = sample_tensors();
  const auto paths = write_file(path("hs.gguf"), tensors, {.split_max_bytes = 320, .header_only = true});
  ASSERT_EQ(paths.size(), 3u);
  const File file = File::open(paths[0]);
  EXPECT_TRUE(file.header_only());
  expect_tensors(file, tensors, /*header_only=*/true);
  for (const auto& shard : file.shards()) EXPECT_EQ(shard.file_size, shard.data_offset) << shard.path;
}

TEST_F(WriterTest, HeaderOnlyWriterRefusesData) {
  Writer w(path("ho.gguf"), {.header_only = true});
  w.add_tensor("a", DType::F32, {4});
  w.begin_data();
  EXPECT_EQ(w.next_tensor(), "");
  const std::vector<uint8_t> bytes(16);
  expect_error([&] { w.write(bytes); }, {"header-only"});
  expect_error([&] { w.write_tensor("a", bytes); }, {"header-only"});
  w.finish();
}

// --- errors ------------------------------------------------------------------------------------

TEST_F(WriterTest, DuplicateKeyIsAnError) {
  const std::string p = path("e.gguf");
  Writer w(p);
  w.set("general.name", Value::string("a"));
  expect_error([&] { w.set("general.name", Value::string("b")); }, {p, "duplicate metadata key 'general.name'"});
}

TEST_F(WriterTest, DuplicateTensorNameIsAnError) {
  const std::string p = path("e.gguf");
  Writer w(p);
  w.add_tensor("a", DType::F32, {4});
  expect_error([&] { w.add_tensor("a", DType::F16, {8}); }, {p, "duplicate tensor name 'a'"});
}

TEST_F(WriterTest, TensorNamesFitGgmlsLimit) {
  const std::string p = path("e.gguf");
  Writer w(p);
  w.add_tensor(std::string(63, 'n'), DType::F32, {4});  // the longest name ggml loads
  expect_error([&] { w.add_tensor(std::string(64, 'n'), DType::F32, {4}); }, {p, "64 bytes", "1 to 63"});
  expect_error([&] { w.add_tensor("", DType::F32, {4}); }, {p, "0 bytes"});
}

TEST_F(WriterTest, ShapeMustBeAWholeNumberOfBlocks) {
  const std::string p = path("e.gguf");
  Writer w(p);
  expect_error([&] { w.add_tensor("q", DType::Q4_K, {100, 2}); }, {p, "'q'", "Q4_K", "100", "256"});
  expect_error([&] { w.add_tensor("q8", DType::Q8_0, {33}); }, {p, "'q8'", "32"});
  w.add_tensor("ok", DType::Q4_K, {512, 3});
}

TEST_F(WriterTest, DimensionCountMustBeOneToFour) {
  const std::string p = path("e.gguf");
  Writer w(p);
  expect_error([&] { w.add_tensor("none", DType::F32, {}); }, {p, "'none'", "0 dimensions"});
  expect_error([&] { w.add_tensor("five", DType::F32, {1, 1, 1, 1, 1}); }, {p, "'five'", "5 dimensions"});
  expect_error([&] { w.add_tensor("neg", DType::F32, {4, -1}); }, {p, "'neg'", "negative"});
  expect_error([&] { w.add_tensor("huge", DType::F32, {1ll << 40, 1ll << 40}); }, {p, "'huge'"});
}

TEST_F(WriterTest, BadAlignmentIsAnError) {
  expect_error([&] { Writer w(path("e.gguf"), {.alignment = 0}); }, {"alignment 0"});
  expect_error([&] { Writer w(path("e.gguf"), {.alignment = 48}); }, {"alignment 48"});
  expect_error([&] { Writer w(path("e.gguf"), {.alignment = 1ull << 32}); }, {"alignment"});
  Writer w(path("e.gguf"), {.alignment = 64});
  expect_error([&] { w.set("general.alignment", Value::scalar<uint32_t>(32)); }, {"general.alignment"});
  expect_error([&] { w.set("general.alignment", Value::scalar<uint64_t>(64)); }, {"general.alignment"});
}

TEST_F(WriterTest, SplitKeysAreTheWritersWhenSplitting) {
  Writer w(path("e.gguf"), {.split_max_bytes = 1000});
  expect_error([&] { w.set("split.no", Value::scalar<uint16_t>(0)); }, {"split.no"});
  expect_error([&] { w.set("split.count", Value::scalar<uint16_t>(1)); }, {"split.count"});
  expect_error([&] { w.set("split.tensors.count", Value::scalar<int32_t>(1)); }, {"split.tensors.count"});
}

TEST_F(WriterTest, DeclarationsAfterBeginDataAreErrors) {
  const std::string p = path("e.gguf");
  Writer w(p);
  w.begin_data();
  expect_error([&] { w.set("x", Value::scalar<uint8_t>(1)); }, {p, "after begin_data"});
  expect_error([&] { w.add_tensor("t", DType::F32, {4}); }, {p, "after begin_data"});
  expect_error([&] { w.begin_data(); }, {p, "twice"});
  w.finish();
}

TEST_F(WriterTest, WritingBeforeBeginDataIsAnError) {
  const std::string p = path("e.gguf");
  Writer w(p);
  w.add_tensor("a", DType::F32, {4});
  const std::vector<uint8_t> bytes(16);
  expect_error([&] { w.write(bytes); }, {p, "before begin_data"});
}

TEST_F(WriterTest, WritingMoreBytesThanDeclaredIsAnError) {
  const auto tensors = sample_tensors();
  const std::string p = path("e.gguf");
  Writer w(p);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
  w.begin_data();
  for (size_t i = 0; i + 1 < tensors.size(); ++i) w.write_tensor(tensors[i].name, tensors[i].bytes);
  // One byte too many in the last chunk: refused before anything is written.
  std::vector<uint8_t> too_long = tensors.back().bytes;
  too_long.push_back(0);
  expect_error([&] { w.write(too_long); }, {p, "34 bytes", "33 bytes", "output.weight"});
  w.write(tensors.back().bytes);
  expect_error([&] { w.write(std::vector<uint8_t>(1)); }, {p, "after all tensor data"});
  w.finish();
  expect_tensors(File::open(p), tensors);  // the refused chunks left no trace
}

TEST_F(WriterTest, TensorsOutOfOrderAreErrors) {
  const auto tensors = sample_tensors();
  const std::string p = path("e.gguf");
  Writer w(p);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
  w.begin_data();
  expect_error([&] { w.write_tensor(tensors[1].name, tensors[1].bytes); },
               {p, "'blk.0.attn_norm.weight' written out of order", "'token_embd.weight' is due"});
  expect_error([&] { w.write_tensor("nope", tensors[0].bytes); }, {p, "'nope'", "no such tensor"});
  expect_error([&] { w.write_tensor(tensors[0].name, tensors[1].bytes); }, {p, "204 bytes", "got 28"});
  w.write_tensor(tensors[0].name, tensors[0].bytes);
  expect_error([&] { w.write_tensor(tensors[0].name, tensors[0].bytes); }, {p, "written twice"});
  w.write(std::span(tensors[1].bytes).first(5));
  expect_error([&] { w.write_tensor(tensors[1].name, tensors[1].bytes); }, {p, "5 of its 28 bytes"});
}

TEST_F(WriterTest, FinishWithMissingDataIsAnErrorAndLeavesNoFile) {
  const auto tensors = sample_tensors();
  const std::string p = path("e.gguf");
  {
    Writer w(p);
    for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
    w.begin_data();
    w.write_tensor(tensors[0].name, tensors[0].bytes);
    w.write(std::span(tensors[1].bytes).first(10));
    expect_error([&] { w.finish(); }, {p, "'blk.0.attn_norm.weight' has 10 of 28 bytes", "1 of 5 tensors"});
    EXPECT_FALSE(fs::exists(p));
  }
  EXPECT_TRUE(files().empty());
}

TEST_F(WriterTest, FinishCanFollowAMissingDataError) {
  const auto tensors = sample_tensors();
  const std::string p = path("e.gguf");
  Writer w(p);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
  w.begin_data();
  EXPECT_THROW(w.finish(), Error);
  for (const auto& t : tensors) w.write_tensor(t.name, t.bytes);
  w.finish();
  expect_tensors(File::open(p), tensors);
}

TEST_F(WriterTest, UncreatableOutputIsAnError) {
  const std::string p = path("no/such/dir/m.gguf");
  Writer w(p);
  w.add_tensor("a", DType::F32, {4});
  expect_error([&] { w.begin_data(); }, {p, "cannot create", "No such file or directory"});
}

TEST_F(WriterTest, DiskFullIsAnError) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // The writer's temporary file is a link to /dev/full, where every write fails with ENOSPC.
  const std::string p = path("full.gguf");
  fs::create_symlink("/dev/full", p + ".tmp");
  const auto big = make_tensor("big", DType::F32, {1 << 20}, 7);  // 4 MiB, past any stdio buffer
  {
    Writer w(p);
    w.add_tensor(big.name, big.type, big.shape);
    expect_error(
        [&] {
          w.begin_data();
          w.write_tensor(big.name, big.bytes);
          w.finish();
        },
        {p, "No space left on device"});
    expect_error([&] { w.write(big.bytes); }, {p, "earlier write error"});
    expect_error([&] { w.finish(); }, {p, "earlier write error"});
  }
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(WriterTest, DiskFullAtTheLastFlushIsAnError) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // A small file stays in the stdio buffer until fclose: that is where the error must be caught.
  const std::string p = path("full.gguf");
  fs::create_symlink("/dev/full", p + ".tmp");
  Writer w(p);
  w.set("x", Value::scalar<uint8_t>(1));
  w.begin_data();
  expect_error([&] { w.finish(); }, {p, "No space left on device"});
  EXPECT_FALSE(fs::exists(p));
}

// --- temporary files and cleanup ---------------------------------------------------------------

TEST_F(WriterTest, FinalNameAppearsOnlyAtFinish) {
  const auto tensors = sample_tensors();
  const std::string p = path("m.gguf");
  Writer w(p);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
  w.begin_data();
  for (const auto& t : tensors) w.write_tensor(t.name, t.bytes);
  EXPECT_FALSE(fs::exists(p));
  EXPECT_TRUE(fs::exists(p + ".tmp"));
  w.finish();
  EXPECT_TRUE(fs::exists(p));
  EXPECT_EQ(files(), std::vector<std::string>{"m.gguf"});
}

TEST_F(WriterTest, UnfinishedWriterRemovesPartialOutputs) {
  const auto tensors = sample_tensors();
  {
    Writer w(path("split.gguf"), {.split_max_bytes = 100});  // five shards
    for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
    w.begin_data();
    for (size_t i = 0; i < 3; ++i) w.write_tensor(tensors[i].name, tensors[i].bytes);
    EXPECT_EQ(files().size(), 3u);  // three shards begun, as .tmp
  }
  EXPECT_TRUE(files().empty());
  {
    Writer w(path("declared.gguf"));  // never begun: nothing to remove, nothing created
    w.add_tensor("a", DType::F32, {4});
  }
  EXPECT_TRUE(files().empty());
}

TEST_F(WriterTest, UnfinishedWriterKeepsAnExistingFile) {
  const std::string p = path("m.gguf");
  write_file(p, sample_tensors());
  const std::vector<uint8_t> before = read_all(p);
  {
    Writer w(p);
    w.add_tensor("a", DType::F32, {4});
    w.begin_data();
  }
  EXPECT_EQ(read_all(p), before);
  EXPECT_EQ(files(), std::vector<std::string>{"m.gguf"});
}

TEST_F(WriterTest, FinishIsIdempotentAndWritesAfterItAreErrors) {
  const std::string p = path("m.gguf");
  Writer w(p);
  w.add_tensor("a", DType::F32, {4});
  w.begin_data();
  w.write(std::vector<uint8_t>(16, 1));
  w.finish();
  w.finish();
  expect_error([&] { w.write(std::vector<uint8_t>(1)); }, {p, "after finish"});
  EXPECT_TRUE(fs::exists(p));
}

}  // namespace
}  // namespace velocity::gguf
