// `velocity synth`: preset -> tensor list and per-tensor types -> metadata -> streamed data.
//
// Memory stays bounded by one chunk (kChunkBytes) whatever the model size: tensor data is
// generated unit by unit (see synth_random.h) straight into the chunk buffer and handed to the
// writer. The vocabulary (up to ~200k strings) is the only other sizeable allocation.
#include "tools/synth.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "gguf/writer.h"
#include "tools/quant_mix.h"
#include "tools/synth_arch.h"

namespace velocity::tools {
namespace {

using namespace synthetic;

constexpr uint64_t kChunkBytes = 4u << 20;
constexpr uint32_t kGgmlQuantVersion = 2;  // general.quantization_version (GGML_QNT_VERSION)

void set_general(gguf::Writer& w, const ModelConfig& c, const WeightScheme& scheme) {
  w.set("general.architecture", gguf::Value::string(c.arch));
  w.set("general.type", gguf::Value::string("model"));
  w.set("general.name", gguf::Value::string(c.name));
  for (auto& [key, value] : arch_metadata(c)) w.set(key, std::move(value));
  w.set("general.file_type", gguf::Value::scalar<uint32_t>(scheme.file_type));
  w.set("general.quantization_version", gguf::Value::scalar<uint32_t>(kGgmlQuantVersion));
}

// tokenizer.* as convert_hf_to_gguf.py's _set_vocab_gpt2 + SpecialVocab write them.
void set_tokenizer(gguf::Writer& w, const VocabSpec& spec, Vocab vocab) {
  w.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
  w.set("tokenizer.ggml.pre", gguf::Value::string(spec.pre));
  w.set("tokenizer.ggml.tokens", gguf::Value::string_array(std::move(vocab.tokens)));
  w.set("tokenizer.ggml.token_type", gguf::Value::array(vocab.types));
  w.set("tokenizer.ggml.merges", gguf::Value::string_array(std::move(vocab.merges)));
  auto id = [](int64_t v) { return gguf::Value::scalar<uint32_t>(static_cast<uint32_t>(v)); };
  if (vocab.bos_id >= 0) w.set("tokenizer.ggml.bos_token_id", id(vocab.bos_id));
  if (vocab.eos_id >= 0) w.set("tokenizer.ggml.eos_token_id", id(vocab.eos_id));
  if (vocab.padding_id >= 0) w.set("tokenizer.ggml.padding_token_id", id(vocab.padding_id));
  w.set("tokenizer.ggml.add_bos_token", gguf::Value::scalar<bool>(spec.add_bos));
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t tensor_bytes(DType type, const std::vector<int64_t>& shape) {
  const int64_t n = element_count(shape);
  return static_cast<uint64_t>(n / dtype_block_size(type) * dtype_block_bytes(type));
}

}  // namespace

std::vector<std::string> synth_archs() { return arch_names(); }

std::vector<std::string> synth_presets(const std::string& arch) { return preset_names(arch); }

SynthResult synth(const SynthOptions& options) {
  if (options.output.empty()) fail("synth: no output path given");
  const ModelConfig config = preset_config(options.arch, options.preset);
  const WeightScheme scheme = parse_weight_scheme(options.type);

  const std::vector<TensorSpec> tensors = model_tensors(config);
  std::vector<QuantTensor> query;
  query.reserve(tensors.size());
  for (const auto& t : tensors) query.push_back({t.name, t.shape});
  QuantModelInfo info;
  info.arch = config.arch;
  info.n_layer = config.n_layer;
  info.n_expert = config.n_expert;
  info.is_llama_70b = config.arch == "llama" && config.n_layer == 80 && config.n_head != config.n_head_kv;
  std::vector<DType> types = choose_tensor_types(scheme, info, query);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!tensors[i].values.empty()) types[i] = DType::F32;

  gguf::WriterOptions writer_options;
  writer_options.split_max_bytes = options.split_max_bytes;
  writer_options.header_only = options.header_only;
  gguf::Writer writer(options.output, writer_options);
  set_general(writer, config, scheme);
  set_tokenizer(writer, config.vocab, build_vocab(config.vocab, options.seed));
  if (!options.chat_template.empty()) writer.set("tokenizer.chat_template", gguf::Value::string(options.chat_template));

  SynthResult result;
  for (size_t i = 0; i < tensors.size(); ++i) {
    writer.add_tensor(tensors[i].name, types[i], tensors[i].shape);
    result.n_params += static_cast<uint64_t>(element_count(tensors[i].shape));
    result.n_bytes += tensor_bytes(types[i], tensors[i].shape);
  }
  result.n_tensors = tensors.size();
  writer.begin_data();

  if (!options.header_only) {
    std::vector<uint8_t> chunk(kChunkBytes);
    uint64_t written = 0;
    auto flush = [&](size_t n) {
      writer.write({chunk.data(), n});
      written += n;
      if (options.on_progress) options.on_progress(written, result.n_bytes);
    };
    for (size_t i = 0; i < tensors.size(); ++i) {
      const TensorSpec& t = tensors[i];
      const DType type = types[i];
      if (!t.values.empty()) {
        const size_t n = t.values.size() * sizeof(float);
        VELOCITY_CHECK(n <= chunk.size(), "fixed tensor {} too large", t.name);
        std::memcpy(chunk.data(), t.values.data(), n);
        flush(n);
        continue;
      }
      const int64_t n_elements = element_count(t.shape);
      const int64_t per_unit = unit_elements(type);
      const int64_t n_units = (n_elements + per_unit - 1) / per_unit;
      const uint64_t unit_bytes = static_cast<uint64_t>(dtype_row_bytes(type, per_unit));
      const int64_t units_per_chunk = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / unit_bytes));
      const uint64_t key = tensor_key(options.seed, t.name);
      for (int64_t u = 0; u < n_units; u += units_per_chunk) {
        const int64_t n = std::min(units_per_chunk, n_units - u);
        flush(fill_units(type, t.kind, key, n_elements, u, n, chunk.data()));
      }
    }
  }
  writer.finish();
  result.paths = writer.paths();
  return result;
}

}  // namespace velocity::tools
