// `velocity convert`: config.json -> HfConfig -> tensor plan (convert_arch.cpp) -> every source
// checked (present, dtype, shape) and every checkpoint tensor accounted for -> metadata and
// tokenizer -> tensor data streamed row by row.
//
// Memory stays bounded by one chunk (kChunkBytes) plus one row, whatever the model size: the
// shards are memory-mapped and each output row is decoded from its source row, converted and
// appended to the chunk, which goes to the writer when full. Nothing is written before the whole
// plan has been checked, so a bad checkpoint fails fast and leaves no partial output.
//
// Output types follow ModelBase.prepare_tensors in convert_hf_to_gguf.py: 1-D tensors, *_norm.weight,
// ffn_gate_inp (the MoE router), anything not named *.weight and the generated rope_freqs stay
// F32; every other tensor gets the requested type, except that Q8_0 needs rows that are a multiple
// of 32 and gguf-py falls back to F16 otherwise. Sources are decoded to float (as the converter
// turns BF16 into float32) and rounded to nearest-even into F16/BF16; Q8_0 uses core's reference
// quantiser, which gguf-py's Q8_0 reproduces bit for bit.
#include "tools/convert.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <unordered_set>

#include "core/error.h"
#include "core/fp16.h"
#include "core/quant.h"
#include "gguf/writer.h"
#include "tokenizer/hf_import.h"
#include "tools/convert_arch.h"
#include "tools/safetensors.h"

