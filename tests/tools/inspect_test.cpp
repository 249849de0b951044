// summarize() and inspect_json() on small GGUF files written with gguf::Writer, with every
// expected number worked out here from the declared shapes and dtype_row_bytes.
#include "tools/inspect.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "core/dtype.h"
#include "gguf/writer.h"

namespace velocity::tools {
namespace {

namespace fs = std::filesystem;
using gguf::Value;

struct TensorSpec {
  std::string name;
  DType type;
  std::vector<int64_t> shape;

  uint64_t n_elements() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= (uint64_t)d;
    return n;
  }
  uint64_t row_bytes() const { return (uint64_t)dtype_row_bytes(type, shape.at(0)); }
  uint64_t n_bytes() const { return row_bytes() * (n_elements() / (uint64_t)shape.at(0)); }
};

using Metadata = std::vector<std::pair<std::string, Value>>;

class InspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("velocity-inspect-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a model whose tensor bytes are a repeating pattern; returns the (first) path.
  std::string write(const std::string& name, const Metadata& metadata, const std::vector<TensorSpec>& tensors,
                    gguf::WriterOptions options = {}) {
    const std::string path = (dir_ / name).string();
    gguf::Writer writer(path, options);
    for (const auto& [key, value] : metadata) writer.set(key, value);
    for (const auto& t : tensors) writer.add_tensor(t.name, t.type, t.shape);
    writer.begin_data();
    if (!options.header_only) {
      for (const auto& t : tensors) {
        std::vector<uint8_t> bytes(t.n_bytes());
        for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = (uint8_t)(i * 7);
        writer.write_tensor(t.name, bytes);
      }
    }
    writer.finish();
    return writer.paths().at(0);
  }

  fs::path dir_;
};

// A small llama: 256-wide (one Q4_K/Q6_K block per row), vocabulary of 8.
Metadata llama_metadata() {
  return {
      {"general.architecture", Value::string("llama")},
      {"general.name", Value::string("inspect-test")},
      {"llama.context_length", Value::scalar<uint32_t>(2048)},
      {"llama.embedding_length", Value::scalar<uint32_t>(256)},
      {"llama.block_count", Value::scalar<uint32_t>(1)},
      {"llama.feed_forward_length", Value::scalar<uint32_t>(512)},
      {"llama.attention.head_count", Value::scalar<uint32_t>(4)},
      {"llama.attention.head_count_kv", Value::scalar<uint32_t>(2)},
      {"llama.attention.layer_norm_rms_epsilon", Value::scalar<float>(1e-5f)},
      {"llama.rope.freq_base", Value::scalar<float>(10000.0f)},
      {"llama.custom_thing", Value::scalar<int32_t>(-3)},
      {"tokenizer.ggml.model", Value::string("gpt2")},
      {"tokenizer.ggml.pre", Value::string("llama-bpe")},
      {"tokenizer.ggml.tokens",
       Value::array(std::vector<std::string>{"<s>", "</s>", "a", "b", "ab", "\n", "c", "<pad>"})},
      {"tokenizer.ggml.token_type", Value::array(std::vector<int32_t>{3, 3, 1, 1, 1, 1, 1, 3})},
      {"tokenizer.ggml.merges", Value::array(std::vector<std::string>{"a b"})},
      {"tokenizer.ggml.bos_token_id", Value::scalar<uint32_t>(0)},
      {"tokenizer.ggml.eos_token_id", Value::scalar<uint32_t>(1)},
      {"tokenizer.ggml.padding_token_id", Value::scalar<uint32_t>(7)},
      {"tokenizer.ggml.unknown_token_id", Value::scalar<uint32_t>(99)},  // outside the vocabulary
      {"tokenizer.ggml.add_bos_token", Value::scalar(true)},
      {"tokenizer.chat_template", Value::string("{{ messages }}")},
  };
}

std::vector<TensorSpec> llama_tensors(bool with_output) {
  std::vector<TensorSpec> t = {
      {"token_embd.weight", DType::Q4_K, {256, 8}},
      {"blk.0.attn_norm.weight", DType::F32, {256}},
      {"blk.0.attn_q.weight", DType::Q8_0, {256, 256}},
      {"blk.0.attn_k.weight", DType::Q8_0, {256, 128}},
      {"blk.0.attn_v.weight", DType::Q6_K, {256, 128}},
      {"blk.0.attn_output.weight", DType::Q4_K, {256, 256}},
      {"blk.0.ffn_norm.weight", DType::F32, {256}},
      {"blk.0.ffn_gate.weight", DType::F16, {256, 512}},
      {"blk.0.ffn_up.weight", DType::BF16, {256, 512}},
      {"blk.0.ffn_down.weight", DType::Q4_K, {512, 256}},
      {"output_norm.weight", DType::F32, {256}},
  };
  if (with_output) t.push_back({"output.weight", DType::Q6_K, {256, 8}});
  return t;
}

uint64_t total_bytes(const std::vector<TensorSpec>& tensors) {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.n_bytes();
  return n;
}

uint64_t total_params(const std::vector<TensorSpec>& tensors) {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.n_elements();
  return n;
}

TEST_F(InspectTest, DenseWithOutputReadsOneEmbeddingRow) {
  const auto tensors = llama_tensors(true);
  const auto file = gguf::File::open(write("dense.gguf", llama_metadata(), tensors));
  const ModelSummary s = summarize(file);

  // By hand: Q4_K rows of 256 are 144 bytes; Q8_0 256 -> 8 blocks x 34 = 272; Q6_K 256 -> 210.
  const uint64_t embd_row = 144;
  const uint64_t embd = 144 * 8;
  const uint64_t expected_bytes = embd + 256 * 4 + 272 * 256 + 272 * 128 + 210 * 128 + 144 * 256 + 256 * 4 +
                                  256 * 512 * 2 + 256 * 512 * 2 + 2 * 144 * 256 + 256 * 4 + 210 * 8;
  ASSERT_EQ(expected_bytes, total_bytes(tensors));
  const uint64_t expected_params = 256 * 8 + 256 + 256 * 256 + 256 * 128 * 2 + 256 * 256 + 256 + 256 * 512 * 3 +
                                   256 + 256 * 8;
  ASSERT_EQ(expected_params, total_params(tensors));

  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.n_tensors, tensors.size());
  EXPECT_EQ(s.n_params, expected_params);
  EXPECT_EQ(s.n_bytes, expected_bytes);
  EXPECT_FALSE(s.tied_embeddings);
  EXPECT_EQ(s.bytes_per_token, expected_bytes - embd + embd_row);
  EXPECT_DOUBLE_EQ(s.bits_per_weight, 8.0 * (double)expected_bytes / (double)expected_params);
  EXPECT_EQ(s.n_expert, 0u);
  EXPECT_EQ(s.n_shards, 1u);
  EXPECT_EQ(s.n_file_bytes, fs::file_size(file.shards().at(0).path));

