// SafetensorsFile and SafetensorsModel on files built byte by byte here, as the format defines
// them (u64 LE header size, JSON header, data buffer), with the element bytes written by hand:
// F32 1.0 = 00 00 80 3f, F16 1.0 = 00 3c, BF16 1.0 = 80 3f, I64 -2 = fe ff ff ff ff ff ff ff.
#include "tools/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"

namespace velocity::tools {
namespace {

namespace fs = std::filesystem;

std::string u64_le(uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += char((v >> (8 * i)) & 0xff);
  return out;
}

// A whole file: the header size, the header, the data buffer.
std::string st_file(const std::string& header, const std::string& data = "") {
  return u64_le(header.size()) + header + data;
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

SafetensorsFile parse(const std::string& bytes) { return SafetensorsFile::parse(as_bytes(bytes), "test.safetensors"); }

// The message of the Error parse throws; fails the test when it succeeds or throws anything else.
std::string parse_error(const std::string& bytes) {
  try {
    SafetensorsFile::parse(as_bytes(bytes), "hostile.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

// Five tensors out of offset order, metadata, and space padding to a multiple of 8.
const std::string kValidHeader =
    R"({"__metadata__":{"format":"pt","note":"hi"},)"
    R"("d":{"dtype":"I64","shape":[1],"data_offsets":[14,22]},)"
    R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
    R"("b":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]},)"
    R"("c":{"dtype":"BF16","shape":[],"data_offsets":[12,14]},)"
    R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[22,22]}}   )";
const std::string kValidData = std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8)  // a: 1.0f, 2.0f
                               + std::string("\x00\x3c\x00\xc0", 4)                // b: 1.0h, -2.0h
                               + std::string("\x80\x3f", 2)                        // c: 1.0bf
                               + std::string("\xfe\xff\xff\xff\xff\xff\xff\xff", 8);  // d: -2

TEST(SafetensorsFile, ParsesValidFile) {
  const std::string bytes = st_file(kValidHeader, kValidData);
  const SafetensorsFile f = parse(bytes);
  const uint64_t data_start = 8 + kValidHeader.size();
  EXPECT_EQ(f.header_size(), kValidHeader.size());
  ASSERT_EQ(f.tensors().size(), 5u);
  // Offset order; "e" (empty) sorts after "d" at offset 22.
  const char* names[] = {"a", "b", "c", "d", "e"};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(f.tensors()[i].name, names[i]);

  const SafeTensor* a = f.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, SafeDType::F32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(a->n_elements, 2);
  EXPECT_EQ(a->file_offset, data_start);
  ASSERT_EQ(a->data.size(), 8u);
  float af[2];
  std::memcpy(af, a->data.data(), 8);
  EXPECT_EQ(af[0], 1.0f);
  EXPECT_EQ(af[1], 2.0f);

  const SafeTensor* b = f.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, SafeDType::F16);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(b->data.size(), 4u);
  EXPECT_EQ(b->data[1], 0x3c);
  EXPECT_EQ(b->data[3], 0xc0);

  const SafeTensor* c = f.find("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->dtype, SafeDType::BF16);
  EXPECT_TRUE(c->shape.empty());  // scalar
  EXPECT_EQ(c->n_elements, 1);
  EXPECT_EQ(c->begin, 12u);
  EXPECT_EQ(c->end, 14u);
  EXPECT_EQ(c->data[0], 0x80);
  EXPECT_EQ(c->data[1], 0x3f);

  const SafeTensor* d = f.find("d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->dtype, SafeDType::I64);
  int64_t dv = 0;
  std::memcpy(&dv, d->data.data(), 8);
  EXPECT_EQ(dv, -2);
  EXPECT_EQ(d->file_offset, data_start + 14);

  const SafeTensor* e = f.find("e");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(e->n_elements, 0);
  EXPECT_TRUE(e->data.empty());

  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_EQ(f.find("__metadata__"), nullptr);
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "hi");
}

TEST(SafetensorsFile, HeaderSizeIsLittleEndianU64) {
  // "{}" padded to 8 bytes: header size 8 written out byte by byte; no tensors, empty buffer.
  const std::string bytes = std::string("\x08\x00\x00\x00\x00\x00\x00\x00", 8) + "{}      ";
  const SafetensorsFile f = parse(bytes);
  EXPECT_EQ(f.header_size(), 8u);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
}

TEST(SafetensorsFile, DTypeNamesAndSizes) {
  EXPECT_EQ(safe_dtype_from_name("F32"), SafeDType::F32);
  EXPECT_EQ(safe_dtype_from_name("F8_E4M3"), SafeDType::F8_E4M3);
  EXPECT_EQ(safe_dtype_from_name("f32"), std::nullopt);  // names are case-sensitive, as upstream
  EXPECT_EQ(safe_dtype_size(SafeDType::BF16), 2);
  EXPECT_EQ(safe_dtype_size(SafeDType::F64), 8);
  EXPECT_EQ(safe_dtype_size(SafeDType::BOOL), 1);
  EXPECT_EQ(safe_dtype_name(SafeDType::I64), "I64");
}

TEST(SafetensorsFile, MetadataNullAndUnknownFieldsAccepted) {
  const std::string bytes = st_file(
      R"({"__metadata__":null,"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"extra":[1]}})", "xy");
  const SafetensorsFile f = parse(bytes);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_TRUE(f.metadata().empty());
}

