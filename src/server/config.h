// Configuration of `velocity serve`: the server itself ([server] table) and the models it serves
// (one [[model]] table each), from a TOML file or from command-line flags for a single model.
//
//   [server]
//   host = "0.0.0.0"            port = 8080
//   api_keys = ["sk-..."]       # or api_key_file = "keys.txt" (one key per line, # comments)
//   allowed_hosts = ["gpu-box.lan"]           # Host names served without a key (see below)
//   cors_origins = ["http://localhost:3000"]  # browser pages of other origins allowed to call
//   [[model]]
//   name = "qwen3-8b"           path = "/models/qwen3-8b-q4_k_m.gguf"
//   device = "cuda:0"           ctx = 8192    slots = 4
//   [model.sampling]            # defaults for requests that do not set them
//   temperature = 0.7
//
// Everything is checked before anything loads: unknown keys, wrong types, out-of-range values,
// duplicate model names and missing paths throw velocity::Error naming "file:line:column", the
// key and what was expected. Whether a device exists is checked later, by the engine at load.
// Security default: a non-loopback host without any API key is an error unless
// allow_no_key_public = true says so explicitly. Without keys, requests must name the server in
// their Host header by IP address, "localhost", the bound host or one of allowed_hosts (against
// DNS rebinding); with or without keys, a browser's cross-origin request (an Origin header) is
// refused unless its origin is listed in cors_origins (README.md, "Security").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace velocity::server {

// Sampling defaults of one model; a request's own fields win over these.
struct SamplingDefaults {
  float temperature = 0.8f;         // [0, 2]; 0 = greedy
  float top_p = 0.95f;              // (0, 1]; 1 = off
  int32_t top_k = 40;               // >= 0; 0 = off
  float min_p = 0.05f;              // [0, 1]; 0 = off
  float repeat_penalty = 1.0f;      // > 0; 1 = off
  int32_t repeat_last_n = 64;       // >= 0 tokens
  float presence_penalty = 0.0f;    // [-2, 2]
  float frequency_penalty = 0.0f;   // [-2, 2]
  std::optional<uint64_t> seed;     // unset: a fresh random seed per request
  int64_t max_tokens = -1;          // used when the request gives none; -1 = until the context is full
};

// A compute device as written in the config: "auto" (the default: engine::default_device(), cuda:0
// when a supported GPU is present, else the CPU), "cpu" or "cuda:N".
struct DeviceSpec {
  enum class Kind { Auto, Cpu, Cuda } kind = Kind::Auto;
  int32_t index = 0;  // N of "cuda:N"; 0 otherwise
  std::string to_string() const;
};
// Parses "auto" / "cpu" / "cuda:N" (N a decimal in [0, 1023]); throws velocity::Error otherwise.
DeviceSpec parse_device(std::string_view text);

struct ModelEntry {
  std::string name;                   // the "model" field clients send; unique; default: file stem
  std::string path;                   // GGUF file (first split for split files); must exist
  DeviceSpec device;                  // where the model runs
  int32_t ctx = 0;                    // context length per slot, tokens; >= 16, or 0: the model's
                                      // training context, at most 4096
  int32_t slots = 1;                  // sequences decoded together (parallel requests); [1, 256]
  bool mmap = true;                   // false: read the file into memory (--no-mmap)
  int32_t gpu_layers = -1;            // llama.cpp's -ngl: the last N layers on the GPU `device`
                                      // names, the rest on the CPU; -1 = all (model::Placement)
  int32_t prefill_chunk = 128;        // prompt tokens per step while other requests decode; [1, 512]
  int32_t max_queue = -1;             // requests waiting for a slot before 429; -1 = server default
  double generation_timeout_s = 0;    // a request running longer (queue + prefill + decode) stops
                                      // with finish_reason "length"; 0 = no limit
  std::string cache_type_k = "f16";   // KV cache element type: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl
  std::string cache_type_v = "f16";
  std::string chat_template;          // overrides the GGUF's: a built-in template's name ("chatml",
                                      // tokenizer/builtin_templates.h) or inline Jinja; "" = the GGUF's
  std::string chat_template_file;     // or a file holding it (read at load); at most one of the two
  // Control-token text inside message content ("<|eot_id|>") becomes control tokens, so a user
  // can forge turns and roles (llama.cpp's and transformers' behaviour). Off by default: content
  // is tokenised as plain text and only the template's own markers are control tokens.
  bool parse_special_in_content = false;
  SamplingDefaults sampling;
};

