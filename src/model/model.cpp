// Model: what every architecture shares. Load = open the GGUF, read the common hparams, let the
// architecture read its own and take its tensors, size the backend for the step shape. A step =
// begin_step, embed, the architecture's layers, the output block, read the logits.
#include "model/model.h"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/log.h"
#include "model/architecture.h"
#include "model/memory_check.h"

namespace velocity::model {

std::unique_ptr<Architecture> make_llama();
std::unique_ptr<Architecture> make_qwen2();
std::unique_ptr<Architecture> make_qwen3();
std::unique_ptr<Architecture> make_qwen3moe();
std::unique_ptr<Architecture> make_gptoss();
std::unique_ptr<Architecture> make_deepseek2();

std::vector<std::string> supported_architectures() {
  return {"llama", "qwen2", "qwen3", "qwen3moe", "gpt-oss", "deepseek2"};
}

std::unique_ptr<Architecture> make_architecture(const std::string& arch, const std::string& file) {
  if (arch == "llama") return make_llama();
  if (arch == "qwen2") return make_qwen2();
  if (arch == "qwen3") return make_qwen3();
  if (arch == "qwen3moe") return make_qwen3moe();
  if (arch == "gpt-oss") return make_gptoss();
  if (arch == "deepseek2") return make_deepseek2();
  fail("{}: architecture \"{}\" is not supported (supported: {})", file, arch, fmt::join(supported_architectures(), ", "));
}

namespace {

void read_common_config(const Hparams& h, const gguf::File& file, Config& c) {
  const std::string& path = file.shards().at(0).path;
  c.arch = h.arch();
  if (const gguf::Value* v = file.find("general.name"); v && v->type() == gguf::ValueType::STRING) c.name = v->as_string();
  c.n_embd = h.count("embedding_length");
  c.n_layer = h.count("block_count");
  c.n_head = h.count("attention.head_count");
  c.n_head_kv = h.count("attention.head_count_kv", c.n_head);
  if (c.n_head % c.n_head_kv != 0)
    fail("{}: {}.attention.head_count {} is not a multiple of head_count_kv {}", path, c.arch, c.n_head, c.n_head_kv);
  if (!h.has("attention.key_length") && c.n_embd % c.n_head != 0)
    fail("{}: {}.embedding_length {} is not a multiple of attention.head_count {}", path, c.arch, c.n_embd, c.n_head);
  c.head_dim_k = h.count("attention.key_length", c.n_embd / c.n_head);
  c.head_dim_v = h.count("attention.value_length", c.head_dim_k);
  c.n_ff = h.count("feed_forward_length", 0);
  c.n_ctx_train = h.count("context_length", 4096);
  c.rms_eps = h.real("attention.layer_norm_rms_epsilon", 1e-5f);
  if (!(c.rms_eps > 0)) fail("{}: {}.attention.layer_norm_rms_epsilon must be positive", path, c.arch);
  c.rope_freq_base = h.real("rope.freq_base", 10000.0f);
  c.n_rot = h.count("rope.dimension_count", c.head_dim_k);
  if (c.n_rot > c.head_dim_k || c.n_rot % 2 != 0)
    fail("{}: {}.rope.dimension_count {} must be even and at most the head dim {}", path, c.arch, c.n_rot, c.head_dim_k);
  const gguf::TensorInfo* embd = file.find_tensor("token_embd.weight");
  if (!embd) fail("{}: tensor token_embd.weight is missing", path);
  if (embd->shape.size() != 2 || embd->shape[0] != c.n_embd)
    fail("{}: tensor token_embd.weight: expected shape [{}, n_vocab], found [{}]", path, c.n_embd,
         fmt::join(embd->shape, ", "));
  c.n_vocab = embd->shape[1];
  c.tied_output = file.find_tensor("output.weight") == nullptr;
  c.has_rope_freqs = file.find_tensor("rope_freqs.weight") != nullptr;
}

}  // namespace

void fill_latent_shape(const Config& c, engine::StepShape& s) {
  s.n_ff_shared = c.n_ff_shared;
  if (!c.kv_latent) return;
  s.kv_shared_v = true;
  s.cache_type_v = s.cache_type_k;  // the latent is K and V at once
  s.mla_q_dim = c.n_head * (c.qk_nope + c.qk_rope);
  s.mla_q_lora = c.q_lora_rank;
  s.mla_out_dim = c.n_head * c.v_head_dim;
}

// Holds what Model needs beyond the architecture: the embedding and the head.
struct ModelWeights {
  engine::Weight token_embd, output_norm, output;
};

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::make_unique<gguf::File>(gguf::File::open(path, !options.mmap));
  const gguf::File& file = *m->file_;
  if (file.header_only()) fail("{}: a header-only file has no weights to run", path);
  const std::string arch = file.architecture();
  m->arch_ = make_architecture(arch, path);
  Hparams h(file, arch);
  Config& c = m->config_;
  read_common_config(h, file, c);
  m->arch_->read_config(h, c);
  if (c.n_expert == 0 && c.n_ff == 0) fail("{}: {}.feed_forward_length is missing", path, arch);