TEST(SafetensorsFile, ZeroSizeTensorsShareAnOffset) {
  const std::string bytes = st_file(
      R"({"z1":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},)"
      R"("z2":{"dtype":"F64","shape":[3,0],"data_offsets":[1,1]},"z3":{"dtype":"I32","shape":[0],"data_offsets":[1,1]}})",
      "q");
  const SafetensorsFile f = parse(bytes);
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.tensors()[0].name, "z1");
  EXPECT_EQ(f.tensors()[1].name, "a");
}

struct Hostile {
  const char* what;
  std::string bytes;
  const char* expect;  // substring of the message
};

std::string one(const std::string& entry, const std::string& data = std::string(8, '\0')) {
  return st_file(R"({"t":)" + entry + "}", data);
}

TEST(SafetensorsHostile, EveryCaseIsAnErrorNamingFileAndProblem) {
  const std::string f32x2 = R"("dtype":"F32","shape":[2],)";
  const std::vector<Hostile> cases = {
      {"empty file", "", "too short for the 8-byte header size"},
      {"truncated header size", std::string("\x02\x00\x00", 3), "too short for the 8-byte header size"},
      {"header size past end", u64_le(100) + "{}", "header size 100 runs past the end of the file"},
      {"header size over 100 MB", u64_le(100'000'001) + "{}", "over the 100000000 byte limit"},
      {"header size 2^64-1", u64_le(~uint64_t(0)) + "{}", "over the 100000000 byte limit"},
      {"empty header", st_file(""), "does not start with '{'"},
      {"leading space", st_file(" {}"), "does not start with '{'"},
      {"JSON array", st_file("[]"), "does not start with '{'"},
      {"not JSON", st_file("{abc}"), "header is not valid JSON"},
      {"unterminated", st_file("{\"a\":"), "header is not valid JSON"},
      {"trailing garbage", st_file("{} x"), "header is not valid JSON"},
      {"NUL padding", st_file(std::string("{}\0\0", 4)), "at byte 10: header is not valid JSON: NUL byte"},
      {"NUL then garbage", st_file(std::string("{}\0x", 4)), "header is not valid JSON: NUL byte"},
      {"invalid UTF-8", st_file("{\"\xff\":1}"), "header is not valid JSON"},
      {"entry not object", one(R"("F32")"), "entry is a JSON string, expected an object"},
      {"missing dtype", one(R"({"shape":[2],"data_offsets":[0,8]})"), "field \"dtype\" is missing"},
      {"missing shape", one(R"({"dtype":"F32","data_offsets":[0,8]})"), "field \"shape\" is missing"},
      {"missing offsets", one(R"({"dtype":"F32","shape":[2]})"), "field \"data_offsets\" is missing"},
      {"dtype number", one(R"({"dtype":5,"shape":[2],"data_offsets":[0,8]})"), "\"dtype\" is a JSON number"},
      {"unknown dtype", one(R"({"dtype":"F33","shape":[2],"data_offsets":[0,8]})"), "unknown dtype 'F33'"},
      {"lowercase dtype", one(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})"), "unknown dtype 'f32'"},
      {"sub-byte dtype", one(R"({"dtype":"F4","shape":[16],"data_offsets":[0,8]})"), "sub-byte dtype 'F4'"},
      {"shape string", one(R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})"), "\"shape\" is a JSON string"},
      {"shape float", one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), "\"shape\"[0]: 2.0 is not a non-negative integer"},
      {"negative dim", one(R"({"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]})"), "\"shape\"[1]: -1 is not a non-negative integer"},
      {"dim 2^64-1", one(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})"), "dimension 18446744073709551615 is too large"},
      {"dim past u64", one(R"({"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]})"), "is not a non-negative integer"},
      {"product overflow", one(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]})"), "overflows 64 bits"},
      {"overflow then 0", one(R"({"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]})", ""), "overflows 64 bits"},
      {"bytes overflow", one(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]})"), "overflow 64 bits of bytes"},
      {"offsets string", one(R"({"dtype":"F32","shape":[2],"data_offsets":"0,8"})"), "expected an array [begin, end]"},
      {"offsets one", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), "expected an array [begin, end]"},
      {"offsets three", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), "expected an array [begin, end]"},
      {"offset string", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,"8"]})"), "expected two non-negative integers"},
      {"offset negative", one(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), "expected two non-negative integers"},
      {"begin after end", one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), "begin is after end"},
      {"size mismatch", one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), "span 8 bytes, but shape [3] of F32 needs 12 bytes"},
      {"past the end", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", "abcd"), "ends past the data buffer, which holds 4 bytes"},
      {"huge end", one(R"({"dtype":"F32","shape":[2],"data_offsets":[18446744073709551607,18446744073709551615]})"), "ends past the data buffer"},
      {"not covered", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", std::string(12, 'x')), "data bytes [8, 12) belong to no tensor (the data buffer is not fully covered)"},
      {"no tensors, data", st_file("{}", "x"), "data bytes [0, 1) belong to no tensor"},
      {"gap at start", one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), "data bytes [0, 4) belong to no tensor (gap before tensor 't')"},
      {"gap", st_file(R"({"a":{)" + f32x2 + R"("data_offsets":[0,8]},"b":{)" + f32x2 + R"("data_offsets":[12,20]}})", std::string(20, 'x')), "data bytes [8, 12) belong to no tensor (gap before tensor 'b')"},
      {"overlap", st_file(R"({"a":{)" + f32x2 + R"("data_offsets":[0,8]},"b":{)" + f32x2 + R"("data_offsets":[4,12]}})", std::string(12, 'x')), "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
      {"same range", st_file(R"({"a":{)" + f32x2 + R"("data_offsets":[0,8]},"b":{)" + f32x2 + R"("data_offsets":[0,8]}})", std::string(8, 'x')), "overlap tensor 'a'"},
      {"empty inside", st_file(R"({"a":{)" + f32x2 + R"("data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", std::string(8, 'x')), "tensor 'z': data_offsets [4, 4] overlap tensor 'a'"},
      {"duplicate name", st_file(R"({"a":{)" + f32x2 + R"("data_offsets":[0,8]},"a":{)" + f32x2 + R"("data_offsets":[8,16]}})", std::string(16, 'x')), "key 'a' appears twice (duplicate tensor name)"},
      {"duplicate field", one(R"({"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]})"), "key 'dtype' appears twice in one JSON object"},
      {"duplicate metadata", st_file(R"({"__metadata__":{"k":"1","k":"2"}})"), "key 'k' appears twice"},
      {"duplicate __metadata__", st_file(R"({"__metadata__":{},"__metadata__":{}})"), "key '__metadata__' appears twice"},
      {"nested shape", one(R"({"dtype":"F32","shape":[[2]],"data_offsets":[0,8]})"), "nested deeper than 3 levels"},
      {"deep nesting", st_file(std::string("{\"a\":") + std::string(100000, '[') + std::string(100000, ']') + "}"), "nested deeper than 3 levels"},
      {"metadata array", st_file(R"({"__metadata__":["a"]})"), "field \"__metadata__\" is a JSON array"},
      {"metadata number", st_file(R"({"__metadata__":{"k":1}})"), "field \"__metadata__\"['k'] is a JSON number, expected a string"},
      {"control chars in name", st_file("{\"a\\n\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}"), "tensor 'a\\x0a': field \"dtype\": unknown dtype 'X'"},
  };
  for (const Hostile& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string message = parse_error(c.bytes);
    EXPECT_NE(message.find("hostile.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find(c.expect), std::string::npos) << message;
  }
}

TEST(SafetensorsHostile, ErrorsCiteByteOffsets) {
  EXPECT_NE(parse_error(st_file("{abc}")).find("hostile.safetensors: at byte 9: header is not valid JSON"),
            std::string::npos);
  EXPECT_NE(parse_error(u64_le(100) + "{}").find("hostile.safetensors: at byte 0: "), std::string::npos);
  const std::string header = R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_NE(parse_error(st_file(header, std::string(8, 'x'))).find(fmt::format("at byte {}: data bytes [0, 4)", 8 + header.size())),
            std::string::npos);
}

TEST(SafetensorsHostile, EveryTruncationIsAnError) {
  const std::string bytes = st_file(kValidHeader, kValidData);
  for (size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE(n);
    const std::string prefix = bytes.substr(0, n);
    EXPECT_THROW(SafetensorsFile::parse(as_bytes(prefix), "cut.safetensors"), Error);
  }
  EXPECT_NO_THROW(parse(bytes));
}

TEST(SafetensorsHostile, EveryByteMutationParsesOrThrowsError) {
  // Not a crash, not another exception type: each byte replaced by a few values.
  const std::string bytes = st_file(kValidHeader, kValidData);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (const char v : {'\0', '\xff', '{', '"', '9', '-', ']'}) {
      std::string m = bytes;
      m[i] = v;
      try {
        const SafetensorsFile f = SafetensorsFile::parse(as_bytes(m), "mut.safetensors");
        for (const SafeTensor& t : f.tensors()) ASSERT_LE(t.file_offset + t.data.size(), m.size());
      } catch (const Error&) {
      }
    }
  }
}

TEST(SafetensorsHostile, ManyTensorsParseInLinearTime) {
  // Regression: nlohmann's callback parser rescans the parent object after each tensor entry
  // (quadratic: 36k tensors took 4 s, 1.7M would take hours). 200k entries, about 12 MB.
  constexpr int kTensors = 200'000;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i)
    header += fmt::format(R"({}"t{}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})", i ? "," : "", i);
  header += "}";
  const std::string bytes = st_file(header);
  const auto start = std::chrono::steady_clock::now();
  const SafetensorsFile f = parse(bytes);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(f.tensors().size(), size_t(kTensors));
  EXPECT_LT(seconds, 30.0);  // about 1 s on a loaded 2-core machine; the quadratic parser took minutes
}

class SafetensorsModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("velocity-st-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& bytes) {
    std::ofstream out(dir_ / name, std::ios::binary);
    out.write(bytes.data(), std::streamsize(bytes.size()));
  }
  // A shard holding F32 scalars with the given names, each its own value 1.0.
  void write_shard(const std::string& name, const std::vector<std::string>& tensors) {
    std::string header = "{";
    std::string data;
    for (size_t i = 0; i < tensors.size(); ++i) {
      header += fmt::format(R"({}"{}":{{"dtype":"F32","shape":[],"data_offsets":[{},{}]}})", i ? "," : "", tensors[i],
                            4 * i, 4 * i + 4);
      data += std::string("\x00\x00\x80\x3f", 4);
    }
    write(name, st_file(header + "}", data));
  }
  std::string open_error() {
    try {
      SafetensorsModel::open_dir(dir_.string());
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
  }

  fs::path dir_;
};

const char* kIndex = R"({"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
                     R"("b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}})";