  // Totals by type, ordered by type id: F32 (0), F16 (1), Q8_0 (8), Q4_K (12), Q6_K (14), BF16 (30).
  ASSERT_EQ(s.types.size(), 6u);
  EXPECT_EQ(s.types[0].type, DType::F32);
  EXPECT_EQ(s.types[0].n_tensors, 3u);
  EXPECT_EQ(s.types[0].n_bytes, 3u * 256 * 4);
  EXPECT_EQ(s.types[3].type, DType::Q4_K);
  EXPECT_EQ(s.types[3].n_tensors, 3u);
  EXPECT_EQ(s.types[3].n_params, 256u * 8 + 256 * 256 + 512 * 256);
  EXPECT_EQ(s.types[3].n_bytes, embd + 144u * 256 + 2 * 144 * 256);
  EXPECT_EQ(s.types[5].type, DType::BF16);
}

TEST_F(InspectTest, TiedEmbeddingsReadTheWholeEmbedding) {
  const auto tensors = llama_tensors(false);
  const auto file = gguf::File::open(write("tied.gguf", llama_metadata(), tensors));
  const ModelSummary s = summarize(file);
  EXPECT_TRUE(s.tied_embeddings);
  EXPECT_EQ(s.n_bytes, total_bytes(tensors));
  // Every tensor once, token_embd included in full (the output head reads all of it).
  EXPECT_EQ(s.bytes_per_token, total_bytes(tensors));
}

