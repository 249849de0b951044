// Split models: "<prefix>-0000i-of-0000N.gguf", opened through the first shard and read as one
// tensor table; every inconsistency between shards is an Error naming the file at fault.
#include <gtest/gtest.h>

#include <filesystem>

#include "gguf/file.h"
#include "reader_image.h"

namespace velocity::gguf {
namespace {

using test::Buf;
using test::Image;

TEST(SplitNaming, SplitPath) {
  EXPECT_EQ(split_path("dir/model", 1, 3), "dir/model-00001-of-00003.gguf");
  EXPECT_EQ(split_path("m", 12, 123456), "m-00012-of-123456.gguf");
}

TEST(SplitNaming, ParseSplitPath) {
  const SplitName s = parse_split_path("/a/b/model-q4-00002-of-00003.gguf");
  EXPECT_EQ(s.prefix, "/a/b/model-q4");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 3);
  const SplitName big = parse_split_path("m-100000-of-100001.gguf");
  EXPECT_EQ(big.index, 100000);
  EXPECT_EQ(big.count, 100001);
  for (const char* not_split :
       {"model.gguf", "model-1-of-3.gguf", "model-00004-of-00003.gguf", "model-00000-of-00003.gguf",
        "model-00001-of-00000.gguf", "model-00001-of-00003.gguf.bak", "model-00001-00003.gguf",
        "model00001-of-00003.gguf", "model-000001-of-00003.gguf", "model-00001-of-00003.GGUF", "", ".gguf", "-of-.gguf",
        "model-99999999999-of-99999999999.gguf"})
    EXPECT_EQ(parse_split_path(not_split).index, 0) << not_split;
}

// Shard `no` (0-based) of `count`, with split keys as the ecosystem writes them.
Image shard(int no, int count, int32_t total_tensors) {
  Image im;
  if (no == 0) im.kv_string("general.architecture", "llama").kv_scalar<uint32_t>("llama.block_count", 2);
  im.kv_scalar<uint16_t>("split.no", (uint16_t)no)
      .kv_scalar<uint16_t>("split.count", (uint16_t)count)
      .kv_scalar<int32_t>("split.tensors.count", total_tensors);
  return im;
}

struct ThreeShards {
  Image shards[3] = {shard(0, 3, 5), shard(1, 3, 5), shard(2, 3, 5)};
  ThreeShards() {
    shards[0].tensor("token_embd.weight", DType::F32, {4, 8}).tensor("blk.0.attn_q.weight", DType::Q8_0, {32, 4});
    shards[1].tensor("blk.1.attn_q.weight", DType::Q4_0, {64, 2}).tensor("blk.1.ffn.weight", DType::F16, {16});
    shards[2].tensor("output.weight", DType::Q4_K, {256, 2});
  }
  // Writes the shards under dir/model-0000i-of-00003.gguf; returns the first shard's path.
  std::string write(const test::TempDir& dir) const {
    for (int i = 0; i < 3; ++i) test::write_file(split_path(dir.file("model"), i + 1, 3), shards[i].build());
    return split_path(dir.file("model"), 1, 3);
  }
};

std::string error_of_open(const std::string& path) {
  try {
    (void)File::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(opened without error)";
}

void expect_error(const std::string& path, const std::string& file, std::string_view what) {
  const std::string msg = error_of_open(path);
  EXPECT_EQ(msg.rfind(file + ": at byte ", 0), 0u) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << "wanted '" << what << "' in: " << msg;
}

TEST(Split, ThreeShardsReadAsOneTable) {
  test::TempDir dir;
  const ThreeShards model;
  const std::string first = model.write(dir);
  const File f = File::open(first);
  ASSERT_EQ(f.shards().size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(f.shards()[i].path, split_path(dir.file("model"), i + 1, 3));
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.at("llama.block_count").get<uint32_t>(), 2u);
  EXPECT_EQ(f.at("split.no").get<uint16_t>(), 0);  // metadata is the first shard's
  ASSERT_EQ(f.tensors().size(), 5u);
  const uint32_t want_shard[] = {0, 0, 1, 1, 2};
  const size_t index_in_shard[] = {0, 1, 0, 1, 0};
  for (size_t i = 0; i < 5; ++i) {
    const TensorInfo& t = f.tensors()[i];
    EXPECT_EQ(t.shard, want_shard[i]) << t.name;
    EXPECT_EQ(f.find_tensor(t.name), &t);
    const auto offsets = model.shards[t.shard].offsets();
    EXPECT_EQ(t.offset, offsets[index_in_shard[i]]) << t.name;
    EXPECT_EQ(t.file_offset, f.shards()[t.shard].data_offset + t.offset);
    ASSERT_EQ(t.bytes().size(), t.n_bytes);
    for (uint64_t j = 0; j < t.n_bytes; ++j) ASSERT_EQ(t.bytes()[j], Image::pattern(index_in_shard[i], j)) << t.name;
  }
  EXPECT_EQ(f.find_tensor("output.weight")->type, DType::Q4_K);
}

TEST(Split, MissingShard) {
  test::TempDir dir;
  const std::string first = ThreeShards().write(dir);
  std::filesystem::remove(split_path(dir.file("model"), 3, 3));
  expect_error(first, first, "split.count is 3 but shard 3 cannot be opened");
}

TEST(Split, ShardWithTheWrongSplitCount) {
  test::TempDir dir;
  ThreeShards model;
  model.shards[1] = shard(1, 4, 5);
  model.shards[1].tensor("blk.1.attn_q.weight", DType::Q4_0, {64, 2}).tensor("blk.1.ffn.weight", DType::F16, {16});
  const std::string first = model.write(dir);
  expect_error(first, split_path(dir.file("model"), 2, 3), "split.count is 4 but the first shard");
}

TEST(Split, ShardWithTheWrongSplitNo) {
  test::TempDir dir;
  ThreeShards model;
  model.shards[2] = shard(1, 3, 5);
  model.shards[2].tensor("output.weight", DType::Q4_K, {256, 2});
  const std::string first = model.write(dir);
  expect_error(first, split_path(dir.file("model"), 3, 3), "split.no is 1 but this file is shard 3 of 3 (split.no 2)");
}

TEST(Split, ShardWithoutSplitKeys) {
  test::TempDir dir;
  ThreeShards model;
  model.shards[1] = Image();
  model.shards[1].tensor("blk.1.attn_q.weight", DType::Q4_0, {64, 2}).tensor("blk.1.ffn.weight", DType::F16, {16});
  const std::string first = model.write(dir);
  expect_error(first, split_path(dir.file("model"), 2, 3), "shard 2 of 3 lacks the split.no or split.count key");
}

TEST(Split, TensorCountMismatch) {
  test::TempDir dir;
  ThreeShards model;
  model.shards[0] = shard(0, 3, 6);
  model.shards[0].tensor("token_embd.weight", DType::F32, {4, 8}).tensor("blk.0.attn_q.weight", DType::Q8_0, {32, 4});
  const std::string first = model.write(dir);
  expect_error(first, first, "split.tensors.count is 6 but the 3 shard(s) hold 5 tensors");
}

TEST(Split, DuplicateTensorAcrossShards) {
  test::TempDir dir;
  ThreeShards model;
  model.shards[2] = shard(2, 3, 5);
  model.shards[2].tensor("blk.0.attn_q.weight", DType::Q4_K, {256, 2});
  const std::string first = model.write(dir);
  expect_error(first, split_path(dir.file("model"), 3, 3),
               "duplicate tensor name 'blk.0.attn_q.weight' (first at byte ");
  EXPECT_NE(error_of_open(first).find("of " + first + ")"), std::string::npos) << error_of_open(first);
}

TEST(Split, OpeningAnotherShardPointsToTheFirst) {
  test::TempDir dir;
  ThreeShards model;
  model.shards[1] = shard(1, 3, 5);  // shards other than the first carry split.count too
  model.write(dir);
  const std::string second = split_path(dir.file("model"), 2, 3);
  expect_error(second, second, "this is shard 2 of 3; open the first shard '" + split_path(dir.file("model"), 1, 3));
}

TEST(Split, FirstShardUnderAnotherName) {
  test::TempDir dir;
  const std::string first = ThreeShards().write(dir);
  const std::string renamed = dir.file("model.gguf");
  std::filesystem::copy_file(first, renamed);
  expect_error(renamed, renamed, "open the first shard under its proper name");
  // A name that says a different shard count than the metadata.
  const std::string miscounted = split_path(dir.file("other"), 1, 2);
  std::filesystem::copy_file(first, miscounted);
  expect_error(miscounted, miscounted, "split.count is 3 but the file name says 2 shards");
}

TEST(Split, ParseReadsALoneShard) {
  // parse() reads one image; a shard of a split model read that way is just that shard.
  const ThreeShards model;
  const Buf bytes = model.shards[1].build();
  const File f = File::parse(bytes);
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.at("split.no").get<uint16_t>(), 1);
}

TEST(Split, OneFileWithSplitKeys) {
  test::TempDir dir;
  Image im = shard(0, 1, 1);
  im.tensor("t", DType::F32, {4});
  test::write_file(dir.file("plain.gguf"), im.build());
  EXPECT_EQ(File::open(dir.file("plain.gguf")).tensors().size(), 1u);

  Image wrong = shard(0, 1, 2);
  wrong.tensor("t", DType::F32, {4});
  test::write_file(dir.file("wrong.gguf"), wrong.build());
  expect_error(dir.file("wrong.gguf"), dir.file("wrong.gguf"), "split.tensors.count is 2 but the 1 shard(s) hold 1");
}

TEST(Split, HeaderOnlyShards) {
  test::TempDir dir;
  ThreeShards model;
  model.shards[0].kv("velocity.header_only", ValueType::BOOL, test::body<uint8_t>(1));
  for (auto& s : model.shards) s.data_size = 0;
  const File f = File::open(model.write(dir));
  EXPECT_TRUE(f.header_only());
  ASSERT_EQ(f.tensors().size(), 5u);
  for (const auto& t : f.tensors()) EXPECT_EQ(t.data, nullptr);
}

}  // namespace
}  // namespace velocity::gguf