TEST_F(SafetensorsModelTest, OpensSingleFile) {
  write("model.safetensors", st_file(kValidHeader, kValidData));
  write("model.safetensors.index.json", "not read when model.safetensors exists");
  const SafetensorsModel m = SafetensorsModel::open_dir(dir_.string());
  ASSERT_EQ(m.shards.size(), 1u);
  ASSERT_EQ(m.tensors.size(), 5u);
  ASSERT_NE(m.find("d"), nullptr);
  EXPECT_EQ(m.find("d")->tensor->dtype, SafeDType::I64);
  EXPECT_EQ(m.find("zz"), nullptr);
}

TEST_F(SafetensorsModelTest, OpensShardedModel) {
  write_shard("model-00001-of-00002.safetensors", {"a", "c"});
  write_shard("model-00002-of-00002.safetensors", {"b"});
  write("model.safetensors.index.json", kIndex);
  const SafetensorsModel m = SafetensorsModel::open_dir(dir_.string());
  ASSERT_EQ(m.shards.size(), 2u);
  ASSERT_EQ(m.tensors.size(), 3u);
  EXPECT_EQ(m.tensors[0].tensor->name, "a");
  EXPECT_EQ(m.tensors[1].tensor->name, "c");
  EXPECT_EQ(m.tensors[2].tensor->name, "b");
  ASSERT_NE(m.find("b"), nullptr);
  EXPECT_EQ(m.find("b")->shard, 1u);
  EXPECT_NE(m.shards[1]->name().find("model-00002-of-00002.safetensors"), std::string::npos);
  float v = 0;
  std::memcpy(&v, m.find("c")->tensor->data.data(), 4);
  EXPECT_EQ(v, 1.0f);
}

