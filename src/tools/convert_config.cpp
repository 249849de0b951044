// config.json -> HfConfig for `velocity convert`.
//
// llama.cpp's converter reads the config through transformers' AutoConfig, so a field missing
// from config.json takes the default of that architecture's config class; the defaults below
// are those classes' (LlamaConfig, MistralConfig, MixtralConfig, Qwen2Config, Qwen3Config,
// Qwen3MoeConfig). The sizes that define the tensors (hidden_size, layers, heads,
// intermediate_size, vocab_size, expert counts) have no default here: a config without them is
// rejected, naming the field.
#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tools/convert_arch.h"

namespace velocity::tools::convert {
namespace {

using nlohmann::json;

struct ArchDefaults {
  const char* hf_arch;       // config.json architectures[0]
  const char* arch;          // GGUF general.architecture
  int64_t n_ctx_train;       // max_position_embeddings
  double rope_theta;
  double rms_eps;
  int64_t n_head_kv;         // 0: num_attention_heads
  int64_t head_dim;          // 0: hidden_size / num_attention_heads
};

constexpr ArchDefaults kArchs[] = {
    {"LlamaForCausalLM", "llama", 2048, 10000.0, 1e-6, 0, 0},
    {"MistralForCausalLM", "llama", 4096 * 32, 10000.0, 1e-6, 8, 0},
    {"MixtralForCausalLM", "llama", 4096 * 32, 1e6, 1e-5, 8, 0},
    {"Qwen2ForCausalLM", "qwen2", 32768, 10000.0, 1e-6, 32, 0},
    {"Qwen3ForCausalLM", "qwen3", 32768, 10000.0, 1e-6, 32, 128},
    {"Qwen3MoeForCausalLM", "qwen3moe", 32768, 10000.0, 1e-6, 4, 128},
    {"GptOssForCausalLM", "gpt-oss", 131072, 150000.0, 1e-5, 8, 64},
    {"DeepseekV2ForCausalLM", "deepseek2", 2048, 10000.0, 1e-6, 0, 0},
    {"DeepseekV3ForCausalLM", "deepseek2", 4096, 10000.0, 1e-6, 0, 0},
};

// Reads config fields with messages naming the file and the field. A JSON null counts as absent.
class Fields {
 public:
  Fields(const json& root, std::string path) : root_(root), path_(std::move(path)) {}

  const json* find(const json& obj, const char* key) const {
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const char* key) const { return find(root_, key) != nullptr; }

  int64_t integer(const json& obj, const char* key, const char* where = "") const {
    const json* v = find(obj, key);
    if (!v) fail("{}: missing field '{}{}'", path_, where, key);
    if (!v->is_number_integer()) fail("{}: field '{}{}' is {}, expected an integer", path_, where, key, v->dump());
    const int64_t n = v->get<int64_t>();
    if (n <= 0 || n > (int64_t{1} << 40)) fail("{}: field '{}{}' is {}, expected a positive integer", path_, where, key, n);
    return n;
  }
  int64_t integer(const char* key) const { return integer(root_, key); }
  int64_t integer_or(const char* key, int64_t fallback) const { return has(key) ? integer(key) : fallback; }

  double number(const json& obj, const char* key, const char* where = "") const {
    const json* v = find(obj, key);
    if (!v) fail("{}: missing field '{}{}'", path_, where, key);
    if (!v->is_number()) fail("{}: field '{}{}' is {}, expected a number", path_, where, key, v->dump());
    const double x = v->get<double>();
    if (!std::isfinite(x) || std::fabs(x) > std::numeric_limits<float>::max())
      fail("{}: field '{}{}' is {}, outside float range", path_, where, key, x);
    return x;
  }
  double number_or(const json& obj, const char* key, double fallback, const char* where = "") const {
    return find(obj, key) ? number(obj, key, where) : fallback;
  }
  std::optional<float> optional_number(const json& obj, const char* key, const char* where) const {
    if (!find(obj, key)) return std::nullopt;
    return static_cast<float>(number(obj, key, where));
  }

