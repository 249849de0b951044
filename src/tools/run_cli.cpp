#include "tools/run_cli.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <random>

#include "core/error.h"
#include "model/model.h"
#include "tokenizer/builtin_templates.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace velocity::tools {

runtime::SamplingParams RunOptions::default_sampling() {
  runtime::SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.min_p = 0.05f;
  return p;
}

std::string process_escapes(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    switch (text[i + 1]) {
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case '\\': out += '\\'; break;
      case '"': out += '"'; break;
      case '\'': out += '\''; break;
      case '0': out += '\0'; break;
      default: out += text[i]; out += text[i + 1]; break;
    }
    ++i;
  }
  return out;
}

DType parse_cache_type(const std::string& name) {
  const std::optional<DType> type = dtype_from_name(name);
  if (!type || (*type != DType::F32 && *type != DType::F16 && *type != DType::Q8_0 && *type != DType::Q4_0 &&
                *type != DType::Q4_1 && *type != DType::Q5_1))
    fail("cache type '{}' is not one of f32, f16, q8_0, q4_0, q4_1, q5_1", name);
  return *type;
}

namespace {

std::string chat_template_source(const std::string& chat_template) {
  try {
    return tokenizer::resolve_chat_template(chat_template);
  } catch (const Error& e) {
    fail("--chat-template: {}", e.what());
  }
}

}  // namespace

std::string apply_chat_template(const tokenizer::Vocab& vocab, const std::string& user_message,
                                const std::string& model_name, const std::string& chat_template) {
  const std::string source = chat_template.empty() ? vocab.chat_template : chat_template_source(chat_template);
  if (source.empty())
    fail("{}: the model has no chat template (tokenizer.chat_template); give one with --chat-template NAME, or run "
         "without --chat",
         model_name);
  auto token_text = [&](int32_t id) {
    return id >= 0 && (size_t)id < vocab.tokens.size() ? vocab.tokens[(size_t)id] : std::string();
  };
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = nlohmann::ordered_json::array({{{"role", "user"}, {"content", user_message}}});
  context["add_generation_prompt"] = true;
  context["bos_token"] = token_text(vocab.bos);
  context["eos_token"] = token_text(vocab.eos);
  try {
    return ChatTemplate(source).render(context);
  } catch (const Error& e) {
    fail("{}: chat template: {}", model_name, e.what());
  }
}

RunReport run_prompt(const RunOptions& options, std::ostream& out) {
  // An unknown --chat-template name fails before the model loads.
  if (options.chat && !options.chat_template.empty()) (void)chat_template_source(options.chat_template);
  model::LoadOptions load;
  load.n_ctx = options.n_ctx;
  load.n_slots = 1;
  load.max_logits = 1;  // only the last token's: a big vocabulary would cost max_batch rows otherwise
  load.cache_type_k = options.cache_type_k;
  load.cache_type_v = options.cache_type_v;
  load.n_threads = options.n_threads;
  load.placement.device = options.device.empty() ? engine::default_device() : engine::Device::parse(options.device);
  load.device_is_default = options.device.empty();
  load.placement.gpu_layers = options.gpu_layers;
  load.mmap = !options.no_mmap;
  const std::unique_ptr<model::Model> model = model::Model::load(options.model_path, load);
  const tokenizer::Tokenizer tok(tokenizer::Vocab::from_gguf(model->file(), options.model_path));

  std::vector<int32_t> prompt;
  if (options.chat) {
    prompt = tok.encode(apply_chat_template(tok.vocab(), options.prompt, options.model_path, options.chat_template),
                        /*add_special=*/true, /*parse_special=*/true);
    // Templates that write bos_token themselves would get a second BOS from add_special.
    const int32_t bos = tok.vocab().bos;
    if (prompt.size() >= 2 && bos >= 0 && prompt[0] == bos && prompt[1] == bos) prompt.erase(prompt.begin());
  } else {
    prompt = tok.encode(options.prompt, /*add_special=*/true, /*parse_special=*/true);
  }

  RunReport report;
  report.seed = options.seed ? *options.seed : (uint64_t{std::random_device{}()} << 32 | std::random_device{}());
  runtime::SamplingParams sampling = options.sampling;
  sampling.seed = report.seed;
  runtime::Sampler sampler(sampling, (int32_t)model->config().n_vocab);

  runtime::GenerateOptions gen;
  gen.n_predict = options.n_predict;
  gen.stop = options.stop;
  gen.ignore_eos = options.ignore_eos;
  gen.skip_special = !options.print_special;
  runtime::Generator generator(*model, tok);
  report.result = generator.generate(prompt, sampler, gen, [&out](std::string_view text) {
    out << text;
    out.flush();
  });
  return report;
}

std::string format_run_summary(const RunReport& report) {
  const runtime::GenerationResult& r = report.result;
  return fmt::format("prompt: {} tokens, {:.2f} tok/s | generated: {} tokens, {:.2f} tok/s | seed: {} | finish: {} ({})",
                     r.n_prompt_tokens, r.prompt_tokens_per_second(), r.n_generated, r.decode_tokens_per_second(),
                     report.seed, runtime::finish_reason_name(r.finish), runtime::finish_reason_detail(r.finish));
}

}  // namespace velocity::tools