  if (options.n_slots < 1) fail("n_slots must be at least 1 (got {})", options.n_slots);
  if (options.max_batch < 1) fail("max_batch must be at least 1 (got {})", options.max_batch);
  if (options.n_ctx < 0) fail("context length must not be negative (got {})", options.n_ctx);
  m->n_ctx_ = options.n_ctx > 0 ? options.n_ctx : std::min<int64_t>(c.n_ctx_train, 4096);
  m->n_slots_ = options.n_slots;
  m->max_batch_ = options.max_batch;
  m->max_logits_ = options.max_logits > 0 ? std::min(options.max_logits, options.max_batch) : options.max_batch;

  // One backend per device of the placement; the embedding goes with the first layer and the
  // head with the last, so a single-device model never crosses devices.
  Placement& placement = m->placement_;
  placement = options.placement;
  placement.resolve_gpu_layers(c.n_layer);
  if (!placement.layers.empty() && static_cast<int64_t>(placement.layers.size()) != c.n_layer)
    fail("{}: the placement names devices for {} layers but the model has {}", path, placement.layers.size(), c.n_layer);
  const engine::Device first = placement.layer(0), last = placement.layer(c.n_layer - 1);
  placement.overrides.insert(placement.overrides.begin(), {TensorOverride{"^token_embd\\.", first},
                                                           TensorOverride{"^output(_norm)?\\.", last}});
  std::vector<engine::Backend*> backends;
  for (const engine::Device& d : placement.devices()) {
    m->backends_.push_back(engine::make_backend(d, options.n_threads));
    backends.push_back(m->backends_.back().get());
  }
  auto backend_of = [&](engine::Device d) -> engine::Backend* {
    for (engine::Backend* b : backends)
      if (b->device() == d) return b;
    return nullptr;
  };
  m->embed_backend_ = backend_of(first);
  m->output_backend_ = backend_of(last);
  // A feature the architecture needs and a backend lacks (gpt-oss's sinks on the CUDA backend)
  // stops the load here; a device the caller did not name gives way to the CPU instead.
  auto missing_features = [&c](const engine::Backend& b) {
    std::vector<std::string> missing;
    for (engine::Feature f : c.features)
      if (!b.supports(f)) missing.push_back(engine::feature_name(f));
    return missing;
  };
  for (engine::Backend* b : backends) {
    const std::vector<std::string> missing = missing_features(*b);
    if (missing.empty()) continue;
    if (options.device_is_default && options.placement.layers.empty() && options.placement.overrides.empty()) {
      log_line(fmt::format("{}: {} needs {}, which the {} backend does not compute yet: running it on the CPU", path,
                           arch, fmt::join(missing, ", "), b->name()));
      LoadOptions cpu = options;
      cpu.placement = Placement{};
      cpu.device_is_default = false;
      return load(path, cpu);
    }
    fail("{}: {} needs {}, which the {} backend does not compute yet; run this model on the CPU (--device cpu)",
         path, arch, fmt::join(missing, ", "), b->name());
  }
  for (engine::Backend* b : backends) {
    if (!b->supports_cache_type(options.cache_type_k) || !b->supports_cache_type(options.cache_type_v))
      fail("KV cache types k={} v={}: the {} backend does not support them", dtype_name(options.cache_type_k),
           dtype_name(options.cache_type_v), b->name());
  }