  bool boolean_or(const char* key, bool fallback) const {
    const json* v = find(root_, key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail("{}: field '{}' is {}, expected true or false", path_, key, v->dump());
    return v->get<bool>();
  }

  const json& root() const { return root_; }
  const std::string& path() const { return path_; }

 private:
  const json& root_;
  std::string path_;
};

json parse_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open (a Hugging Face model directory holds config.json)", path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

// rope_scaling / rope_parameters, as TextModel.set_gguf_parameters and
// LlamaModel.generate_extra_tensors read them.
void read_rope(const Fields& f, const ArchDefaults& d, HfConfig& c) {
  const json* params = f.find(f.root(), "rope_parameters");
  const char* where = "rope_parameters.";
  if (!params) {
    params = f.find(f.root(), "rope_scaling");
    where = "rope_scaling.";
  }
  if (params && !params->is_object()) fail("{}: field '{}' is {}, expected an object", f.path(), where, params->dump());

  c.rope_theta = static_cast<float>(d.rope_theta);
  if (f.has("rope_theta")) c.rope_theta = static_cast<float>(f.number(f.root(), "rope_theta"));
  if (params && f.find(*params, "rope_theta")) c.rope_theta = static_cast<float>(f.number(*params, "rope_theta", where));
  if (!(c.rope_theta > 0)) fail("{}: rope_theta is {}, expected a positive number", f.path(), c.rope_theta);
  if (!params) return;

  const json* type = f.find(*params, "rope_type");
  if (!type) type = f.find(*params, "type");
  if (!type) return;
  if (!type->is_string()) fail("{}: field '{}rope_type' is {}, expected a string", f.path(), where, type->dump());
  std::string name = type->get<std::string>();
  for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));