struct ServerSettings {
  std::string host = "127.0.0.1";     // address to bind
  uint16_t port = 8080;               // 0 = any free port
  int32_t threads = 2;                // I/O threads (HTTP parsing and writing only); [1, 64]
  std::vector<std::string> api_keys;  // accepted `Authorization: Bearer <key>`; empty = no auth
  std::string api_key_file;           // more keys, one per line (read by load/validate into api_keys)
  bool allow_no_key_public = false;   // permit a non-loopback host without keys
  std::vector<std::string> allowed_hosts;  // more names accepted in the Host header when there is
                                           // no key (name only, no port); "*" = any (no check)
  std::vector<std::string> cors_origins;   // browser origins allowed to call the API from another
                                           // origin ("http://localhost:3000"); "null"; "*" = any
  int64_t max_body_bytes = 1 << 20;   // request bodies above this get 413; [1 KiB, 1 GiB]
  int32_t max_queue = 64;             // default per-model queue limit; >= 0
  double header_timeout_s = 10;       // to receive a request's headers (and keep-alive idle time)
  double request_timeout_s = 60;      // to receive a request's body; also the limit on one stalled write
  double shutdown_grace_s = 30;       // running requests may finish for this long at shutdown
  double keepalive_interval_s = 10;   // SSE ": keep-alive" comment after this much silence
};

struct ServerConfig {
  ServerSettings server;
  std::vector<ModelEntry> models;     // at least one
  std::string source;                 // the file it came from, or "command line"
};

// Parses TOML text; `source_name` is used in messages ("serve.toml:3:1: ..."). Relative paths
// (model path, chat_template_file, api_key_file) are resolved against `base_dir` when it is not
// empty. Validates everything (see validate()). Throws velocity::Error.
ServerConfig parse_config(std::string_view toml_text, std::string_view source_name, std::string_view base_dir = {});
// Reads and parses a file (relative paths resolve against its folder).
ServerConfig load_config_file(const std::string& path);

// The checks shared by both sources, for a config built in code: ranges, duplicate names,
// existing paths, the key requirement; reads api_key_file into api_keys. `where` prefixes the
// messages. Throws velocity::Error.
void validate(ServerConfig& config, std::string_view where);

// `velocity serve` flags. Either a config file (host/port/key flags then override its [server]
// values) or a single model given by --model and its options; not both.
struct ServeFlags {
  std::string config_file;                 // --config
  std::optional<std::string> host;         // --host
  std::optional<int32_t> port;             // --port
  std::vector<std::string> api_keys;       // --api-key (repeatable)
  std::string api_key_file;                // --api-key-file
  bool allow_no_key_public = false;        // --allow-no-key-public
  std::vector<std::string> allowed_hosts;  // --allowed-host (repeatable; added to the config's)
  std::vector<std::string> cors_origins;   // --cors-origin (repeatable; added to the config's)
  // Single model.
  std::string model_path;                  // --model
  std::string model_name;                  // --name (default: the file stem)
  std::string device = "auto";             // --device
  std::optional<int32_t> ctx;              // --ctx
  std::optional<int32_t> slots;            // --slots
  std::optional<int32_t> prefill_chunk;    // --prefill-chunk
  std::optional<int32_t> gpu_layers;       // -ngl / --gpu-layers
  bool no_mmap = false;                    // --no-mmap
  std::string cache_type_k, cache_type_v;  // --cache-type-k / -v ("" = default)
  std::string chat_template;               // --chat-template (a built-in name or Jinja)
  std::string chat_template_file;          // --chat-template-file
  std::optional<float> temperature, top_p, min_p, repeat_penalty;
  std::optional<int32_t> top_k;
  std::optional<uint64_t> seed;
};
ServerConfig config_from_flags(const ServeFlags& flags);

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(std::string_view host);

}  // namespace velocity::server