TEST_F(InspectTest, MoeReadsOnlyTheUsedExperts) {
  const Metadata metadata = {
      {"general.architecture", Value::string("qwen3moe")},
      {"qwen3moe.embedding_length", Value::scalar<uint32_t>(64)},
      {"qwen3moe.expert_count", Value::scalar<uint32_t>(4)},
      {"qwen3moe.expert_used_count", Value::scalar<uint32_t>(2)},
      {"qwen3moe.expert_feed_forward_length", Value::scalar<uint32_t>(32)},
  };
  const std::vector<TensorSpec> tensors = {
      {"token_embd.weight", DType::Q8_0, {64, 10}},              // 2 blocks x 34 = 68 bytes a row
      {"blk.0.ffn_gate_inp.weight", DType::F32, {64, 4}},        // router: read in full
      {"blk.0.ffn_gate_exps.weight", DType::Q8_0, {64, 32, 4}},  // 68 x 32 x 4 = 8704
      {"blk.0.ffn_up_exps.weight", DType::MXFP4, {64, 32, 4}},   // 2 x 17 = 34 a row: 4352
      {"blk.0.ffn_down_exps.weight", DType::F16, {32, 64, 4}},   // 64 a row: 16384
      {"blk.0.ffn_gate_exps.bias", DType::F32, {32, 4}},         // 512: an expert tensor too
      {"blk.0.ffn_up_shexp.weight", DType::Q8_0, {64, 32}},      // shared expert: in full, 2176
      {"blk.0.exp_probs_b.bias", DType::F32, {4}},               // not "_exps": in full, 16
      {"output.weight", DType::Q8_0, {64, 10}},                  // 680
  };
  const auto file = gguf::File::open(write("moe.gguf", metadata, tensors));
  const ModelSummary s = summarize(file);
  EXPECT_EQ(s.n_expert, 4u);
  EXPECT_EQ(s.n_expert_used, 2u);
  const uint64_t experts = 8704 + 4352 + 16384 + 512;
  const uint64_t dense = 64 * 4 * 4 + 2176 + 16 + 680;
  ASSERT_EQ(total_bytes(tensors), 680 + experts + dense);
  EXPECT_EQ(s.n_bytes, 680 + experts + dense);
  EXPECT_EQ(s.bytes_per_token, 68 + dense + experts * 2 / 4);
  EXPECT_EQ(s.n_params, total_params(tensors));

  // Per tensor, in the JSON too.
  const auto j = inspect_json(file);
  EXPECT_EQ(j["tensors"][2]["name"], "blk.0.ffn_gate_exps.weight");
  EXPECT_EQ(j["tensors"][2]["bytes_per_token"], 8704 / 2);
  EXPECT_EQ(j["tensors"][0]["bytes_per_token"], 68);
  EXPECT_EQ(j["summary"]["n_expert_used"], 2);
}

TEST_F(InspectTest, ExpertsWithoutUsedCountCountAll) {
  const Metadata metadata = {
      {"general.architecture", Value::string("qwen3moe")},
      {"qwen3moe.expert_count", Value::scalar<uint32_t>(4)},
  };
  const std::vector<TensorSpec> tensors = {{"blk.0.ffn_gate_exps.weight", DType::F32, {8, 2, 4}}};
  const ModelSummary s = summarize(gguf::File::open(write("moe-nused.gguf", metadata, tensors)));
  EXPECT_EQ(s.n_expert_used, 4u);
  EXPECT_EQ(s.bytes_per_token, 8u * 2 * 4 * 4);
}

TEST_F(InspectTest, BadExpertCountNamesTheKey) {
  const Metadata metadata = {
      {"general.architecture", Value::string("qwen3moe")},
      {"qwen3moe.expert_count", Value::string("four")},
  };
  const auto file = gguf::File::open(write("moe-bad.gguf", metadata, {{"x.weight", DType::F32, {4}}}));
  try {
    summarize(file);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qwen3moe.expert_count"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("moe-bad.gguf"), std::string::npos) << e.what();
  }
}

TEST_F(InspectTest, SplitAndHeaderOnlyGiveTheSameNumbers) {
  const auto tensors = llama_tensors(true);
  const ModelSummary whole = summarize(gguf::File::open(write("whole.gguf", llama_metadata(), tensors)));

  const auto split_file =
      gguf::File::open(write("split.gguf", llama_metadata(), tensors, {.split_max_bytes = 300 * 1000}));
  const ModelSummary split = summarize(split_file);
  EXPECT_GT(split.n_shards, 1u);
  uint64_t file_bytes = 0;
  for (const auto& shard : split_file.shards()) file_bytes += fs::file_size(shard.path);
  EXPECT_EQ(split.n_file_bytes, file_bytes);
  EXPECT_EQ(split.n_params, whole.n_params);
  EXPECT_EQ(split.n_bytes, whole.n_bytes);
  EXPECT_EQ(split.bytes_per_token, whole.bytes_per_token);

  const auto header_file = gguf::File::open(write("header.gguf", llama_metadata(), tensors, {.header_only = true}));
  ASSERT_TRUE(header_file.header_only());
  const ModelSummary header = summarize(header_file);
  EXPECT_EQ(header.n_params, whole.n_params);
  EXPECT_EQ(header.n_bytes, whole.n_bytes);
  EXPECT_EQ(header.bytes_per_token, whole.bytes_per_token);
  EXPECT_LT(header.n_file_bytes, whole.n_bytes);

  const auto j = inspect_json(split_file);
  EXPECT_EQ(j["file"]["n_shards"], split.n_shards);
  ASSERT_EQ(j["shards"].size(), split.n_shards);
  uint64_t n_tensors = 0;
  for (const auto& shard : j["shards"]) n_tensors += shard["n_tensors"].get<uint64_t>();
  EXPECT_EQ(n_tensors, tensors.size());
  EXPECT_EQ(j["tensors"].back()["shard"], split.n_shards - 1);
}