  // Each backend's step shape: the KV cache of its layers, the embedding and the head where they are.
  std::vector<engine::Backend*> layer_backends;
  for (int64_t il = 0; il < c.n_layer; ++il) layer_backends.push_back(backend_of(placement.layer(il)));
  std::vector<DeviceNeed> needs;
  for (engine::Backend* b : backends) {
    engine::StepShape s;
    s.max_tokens = options.max_batch;
    s.max_logits = options.max_logits > 0 ? std::min(options.max_logits, options.max_batch) : options.max_batch;
    s.n_embd = c.n_embd;
    s.n_vocab = c.n_vocab;
    s.n_layer = c.n_layer;
    s.n_head = c.n_head;
    s.n_head_kv = c.n_head_kv;
    s.head_dim_k = c.head_dim_k;
    s.head_dim_v = c.head_dim_v;
    s.n_ff = c.n_ff;
    s.n_expert = c.n_expert;
    s.n_expert_used = c.n_expert_used;
    s.n_ff_expert = c.n_ff_expert;
    s.n_slots = options.n_slots;
    s.n_ctx = m->n_ctx_;
    s.cache_type_k = options.cache_type_k;
    s.cache_type_v = options.cache_type_v;
    fill_latent_shape(c, s);
    for (int64_t il = 0; il < c.n_layer; ++il)
      if (layer_backends[il] == b) s.kv_layers.push_back(static_cast<int32_t>(il));
    if (s.kv_layers.empty()) s.n_layer = 0;  // holds no layer: no KV cache
    s.has_embedding = b == m->embed_backend_;
    s.has_output = b == m->output_backend_;
    DeviceNeed need{b, std::move(s), {}};
    if (c.tied_output && first != last && b == m->output_backend_) need.extra.push_back("token_embd.weight");
    needs.push_back(std::move(need));
  }
  // Before anything is uploaded: a GPU without room stops the load here, with what would fit.
  check_device_memory(file, placement, needs);
  if (options.on_checked) options.on_checked(c, file);

  Weights w(file, placement, backends, options.cancel);
  m->weights_ = std::make_unique<ModelWeights>();
  ModelWeights& mw = *m->weights_;
  mw.token_embd = w.get("token_embd.weight", {c.n_embd, c.n_vocab});
  mw.output_norm = w.get("output_norm.weight", {c.n_embd});
  mw.output = c.tied_output ? (first == last ? mw.token_embd : w.on_device("token_embd.weight", {c.n_embd, c.n_vocab}, last))
                            : w.get("output.weight", {c.n_embd, c.n_vocab});
  w.count_bytes(mw.output);
  m->arch_->load(w, c);
  w.check_all_used();
  w.finish_progress();
  m->bytes_per_token_ = w.bytes_per_token();

  std::vector<engine::Act> residuals;
  for (DeviceNeed& need : needs) {
    need.backend->reserve(need.shape);
    residuals.push_back(need.backend->alloc(need.shape.max_tokens, c.n_embd));
  }
  if (backends.size() > 1) m->staging_.resize(static_cast<size_t>(options.max_batch * c.n_embd));
  m->pass_ = std::make_unique<ForwardPass>(std::move(layer_backends), std::move(backends), std::move(residuals),
                                           &m->staging_);
  return m;
}

void Model::run_ops() {
  ForwardPass& pass = *pass_;
  pass.begin(*embed_backend_);
  embed_backend_->embed(weights_->token_embd, pass.x());
  arch_->forward(pass);
  engine::Backend& out = pass.to(*output_backend_);
  out.output_block(weights_->output_norm, weights_->output, config_.rms_eps, pass.x());
}

engine::StepOutput Model::step(const engine::Batch& batch) {
  for (auto& b : backends_) b->begin_step(batch);
  if (backends_.size() == 1)
    backends_.front()->run_step([this] { run_ops(); });
  else
    run_ops();
  return output_backend_->read_output();
}

std::span<const float> Model::forward(const engine::Batch& batch) {
  for (engine::Output o : batch.outputs)
    if (o == engine::Output::Token) fail("forward: the batch asks for tokens; use step()");
  const engine::StepOutput out = step(batch);
  return {out.logits, static_cast<size_t>(out.n_rows * out.n_vocab)};
}

}  // namespace velocity::model