namespace velocity::tools {
namespace {

namespace fs = std::filesystem;
using namespace convert;

constexpr size_t kChunkBytes = 4u << 20;
constexpr uint32_t kGgmlQuantVersion = 2;  // general.quantization_version (GGML_QNT_VERSION)

// general.file_type: llama_ftype (LLAMA_FTYPE_ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q8_0 = 7,
// MOSTLY_BF16 = 32).
uint32_t file_type_of(DType type) {
  switch (type) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q8_0: return 7;
    case DType::BF16: return 32;
    default: fail("convert: output type {} is not supported (f32, f16, bf16, q8_0)", dtype_name(type));
  }
}

DType tensor_type(const PlannedTensor& t, DType wanted) {
  if (!t.values.empty() || t.shape.size() <= 1 || t.name.ends_with("_norm.weight")) return DType::F32;
  if (t.name.ends_with("ffn_gate_inp.weight") || !t.name.ends_with(".weight")) return DType::F32;
  if (t.shape[0] % dtype_block_size(wanted) != 0) return DType::F16;
  return wanted;
}

std::string shape_string(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The checked source tensors of one planned tensor.
struct Resolved {
  const PlannedTensor* plan = nullptr;
  std::vector<const SafeTensor*> sources;
  DType type = DType::F32;
};

const SafeTensor& resolve(const SafetensorsModel& model, const Source& s, const std::string& dir) {
  const SafetensorsModel::Entry* entry = model.find(s.name);
  if (!entry)
    fail("{}: tensor '{}' (expected shape {}) is in none of the safetensors files", dir, s.name, shape_string(s.shape));
  const SafeTensor& t = *entry->tensor;
  const std::string& file = model.shards[entry->shard]->name();
  if (t.dtype != SafeDType::F32 && t.dtype != SafeDType::F16 && t.dtype != SafeDType::BF16)
    fail("{}: tensor '{}' has dtype {}; velocity convert reads F32, F16 and BF16 only", file, s.name,
         safe_dtype_name(t.dtype));
  if (t.shape != s.shape)
    fail("{}: tensor '{}' has shape {}, expected {}", file, s.name, shape_string(t.shape), shape_string(s.shape));
  return t;
}

// Row `row` of a source tensor whose rows hold n elements, decoded to float.
void read_row(const SafeTensor& t, int64_t row, int64_t n, float* out) {
  const size_t size = static_cast<size_t>(safe_dtype_size(t.dtype));
  const uint8_t* p = t.data.data() + static_cast<size_t>(row) * static_cast<size_t>(n) * size;
  if (t.dtype == SafeDType::F32) {
    std::memcpy(out, p, static_cast<size_t>(n) * 4);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    out[i] = t.dtype == SafeDType::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
  }
}

// Output row o of a gathered tensor (PlannedTensor::gather): its n elements, strided in the source.
void gather_row(const SafeTensor& t, const Gather& g, int64_t o, int64_t n, float* out) {
  const int64_t base = (o / g.rows_per_slab) * g.slab + (o % g.rows_per_slab) * g.row_step + g.offset;
  VELOCITY_CHECK(base >= 0 && base + (n - 1) * g.stride < t.n_elements, "{}: gather outside the tensor", t.name);
  const size_t size = static_cast<size_t>(safe_dtype_size(t.dtype));
  for (int64_t k = 0; k < n; ++k) {
    const uint8_t* p = t.data.data() + static_cast<size_t>(base + k * g.stride) * size;
    if (t.dtype == SafeDType::F32) {
      std::memcpy(&out[k], p, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p, 2);
      out[k] = t.dtype == SafeDType::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
    }
  }
}

void encode_row(DType type, const float* x, int64_t n, uint8_t* out) {
  switch (type) {
    case DType::F32: std::memcpy(out, x, static_cast<size_t>(n) * 4); return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_fp16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t b = fp32_to_bf16(x[i]);
        std::memcpy(out + 2 * i, &b, 2);
      }
      return;
    default: quantize_row(type, x, out, n); return;
  }
}

// LlamaModel.permute, w.reshape(n_heads, 2, hd/2, n_in).swapaxes(1, 2).reshape(w.shape): output
// row h*hd + 2*i + j is input row h*hd + j*hd/2 + i.
int64_t permuted_source_row(int64_t row, int64_t n_rows, int64_t n_heads) {
  const int64_t hd = n_rows / n_heads;
  const int64_t head = row / hd, in_head = row % hd;
  return head * hd + (in_head % 2) * (hd / 2) + in_head / 2;
}

// tokenizer.* from tokenizer.json (+ tokenizer_config.json), padded to the embedding's rows as
// the converter pads (get_vocab_base: "[PAD<id>]" UNUSED tokens up to config vocab_size).
std::vector<std::pair<std::string, gguf::Value>> tokenizer_metadata(const std::string& dir, const HfConfig& c) {
  const std::string json_path = (fs::path(dir) / "tokenizer.json").string();
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  if (!fs::exists(json_path)) fail("{}: not found; velocity convert needs the Hugging Face tokenizer.json", json_path);
  tokenizer::Vocab vocab = tokenizer::hf_import(json_path, fs::exists(config_path) ? config_path : "");
  if (vocab.size() > static_cast<size_t>(c.n_vocab))
    fail("{}: {} tokens, more than the {} rows of the embedding ({}: vocab_size)", json_path, vocab.size(), c.n_vocab,
         c.path);
  for (size_t id = vocab.size(); id < static_cast<size_t>(c.n_vocab); ++id) {
    vocab.tokens.push_back(fmt::format("[PAD{}]", id));
    vocab.types.push_back(tokenizer::TokenType::Unused);
    vocab.scores.push_back(vocab.type == tokenizer::VocabType::Spm ? -1000.0f : 0.0f);
  }
  vocab.validate(json_path);
  return tokenizer::vocab_to_gguf_metadata(vocab);
}

std::string model_name(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace

ConvertResult convert_hf(const ConvertOptions& options) {
  if (options.output.empty()) fail("convert: no output path given");
  const uint32_t file_type = file_type_of(options.type);
  const std::string& dir = options.input_dir;
  if (!fs::is_directory(dir)) fail("{}: not a directory (expected a Hugging Face model directory)", dir);

  const HfConfig config = read_hf_config((fs::path(dir) / "config.json").string());
  const SafetensorsModel model = SafetensorsModel::open_dir(dir);
  const std::vector<PlannedTensor> plan =
      plan_tensors(config, [&model](const std::string& name) { return model.find(name) != nullptr; });

  // Check every source before writing anything, and that no checkpoint tensor goes unused.
  std::vector<Resolved> tensors;
  std::unordered_set<std::string> used;
  for (const PlannedTensor& p : plan) {
    Resolved r;
    r.plan = &p;
    r.type = tensor_type(p, options.type);
    for (const Source& s : p.sources) {
      r.sources.push_back(&resolve(model, s, dir));
      used.insert(s.name);
    }
    if (p.permute_heads > 0)
      VELOCITY_CHECK(p.shape.back() % (2 * p.permute_heads) == 0, "{}: {} rows, {} heads", p.name, p.shape.back(),
                     p.permute_heads);
    tensors.push_back(std::move(r));
  }
  for (const SafetensorsModel::Entry& e : model.tensors) {
    if (!used.contains(e.tensor->name) && !is_ignored_source(config, e.tensor->name))
      fail("{}: tensor '{}' is not part of a {} model as velocity convert maps it (config: {})",
           model.shards[e.shard]->name(), e.tensor->name, config.hf_arch, config.path);
  }

  gguf::WriterOptions writer_options;
  writer_options.split_max_bytes = options.split_max_bytes;
  gguf::Writer writer(options.output, writer_options);
  writer.set("general.architecture", gguf::Value::string(config.arch));
  writer.set("general.type", gguf::Value::string("model"));
  writer.set("general.name", gguf::Value::string(model_name(dir)));
  for (auto& [key, value] : arch_metadata(config)) writer.set(key, std::move(value));
  writer.set("general.file_type", gguf::Value::scalar<uint32_t>(file_type));
  writer.set("general.quantization_version", gguf::Value::scalar<uint32_t>(kGgmlQuantVersion));
  for (auto& [key, value] : tokenizer_metadata(dir, config)) writer.set(key, std::move(value));

  ConvertResult result;
  result.arch = config.arch;
  for (const Resolved& r : tensors) {
    writer.add_tensor(r.plan->name, r.type, r.plan->shape);
    const int64_t n_rows = element_count(r.plan->shape) / r.plan->shape[0];
    result.n_bytes += static_cast<uint64_t>(n_rows * dtype_row_bytes(r.type, r.plan->shape[0]));
  }
  result.n_tensors = static_cast<int64_t>(tensors.size());
  writer.begin_data();

  std::vector<uint8_t> chunk(kChunkBytes);
  size_t used_bytes = 0;
  auto flush = [&] {
    writer.write({chunk.data(), used_bytes});
    used_bytes = 0;
  };
  std::vector<float> row;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Resolved& r = tensors[i];
    const PlannedTensor& p = *r.plan;
    if (!options.quiet) {
      const std::string from = p.sources.empty() ? "F32" : std::string(safe_dtype_name(r.sources[0]->dtype));
      fmt::print(stderr, "[{:>4}/{}] {:<28} {:<4} -> {:<4} {}\n", i + 1, tensors.size(), p.name, from,
                 dtype_name(r.type), shape_string(p.shape));
    }
    const int64_t n = p.shape[0];
    const size_t row_bytes = static_cast<size_t>(dtype_row_bytes(r.type, n));
    if (row_bytes > chunk.size()) {
      flush();
      chunk.resize(row_bytes);
    }
    row.resize(static_cast<size_t>(n));
    auto emit = [&](const float* x) {
      if (used_bytes + row_bytes > chunk.size()) flush();
      encode_row(r.type, x, n, chunk.data() + used_bytes);
      used_bytes += row_bytes;
    };
    if (!p.values.empty()) {
      emit(p.values.data());
      continue;
    }
    if (p.gather.rows_per_slab > 0) {
      const int64_t n_rows = element_count(p.shape) / n;
      for (int64_t o = 0; o < n_rows; ++o) {
        gather_row(*r.sources[0], p.gather, o, n, row.data());
        emit(row.data());
      }
      continue;
    }
    for (const SafeTensor* src : r.sources) {  // experts in order: expert e is the e-th slab
      const int64_t n_rows = src->n_elements / n;
      for (int64_t out_row = 0; out_row < n_rows; ++out_row) {
        const int64_t in_row = p.permute_heads > 0 ? permuted_source_row(out_row, n_rows, p.permute_heads) : out_row;
        read_row(*src, in_row, n, row.data());
        emit(row.data());
      }
    }
  }
  flush();
  writer.finish();
  result.paths = writer.paths();
  return result;
}

}  // namespace velocity::tools