  if (name == "default") return;
  if (name == "linear") {
    // The converter writes linear scaling only when a factor is given.
    if (!f.find(*params, "factor")) return;
    c.rope_scaling = RopeScaling::Linear;
    c.rope_factor = static_cast<float>(f.number(*params, "factor", where));
  } else if (name == "yarn") {
    if (!f.find(*params, "factor")) return;
    c.rope_scaling = RopeScaling::Yarn;
    c.rope_factor = static_cast<float>(f.number(*params, "factor", where));
    c.rope_orig_ctx = f.integer(*params, "original_max_position_embeddings", where);
    c.yarn_ext_factor = f.optional_number(*params, "extrapolation_factor", where);
    c.yarn_attn_factor = f.optional_number(*params, "attention_factor", where);
    if (!c.yarn_attn_factor) c.yarn_attn_factor = f.optional_number(*params, "attn_factor", where);
    c.yarn_beta_fast = f.optional_number(*params, "beta_fast", where);
    c.yarn_beta_slow = f.optional_number(*params, "beta_slow", where);
    if (c.arch == "gpt-oss") {
      // transformers truncates the correction dims unless told not to; gpt-oss's GGUF has no key
      // for it and its loaders (velocity's, OpenAI's reference) do not truncate.
      const json* truncate = f.find(*params, "truncate");
      if (!truncate || !truncate->is_boolean() || truncate->get<bool>())
        fail("{}: field '{}truncate' is {}: gpt-oss GGUFs mean YaRN without truncated correction dims "
             "(truncate: false, as openai/gpt-oss-* configs say)",
             f.path(), where, truncate ? truncate->dump() : "absent (transformers then truncates)");
      if (c.yarn_attn_factor || c.yarn_ext_factor)
        fail("{}: {}attention_factor / extrapolation_factor are not supported for gpt-oss", f.path(), where);
    }
    if (c.arch == "deepseek2") {
      // llama.cpp's deepseek2 takes cos/sin at magnitude 1 and scales the softmax by
      // (1 + 0.1 mscale_all_dim ln factor)^2: transformers' meaning when mscale == mscale_all_dim
      // (every DeepSeek config) and factor = max_position_embeddings / original context.
      const auto mscale = f.optional_number(*params, "mscale", where);
      const auto mscale_all_dim = f.optional_number(*params, "mscale_all_dim", where);
      if (!mscale || !mscale_all_dim || *mscale != *mscale_all_dim || c.yarn_attn_factor || c.yarn_ext_factor)
        fail("{}: {}mscale / mscale_all_dim must both be given and equal, without attention_factor or "
             "extrapolation_factor: deepseek2 GGUFs keep only 0.1 * mscale_all_dim", f.path(), where);
      if (std::abs(static_cast<double>(c.n_ctx_train) / static_cast<double>(c.rope_orig_ctx) - c.rope_factor) > 1e-3)
        fail("{}: max_position_embeddings {} / {}original_max_position_embeddings {} is not {}factor {}: "
             "transformers would scale by the ratio, llama.cpp by the factor",
             f.path(), c.n_ctx_train, where, c.rope_orig_ctx, where, c.rope_factor);
      c.yarn_log_mul = 0.1f * *mscale_all_dim;
    }
  } else if (name == "llama3") {
    // llama.cpp turns these into the rope_freqs tensor for its llama architecture only.
    if (c.arch != "llama")
      fail("{}: field '{}rope_type' is \"llama3\", which llama.cpp supports for Llama models only, not {}", f.path(),
           where, c.hf_arch);
    c.rope_scaling = RopeScaling::Llama3;
    c.rope_factor = static_cast<float>(f.number_or(*params, "factor", 8.0, where));
    c.llama3_low_freq_factor = static_cast<float>(f.number_or(*params, "low_freq_factor", 1.0, where));
    c.llama3_high_freq_factor = static_cast<float>(f.number_or(*params, "high_freq_factor", 4.0, where));
    // convert_hf_to_gguf.py reads original_max_position_embeddings from the top level of the
    // config (default 8192); transformers reads it from rope_scaling. Llama 3.x configs carry
    // 8192 in rope_scaling only, where both give 8192; when they differ, the model's own
    // (transformers') value wins here.
    c.rope_orig_ctx = f.find(*params, "original_max_position_embeddings")
                          ? f.integer(*params, "original_max_position_embeddings", where)
                          : f.integer_or("original_max_position_embeddings", 8192);
    if (c.llama3_low_freq_factor == c.llama3_high_freq_factor)
      fail("{}: field '{}low_freq_factor' equals high_freq_factor ({})", f.path(), where, c.llama3_low_freq_factor);
  } else {
    fail("{}: field '{}rope_type' is \"{}\": velocity convert supports default, linear, yarn and llama3 RoPE "
         "scaling",
         f.path(), where, name);
  }
}

// GptOssConfig: what llama.cpp's gpt-oss fixes (the layer pattern, the biases, the SwiGLU
// constants) must be what the config says, or the converted model would be another one.
void read_gptoss(const Fields& f, HfConfig& c) {
  const json& root = f.root();
  c.n_expert = f.integer("num_local_experts");
  c.n_expert_used = f.integer_or("num_experts_per_tok", 4);
  c.n_ff_exp = c.n_ff;
  c.sliding_window = f.integer_or("sliding_window", 128);
  if (!f.boolean_or("attention_bias", true))
    fail("{}: field 'attention_bias' is false: gpt-oss GGUFs have Q/K/V/O biases", f.path());
  if (const json* types = f.find(root, "layer_types")) {
    bool ok = types->is_array() && static_cast<int64_t>(types->size()) == c.n_layer;
    for (size_t i = 0; ok && i < types->size(); ++i)
      ok = (*types)[i] == (i % 2 == 0 ? "sliding_attention" : "full_attention");
    if (!ok)
      fail("{}: field 'layer_types' is {}: gpt-oss GGUFs slide on even layers and attend fully on odd ones",
           f.path(), types->dump());
  }
  for (auto [key, value] : {std::pair{"swiglu_limit", 7.0}, std::pair{"swiglu_alpha", 1.702}})
    if (f.find(root, key) && std::abs(f.number(root, key) - value) > 1e-6)
      fail("{}: field '{}' is {}: gpt-oss GGUFs use {}", f.path(), key, f.number(root, key), value);
}

void read_deepseek2(const Fields& f, HfConfig& c) {
  const json& root = f.root();
  c.write_head_dim = false;  // key/value_length are the latent row's (arch_metadata)
  c.q_lora_rank = f.integer_or("q_lora_rank", 0);
  c.kv_lora_rank = f.integer("kv_lora_rank");
  c.qk_nope = f.integer("qk_nope_head_dim");
  c.qk_rope = f.integer("qk_rope_head_dim");
  c.v_head_dim = f.integer("v_head_dim");
  if (c.qk_rope % 2 != 0) fail("{}: field 'qk_rope_head_dim' is {}; RoPE needs pairs", f.path(), c.qk_rope);
  if (c.n_head_kv != c.n_head)
    fail("{}: field 'num_key_value_heads' is {}: DeepSeek's MLA has one key/value per query head ({})", f.path(),
         c.n_head_kv, c.n_head);
  const json* dense = f.find(root, "first_k_dense_replace");
  c.n_dense_lead = dense && dense->is_number_integer() && dense->get<int64_t>() == 0
                       ? 0
                       : f.integer_or("first_k_dense_replace", 0);
  c.n_expert = f.integer("n_routed_experts");
  c.n_expert_used = f.integer("num_experts_per_tok");
  c.n_ff_exp = f.integer("moe_intermediate_size");
  c.n_expert_shared = f.integer_or("n_shared_experts", 0);
  c.expert_weights_scale = static_cast<float>(f.number_or(root, "routed_scaling_factor", 1.0));
  c.expert_weights_norm = f.boolean_or("norm_topk_prob", false);
  const json* scoring = f.find(root, "scoring_func");
  const std::string func = scoring && scoring->is_string() ? scoring->get<std::string>()
                           : c.hf_arch == "DeepseekV3ForCausalLM" ? "sigmoid" : "softmax";
  if (func != "sigmoid" && func != "softmax")
    fail("{}: field 'scoring_func' is {}: expected \"softmax\" or \"sigmoid\"", f.path(), scoring->dump());
  c.sigmoid_gating = func == "sigmoid";
  c.n_group = f.integer_or("n_group", 1);
  c.n_group_used = f.integer_or("topk_group", 1);
  if (c.n_expert % c.n_group != 0 || c.n_group_used > c.n_group)
    fail("{}: {} experts in n_group {} with topk_group {}: the groups must divide the experts and be at least "
         "topk_group", f.path(), c.n_expert, c.n_group, c.n_group_used);
  // transformers' V2 ranks groups by their best expert (group_limited_greedy), llama.cpp by the sum
  // of the best two; they agree only without groups.
  if (c.hf_arch == "DeepseekV2ForCausalLM" && c.n_group > 1 && c.n_group_used < c.n_group)
    fail("{}: DeepSeek-V2's group_limited_greedy (n_group {}, topk_group {}) ranks groups by their best expert; "
         "llama.cpp's deepseek2 by the sum of the best two, which gives another model", f.path(), c.n_group,
         c.n_group_used);
}

}  // namespace