TEST_F(InspectTest, HyperparametersAndTokenizer) {
  const auto file = gguf::File::open(write("hp.gguf", llama_metadata(), llama_tensors(true)));
  const auto hparams = hyperparameters(file);
  ASSERT_EQ(hparams.size(), 9u);
  EXPECT_EQ(hparams[0].label, "context length");
  EXPECT_EQ(hparams[1].label, "embedding length");
  EXPECT_EQ(hparams[2].label, "layers");
  EXPECT_EQ(hparams[4].label, "heads");
  EXPECT_EQ(hparams[5].label, "kv heads");
  EXPECT_EQ(hparams.back().key, "llama.custom_thing");  // unknown keys last, labelled by suffix
  EXPECT_EQ(hparams.back().label, "custom_thing");

  const TokenizerSummary tok = tokenizer_summary(file);
  EXPECT_TRUE(tok.present);
  EXPECT_EQ(tok.model, "gpt2");
  EXPECT_EQ(tok.pre, "llama-bpe");
  EXPECT_EQ(tok.n_vocab, 8u);
  EXPECT_EQ(tok.n_merges, 1u);
  EXPECT_FALSE(tok.has_scores);
  EXPECT_TRUE(tok.has_token_type);
  ASSERT_EQ(tok.special_tokens.size(), 4u);
  EXPECT_EQ(tok.special_tokens[0].name, "bos");
  EXPECT_EQ(tok.special_tokens[0].text, "<s>");
  EXPECT_EQ(tok.special_tokens[2].name, "padding");
  EXPECT_EQ(tok.special_tokens[2].text, "<pad>");
  EXPECT_EQ(tok.special_tokens[3].id, 99);
  EXPECT_FALSE(tok.special_tokens[3].text.has_value());
  ASSERT_EQ(tok.add_flags.size(), 1u);
  EXPECT_EQ(tok.add_flags[0].first, "add_bos_token");
  EXPECT_EQ(tok.chat_template_bytes, 14u);
}

