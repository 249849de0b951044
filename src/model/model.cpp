// Model: what every architecture shares. Load = open the GGUF, read the common hparams, let the
// architecture read its own and take its tensors, size the backend for the step shape. A step =
// begin_step, embed, the architecture's layers, the output block, read the logits.
#include "model/model.h"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "model/architecture.h"

namespace velocity::model {

std::unique_ptr<Architecture> make_llama();
std::unique_ptr<Architecture> make_qwen2();
std::unique_ptr<Architecture> make_qwen3();
std::unique_ptr<Architecture> make_qwen3moe();

std::vector<std::string> supported_architectures() { return {"llama", "qwen2", "qwen3", "qwen3moe"}; }

std::unique_ptr<Architecture> make_architecture(const std::string& arch, const std::string& file) {
  if (arch == "llama") return make_llama();
  if (arch == "qwen2") return make_qwen2();
  if (arch == "qwen3") return make_qwen3();
  if (arch == "qwen3moe") return make_qwen3moe();
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

// Holds what Model needs beyond the architecture: the embedding and the head.
struct ModelWeights {
  engine::Weight token_embd, output_norm, output;
};

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::make_unique<gguf::File>(gguf::File::open(path));
  const gguf::File& file = *m->file_;
  if (file.header_only()) fail("{}: a header-only file has no weights to run", path);
  const std::string arch = file.architecture();
  m->arch_ = make_architecture(arch, path);
  Hparams h(file, arch);
  Config& c = m->config_;
  read_common_config(h, file, c);
  m->arch_->read_config(h, c);
  if (c.n_expert == 0 && c.n_ff == 0) fail("{}: {}.feed_forward_length is missing", path, arch);

  if (options.device != "cpu")
    fail("device \"{}\": this build has only the CPU backend (device = \"cpu\")", options.device);
  if (options.n_slots < 1) fail("n_slots must be at least 1 (got {})", options.n_slots);
  if (options.max_batch < 1) fail("max_batch must be at least 1 (got {})", options.max_batch);
  if (options.n_ctx < 0) fail("context length must not be negative (got {})", options.n_ctx);
  m->n_ctx_ = options.n_ctx > 0 ? options.n_ctx : std::min<int64_t>(c.n_ctx_train, 4096);
  m->n_slots_ = options.n_slots;
  m->max_batch_ = options.max_batch;
  m->backend_ = engine::make_cpu_backend(options.n_threads);

  Weights w(file, *m->backend_);
  m->weights_ = std::make_unique<ModelWeights>();
  ModelWeights& mw = *m->weights_;
  mw.token_embd = w.get("token_embd.weight", {c.n_embd, c.n_vocab});
  mw.output_norm = w.get("output_norm.weight", {c.n_embd});
  mw.output = c.tied_output ? mw.token_embd : w.get("output.weight", {c.n_embd, c.n_vocab});
  w.count_bytes(mw.output);
  m->arch_->load(w, c);
  w.check_all_used();
  m->bytes_per_token_ = w.bytes_per_token();

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
  m->backend_->reserve(s);
  m->x_ = m->backend_->alloc(s.max_tokens, c.n_embd);
  m->logits_.resize(static_cast<size_t>(s.max_logits * c.n_vocab));
  return m;
}

std::span<const float> Model::forward(const engine::Batch& batch) {
  engine::Backend& b = *backend_;
  b.begin_step(batch);
  b.embed(weights_->token_embd, x_);
  arch_->forward(b, x_);
  b.output_block(weights_->output_norm, weights_->output, config_.rms_eps, x_);
  const size_t n = static_cast<size_t>(batch.n_logits() * config_.n_vocab);
  b.read_logits(std::span<float>(logits_.data(), n));
  return {logits_.data(), n};
}

}  // namespace velocity::model