std::vector<std::string> supported_hf_archs() {
  std::vector<std::string> out;
  for (const auto& a : kArchs) out.emplace_back(a.hf_arch);
  return out;
}

HfConfig read_hf_config(const std::string& config_path) {
  const json root = parse_file(config_path);
  if (!root.is_object()) fail("{}: is a JSON {}, expected an object", config_path, root.type_name());
  const Fields f(root, config_path);

  HfConfig c;
  c.path = config_path;
  const json* archs = f.find(root, "architectures");
  if (!archs || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    fail("{}: field 'architectures' is missing or not a list of names (e.g. [\"LlamaForCausalLM\"])", config_path);
  c.hf_arch = (*archs)[0].get<std::string>();
  const ArchDefaults* d = nullptr;
  for (const auto& a : kArchs)
    if (c.hf_arch == a.hf_arch) d = &a;
  if (!d)
    fail("{}: field 'architectures' names {}, which velocity convert does not support (supported: {})",
         config_path, c.hf_arch, fmt::join(supported_hf_archs(), ", "));
  c.arch = d->arch;

  c.n_vocab = f.integer("vocab_size");
  c.n_embd = f.integer("hidden_size");
  c.n_layer = f.integer("num_hidden_layers");
  c.n_ff = f.integer("intermediate_size");
  c.n_head = f.integer("num_attention_heads");
  c.n_head_kv = f.integer_or("num_key_value_heads", d->n_head_kv ? d->n_head_kv : c.n_head);
  c.n_ctx_train = f.integer_or("max_position_embeddings", d->n_ctx_train);
  c.rms_eps = static_cast<float>(f.number_or(root, "rms_norm_eps", d->rms_eps));
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);

  if (f.has("head_dim")) {
    c.head_dim = f.integer("head_dim");
  } else if (d->head_dim) {
    c.head_dim = d->head_dim;
  } else {
    if (c.n_embd % c.n_head != 0)
      fail("{}: hidden_size {} is not a multiple of num_attention_heads {} (and there is no head_dim)", config_path,
           c.n_embd, c.n_head);
    c.head_dim = c.n_embd / c.n_head;
  }
  // TextModel writes key/value_length when the (AutoConfig) config has head_dim, which Qwen3's
  // config classes always have.
  c.write_head_dim = f.has("head_dim") || d->head_dim != 0;

  if (c.n_head % c.n_head_kv != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", config_path, c.n_head, c.n_head_kv);
  if (c.head_dim % 2 != 0) fail("{}: head dimension {} is odd; RoPE needs pairs", config_path, c.head_dim);
  if (!(c.rms_eps > 0)) fail("{}: field 'rms_norm_eps' is {}, expected a positive number", config_path, c.rms_eps);

  read_rope(f, *d, c);

  if (c.hf_arch == "MixtralForCausalLM") {
    c.n_expert = f.integer("num_local_experts");
    c.n_expert_used = f.integer("num_experts_per_tok");
  } else if (c.arch == "qwen3moe") {
    c.n_expert = f.integer("num_experts");
    c.n_expert_used = f.integer("num_experts_per_tok");
    c.n_ff_exp = f.integer("moe_intermediate_size");
    // llama.cpp's qwen3moe graph always renormalises the selected experts' weights
    // (build_moe_ffn(..., norm_w = true, ...)) and the converter writes no key for it, so a model
    // trained without renormalisation would be converted into a different model.
    if (!f.boolean_or("norm_topk_prob", false))
      fail("{}: field 'norm_topk_prob' is {}: llama.cpp's qwen3moe always renormalises the top-k expert weights, "
           "so only models with norm_topk_prob = true convert faithfully",
           config_path, f.has("norm_topk_prob") ? "false" : "absent (Qwen3MoeConfig's default is false)");
    // Every block must be a MoE block: llama.cpp's qwen3moe has no dense blocks.
    if (f.integer_or("decoder_sparse_step", 1) != 1)
      fail("{}: field 'decoder_sparse_step' is {}: llama.cpp's qwen3moe needs every block to be a MoE block (1)",
           config_path, f.integer("decoder_sparse_step"));
    if (const json* mlp_only = f.find(root, "mlp_only_layers"); mlp_only && !(mlp_only->is_array() && mlp_only->empty()))
      fail("{}: field 'mlp_only_layers' is {}: llama.cpp's qwen3moe has no dense blocks", config_path, mlp_only->dump());
  } else if (c.arch == "gpt-oss") {
    read_gptoss(f, c);
  } else if (c.arch == "deepseek2") {
    read_deepseek2(f, c);
  }
  if (c.n_expert > 0 && c.n_expert_used > c.n_expert)
    fail("{}: num_experts_per_tok {} exceeds the {} experts", config_path, c.n_expert_used, c.n_expert);
  return c;
}

}  // namespace velocity::tools::convert