TEST_F(InspectTest, JsonHasTypedCompleteMetadataAndTensors) {
  auto metadata = llama_metadata();
  std::vector<std::string> many;
  for (int i = 0; i < 3000; ++i) many.push_back("tok" + std::to_string(i));
  metadata.push_back({"test.long_strings", Value::array(many)});
  metadata.push_back({"test.u64", Value::scalar<uint64_t>(1ull << 60)});
  metadata.push_back({"test.i8_array", Value::array(std::vector<int8_t>{-1, 2})});
  metadata.push_back({"test.bools", Value::array(std::vector<bool>{true, false})});
  metadata.push_back({"test.f64", Value::scalar<double>(0.1)});
  metadata.push_back({"test.nested", Value::array_of_arrays({Value::array(std::vector<uint16_t>{1, 2}),
                                                             Value::array(std::vector<std::string>{"x"})})});
  const auto tensors = llama_tensors(true);
  const auto file = gguf::File::open(write("json.gguf", metadata, tensors));
  const auto j = inspect_json(file);

  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["file"]["version"], 3);
  EXPECT_EQ(j["n_kv"], metadata.size());
  EXPECT_EQ(j["n_tensors"], tensors.size());
  const auto& m = j["metadata"];
  EXPECT_EQ(m.size(), metadata.size());
  EXPECT_EQ(m["general.architecture"]["type"], "STRING");
  EXPECT_EQ(m["general.architecture"]["value"], "llama");
  EXPECT_EQ(m["general.architecture"]["index"], 0);
  EXPECT_EQ(m["llama.context_length"]["type"], "UINT32");
  EXPECT_EQ(m["llama.context_length"]["value"], 2048);
  EXPECT_EQ(m["llama.custom_thing"]["value"], -3);
  EXPECT_EQ(m["llama.attention.layer_norm_rms_epsilon"]["type"], "FLOAT32");
  EXPECT_EQ(m["llama.attention.layer_norm_rms_epsilon"]["value"].get<double>(), (double)1e-5f);
  EXPECT_EQ(m["tokenizer.ggml.add_bos_token"]["value"], true);
  EXPECT_EQ(m["tokenizer.ggml.tokens"]["type"], "ARRAY");
  EXPECT_EQ(m["tokenizer.ggml.tokens"]["elem_type"], "STRING");
  EXPECT_EQ(m["tokenizer.ggml.tokens"]["value"][5], "\n");
  EXPECT_EQ(m["tokenizer.ggml.token_type"]["value"], nlohmann::json::array({3, 3, 1, 1, 1, 1, 1, 3}));
  ASSERT_EQ(m["test.long_strings"]["value"].size(), 3000u);  // complete, not summarised
  EXPECT_EQ(m["test.long_strings"]["value"][2999], "tok2999");
  EXPECT_EQ(m["test.u64"]["value"].get<uint64_t>(), 1ull << 60);
  EXPECT_EQ(m["test.i8_array"]["value"], nlohmann::json::array({-1, 2}));
  EXPECT_EQ(m["test.bools"]["value"], nlohmann::json::array({true, false}));
  EXPECT_EQ(m["test.f64"]["value"].get<double>(), 0.1);
  EXPECT_EQ(m["test.nested"]["elem_type"], "ARRAY");
  EXPECT_EQ(m["test.nested"]["value"], nlohmann::json::parse(R"([[1, 2], ["x"]])"));

  ASSERT_EQ(j["tensors"].size(), tensors.size());
  uint64_t expected_offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = j["tensors"][i];
    EXPECT_EQ(t["name"], tensors[i].name);
    EXPECT_EQ(t["type"], dtype_name(tensors[i].type));
    EXPECT_EQ(t["type_id"], (uint32_t)tensors[i].type);
    EXPECT_EQ(t["shape"].get<std::vector<int64_t>>(), tensors[i].shape);
    EXPECT_EQ(t["n_bytes"], tensors[i].n_bytes());
    EXPECT_EQ(t["shard"], 0);
    EXPECT_EQ(t["offset"], expected_offset);  // tensors packed in order, 32-byte aligned
    expected_offset = (expected_offset + tensors[i].n_bytes() + 31) / 32 * 32;
  }
  const auto& s = j["summary"];
  const ModelSummary summary = summarize(file);
  EXPECT_EQ(s["n_params"], summary.n_params);
  EXPECT_EQ(s["n_bytes"], summary.n_bytes);
  EXPECT_EQ(s["bytes_per_token"], summary.bytes_per_token);
  EXPECT_EQ(s["types"].size(), summary.types.size());
  ASSERT_EQ(s["decode_bound"].size(), reference_bandwidths().size());
  EXPECT_DOUBLE_EQ(s["decode_bound"][0]["tokens_per_second"].get<double>(),
                   reference_bandwidths()[0].bytes_per_second / (double)summary.bytes_per_token);
  EXPECT_EQ(j["tokenizer"]["special_tokens"][0]["text"], "<s>");
  EXPECT_EQ(j["hyperparameters"][0]["key"], "llama.context_length");

  // The text form of --json is valid JSON with the same content.
  std::ostringstream out;
  inspect(file, {.json = true}, out);
  EXPECT_EQ(nlohmann::json::parse(out.str()), j);
}

TEST_F(InspectTest, TextReport) {
  const auto file = gguf::File::open(write("text.gguf", llama_metadata(), llama_tensors(true)));
  std::ostringstream out;
  inspect(file, {}, out);
  const std::string text = out.str();
  for (const char* expected : {"architecture  llama", "context length", "kv heads", "rms norm eps", "1e-05",
                               "llama-bpe", "bos token", "\"<s>\"", "chat template", "present, 14 bytes",
                               "blk.0.attn_q.weight", "Q8_0", "[256, 256]", "totals by type", "bits per weight",
                               "bytes per token", "H100 SXM", "tok/s", "[8 x STRING]"})
    EXPECT_NE(text.find(expected), std::string::npos) << "missing \"" << expected << "\" in\n" << text;
  // Hyperparameters are not repeated in the metadata table; summaries stay short.
  EXPECT_EQ(text.find("llama.context_length"), text.rfind("llama.context_length"));

  std::ostringstream all;
  inspect(file, {.all_metadata = true}, all);
  EXPECT_NE(all.str().find("\"<pad>\""), std::string::npos);
  EXPECT_NE(all.str().find("\"{{ messages }}\""), std::string::npos);
}

}  // namespace
}  // namespace velocity::tools