TEST_F(SafetensorsModelTest, EmptyDirectory) {
  EXPECT_NE(open_error().find("no model.safetensors or model.safetensors.index.json"), std::string::npos);
}

TEST_F(SafetensorsModelTest, MissingShard) {
  write_shard("model-00001-of-00002.safetensors", {"a", "c"});
  write("model.safetensors.index.json", kIndex);
  const std::string e = open_error();
  EXPECT_NE(e.find("model.safetensors.index.json: field \"weight_map\"['b'] names shard "
                   "'model-00002-of-00002.safetensors', which does not exist"),
            std::string::npos)
      << e;
}

TEST_F(SafetensorsModelTest, TensorMissingFromItsShard) {
  write_shard("model-00001-of-00002.safetensors", {"a"});
  write_shard("model-00002-of-00002.safetensors", {"b", "c"});
  write("model.safetensors.index.json", kIndex);
  const std::string e = open_error();
  EXPECT_NE(e.find("field \"weight_map\"['c']: tensor is not in shard"), std::string::npos) << e;
  EXPECT_NE(e.find("model-00001-of-00002.safetensors"), std::string::npos) << e;
}

TEST_F(SafetensorsModelTest, TensorInTwoShards) {
  write_shard("model-00001-of-00002.safetensors", {"a", "c"});
  write_shard("model-00002-of-00002.safetensors", {"b", "a"});
  write("model.safetensors.index.json", kIndex);
  const std::string e = open_error();
  EXPECT_NE(e.find("model-00002-of-00002.safetensors: tensor 'a' is also in shard"), std::string::npos) << e;
}

TEST_F(SafetensorsModelTest, TensorNotListed) {
  write_shard("model-00001-of-00002.safetensors", {"a", "c", "x"});
  write_shard("model-00002-of-00002.safetensors", {"b"});
  write("model.safetensors.index.json", kIndex);
  const std::string e = open_error();
  EXPECT_NE(e.find("tensor 'x' is not listed in"), std::string::npos) << e;
}

TEST_F(SafetensorsModelTest, HostileIndex) {
  write_shard("model-00001-of-00001.safetensors", {"a"});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "index is not valid JSON"},
      {"[]", "index is a JSON array, expected an object"},
      {R"({"metadata":{}})", "field \"weight_map\" is missing"},
      {R"({"weight_map":[]})", "field \"weight_map\" is a JSON array"},
      {R"({"weight_map":{}})", "field \"weight_map\" lists no tensors"},
      {R"({"weight_map":{"a":1}})", "field \"weight_map\"['a'] is a JSON number"},
      {R"({"weight_map":{"a":"../model-00001-of-00001.safetensors"}})", "is not a file name inside the model directory"},
      {R"({"weight_map":{"a":"/etc/passwd"}})", "is not a file name inside the model directory"},
      {R"({"weight_map":{"a":"model-00001-of-00001.safetensors","a":"model-00001-of-00001.safetensors"}})",
       "key 'a' appears twice"},
  };
  for (const auto& [index, expect] : cases) {
    SCOPED_TRACE(index);
    write("model.safetensors.index.json", index);
    const std::string e = open_error();
    EXPECT_NE(e.find("model.safetensors.index.json"), std::string::npos) << e;
    EXPECT_NE(e.find(expect), std::string::npos) << e;
  }
}

TEST_F(SafetensorsModelTest, BadShardNamesTheShard) {
  write("model-00001-of-00001.safetensors", st_file("{}", "xx"));
  write("model.safetensors.index.json", R"({"weight_map":{"a":"model-00001-of-00001.safetensors"}})");
  const std::string e = open_error();
  EXPECT_NE(e.find("model-00001-of-00001.safetensors: at byte 10: data bytes [0, 2) belong to no tensor"),
            std::string::npos)
      << e;
}

}  // namespace
}  // namespace velocity::tools
