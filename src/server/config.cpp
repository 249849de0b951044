// TOML and flag parsing for the server config. Reading (types, unknown keys) and validating
// (ranges, cross checks) are separate so that both sources share the checks; the TOML reader
// records where each key was written so that validation errors can say "file:line:column".
#include "server/config.h"

#include <toml++/toml.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "tokenizer/builtin_templates.h"
#include "tokenizer/chat_template.h"

namespace velocity::server {

namespace {

namespace fs = std::filesystem;

// Key path ("server.port", "model[1].sampling.top_k") -> where it is in the source.
using Locator = std::function<std::string(const std::string& key_path)>;

const char* type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

std::string position(std::string_view source, const toml::source_region& region) {
  return fmt::format("{}:{}:{}", source, region.begin.line, region.begin.column);
}

// Reads one TOML table: typed getters that fail on the wrong type, then finish() rejects
// every key that no getter asked for.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, std::string_view source,
              std::map<std::string, std::string>& positions)
      : table_(table), path_(std::move(path)), source_(source), positions_(positions) {
    positions_[path_] = position(source_, table.source());
  }

  const toml::node* get(const std::string& key) {
    known_.insert(key);
    const toml::node* node = table_.get(key);
    if (node) positions_[full(key)] = position(source_, node->source());
    return node;
  }

  void string(const std::string& key, std::string& out) {
    if (const toml::node* n = get(key)) {
      if (!n->is_string()) type_error(*n, key, "a string");
      out = n->as_string()->get();
    }
  }
  void boolean(const std::string& key, bool& out) {
    if (const toml::node* n = get(key)) {
      if (!n->is_boolean()) type_error(*n, key, "true or false");
      out = n->as_boolean()->get();
    }
  }
  // Integers are read as int64 and range-checked later; values outside T are rejected here.
  template <class T>
  void integer(const std::string& key, T& out) {
    if (const toml::node* n = get(key)) {
      if (!n->is_integer()) type_error(*n, key, "an integer");
      int64_t v = n->as_integer()->get();
      if constexpr (std::is_unsigned_v<T>) {
        if (v < 0 || (uint64_t)v > (uint64_t)std::numeric_limits<T>::max())
          fail("{}: {}: must be in [0, {}], got {}", position(source_, n->source()), full(key),
               std::numeric_limits<T>::max(), v);
      } else {
        if (v < (int64_t)std::numeric_limits<T>::min() || v > (int64_t)std::numeric_limits<T>::max())
          fail("{}: {}: {} is out of range", position(source_, n->source()), full(key), v);
      }
      out = (T)v;
    }
  }
  template <class T>
  void integer(const std::string& key, std::optional<T>& out) {
    if (table_.contains(key)) {
      T v{};
      integer(key, v);
      out = v;
    } else {
      known_.insert(key);
    }
  }
  template <class T>
  void number(const std::string& key, T& out) {
    if (const toml::node* n = get(key)) {
      if (n->is_integer()) {
        out = (T)n->as_integer()->get();
      } else if (n->is_floating_point()) {
        out = (T)n->as_floating_point()->get();
      } else {
        type_error(*n, key, "a number");
      }
    }
  }
  void string_list(const std::string& key, std::vector<std::string>& out) {
    if (const toml::node* n = get(key)) {
      if (!n->is_array()) type_error(*n, key, "an array of strings");
      for (const toml::node& item : *n->as_array()) {
        if (!item.is_string()) type_error(item, key, "an array of strings");
        out.push_back(item.as_string()->get());
      }
    }
  }
  const toml::table* subtable(const std::string& key) {
    if (const toml::node* n = get(key)) {
      if (!n->is_table()) type_error(*n, key, "a table");
      return n->as_table();
    }
    return nullptr;
  }

  // Rejects the keys nobody asked for, naming the first one.
  void finish(std::string_view known_list) const {
    for (auto&& [key, node] : table_) {
      if (!known_.count(std::string(key.str()))) {
        fail("{}: {}: unknown key (known keys: {})", position(source_, key.source()), full(std::string(key.str())),
             known_list);
      }
    }
  }

  std::string full(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const std::string& path() const { return path_; }

 private:
  [[noreturn]] void type_error(const toml::node& node, const std::string& key, std::string_view expected) const {
    fail("{}: {}: expected {}, got {}", position(source_, node.source()), full(key), expected, type_name(node));
  }

  const toml::table& table_;
  std::string path_;
  std::string_view source_;
  std::map<std::string, std::string>& positions_;
  std::set<std::string> known_;
};

void read_sampling(TableReader& r, SamplingDefaults& s) {
  r.number("temperature", s.temperature);
  r.number("top_p", s.top_p);
  r.integer("top_k", s.top_k);
  r.number("min_p", s.min_p);
  r.number("repeat_penalty", s.repeat_penalty);
  r.integer("repeat_last_n", s.repeat_last_n);
  r.number("presence_penalty", s.presence_penalty);
  r.number("frequency_penalty", s.frequency_penalty);
  r.integer("seed", s.seed);
  r.integer("max_tokens", s.max_tokens);
  r.finish("temperature, top_p, top_k, min_p, repeat_penalty, repeat_last_n, presence_penalty, "
           "frequency_penalty, seed, max_tokens");
}

std::string resolve(std::string_view base_dir, const std::string& path) {
  if (path.empty() || base_dir.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

std::vector<std::string> read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read the API key file '{}'", path);
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    size_t b = line.find_first_not_of(" \t\r");
    size_t e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    keys.push_back(line.substr(b, e - b + 1));
  }
  if (keys.empty()) fail("the API key file '{}' holds no key", path);
  return keys;
}

// A host name as allowed_hosts takes it: the name alone ("gpu-box.lan", "[fe80::1]"), no
// scheme, port or path.
bool valid_host_name(std::string_view h) {
  if (h.empty() || h.find_first_of(" \t\r\n/\\@?#") != std::string_view::npos) return false;
  if (h.front() == '[') return h.size() > 2 && h.back() == ']' && h.find(']') == h.size() - 1;
  return h.find_first_of("[]:") == std::string_view::npos;
}

// An origin as browsers send it: scheme://host[:port], no path, no trailing slash.
bool valid_origin(std::string_view o) {
  const size_t sep = o.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  for (size_t i = 0; i < sep; ++i) {
    const char c = o[i];
    if (!(std::isalnum((unsigned char)c) || c == '+' || c == '-' || c == '.')) return false;
  }
  std::string_view authority = o.substr(sep + 3);
  return !authority.empty() && authority.find_first_of(" \t\r\n/\\@?#") == std::string_view::npos;
}

bool valid_cache_type(std::string_view t) {
  static const std::set<std::string_view> kTypes = {"f32", "f16", "bf16", "q8_0", "q4_0",
                                                    "q4_1", "q5_0", "q5_1", "iq4_nl"};
  return kTypes.count(t) > 0;
}

// All range and cross checks; `at(key_path)` gives the location prefix of a key.
void validate_with(ServerConfig& config, const Locator& at) {
  auto bad = [&](const std::string& key, const std::string& message) {
    fail("{}: {}: {}", at(key), key, message);
  };
  auto range = [&](const std::string& key, double v, double lo, double hi, bool lo_open = false) {
    if (!std::isfinite(v) || (lo_open ? v <= lo : v < lo) || v > hi)
      bad(key, fmt::format("must be in {}{}, {}], got {}", lo_open ? "(" : "[", lo, hi, v));
  };

  ServerSettings& s = config.server;
  if (s.host.empty()) bad("server.host", "must not be empty");
  if (s.threads < 1 || s.threads > 64) bad("server.threads", fmt::format("must be in [1, 64], got {}", s.threads));
  range("server.max_body_bytes", (double)s.max_body_bytes, 1024, 1 << 30);
  if (s.max_queue < 0) bad("server.max_queue", fmt::format("must be >= 0, got {}", s.max_queue));
  range("server.header_timeout_s", s.header_timeout_s, 0, 3600, true);
  range("server.request_timeout_s", s.request_timeout_s, 0, 86400, true);
  range("server.shutdown_grace_s", s.shutdown_grace_s, 0, 86400);
  range("server.keepalive_interval_s", s.keepalive_interval_s, 0, 3600, true);
  for (const std::string& key : s.api_keys)
    if (key.empty() || key.find_first_of(" \t\r\n") != std::string::npos)
      bad("server.api_keys", "a key must be non-empty and without whitespace");
  if (!s.api_key_file.empty()) {
    try {
      for (std::string& key : read_key_file(s.api_key_file)) s.api_keys.push_back(std::move(key));
    } catch (const Error& e) {
      bad("server.api_key_file", e.what());
    }
    s.api_key_file.clear();  // read once
  }
  for (const std::string& h : s.allowed_hosts)
    if (h != "*" && !valid_host_name(h))
      bad("server.allowed_hosts", fmt::format("'{}' is not a host name: give the name alone, without scheme or port "
                                              "(\"gpu-box.lan\"), or \"*\" to accept any Host",
                                              h));
  for (const std::string& o : s.cors_origins)
    if (o != "*" && o != "null" && !valid_origin(o))
      bad("server.cors_origins", fmt::format("'{}' is not an origin: give scheme://host[:port] without a path "
                                             "(\"http://localhost:3000\"), \"null\" or \"*\" for any",
                                             o));
  if (!is_loopback_host(s.host) && s.api_keys.empty() && !s.allow_no_key_public) {
    bad("server.host", fmt::format("binding '{}' (not loopback) without any API key would expose the server to "
                                   "everyone; set api_keys or api_key_file, or allow_no_key_public = true",
                                   s.host));
  }

  if (config.models.empty()) bad("model", "no model configured: add a [[model]] table with name and path");
  std::map<std::string, size_t> names;
  for (size_t i = 0; i < config.models.size(); ++i) {
    ModelEntry& m = config.models[i];
    std::string p = fmt::format("model[{}]", i);
    if (m.path.empty()) bad(p + ".path", "missing: the GGUF file to serve");
    std::error_code ec;
    if (!fs::exists(m.path, ec)) bad(p + ".path", fmt::format("'{}' does not exist", m.path));
    if (fs::is_directory(m.path, ec)) bad(p + ".path", fmt::format("'{}' is a folder, not a GGUF file", m.path));
    if (m.name.empty()) m.name = fs::path(m.path).stem().string();
    for (unsigned char c : m.name)
      if (c < 0x20 || c == 0x7f) bad(p + ".name", "must not contain control characters");
    auto [it, inserted] = names.emplace(m.name, i);
    if (!inserted) bad(p + ".name", fmt::format("duplicate model name '{}' (also model[{}])", m.name, it->second));
    if (m.ctx != 0 && (m.ctx < 16 || m.ctx > (1 << 24)))
      bad(p + ".ctx", fmt::format("must be 0 (the model's) or in [16, 16777216], got {}", m.ctx));
    if (m.slots < 1 || m.slots > 256) bad(p + ".slots", fmt::format("must be in [1, 256], got {}", m.slots));
    if (m.gpu_layers < -1) bad(p + ".gpu_layers", fmt::format("must be >= 0 (or -1: all), got {}", m.gpu_layers));
    if (m.prefill_chunk < 1 || m.prefill_chunk > 512)
      bad(p + ".prefill_chunk", fmt::format("must be in [1, 512], got {}", m.prefill_chunk));
    if (m.max_queue < -1) bad(p + ".max_queue", fmt::format("must be >= 0 (or -1 for the server's), got {}", m.max_queue));
    if (m.max_queue == -1) m.max_queue = s.max_queue;
    range(p + ".generation_timeout_s", m.generation_timeout_s, 0, 1e7);
    if (!valid_cache_type(m.cache_type_k)) bad(p + ".cache_type_k", fmt::format("unknown type '{}'", m.cache_type_k));
    if (!valid_cache_type(m.cache_type_v)) bad(p + ".cache_type_v", fmt::format("unknown type '{}'", m.cache_type_v));
    if (!m.chat_template.empty() && !m.chat_template_file.empty())
      bad(p + ".chat_template", "give chat_template or chat_template_file, not both");
    // A template given here is parsed now, so that its syntax errors stop serve before the port
    // opens and before any weights load (the GGUF's own template is parsed after the load).
    if (!m.chat_template.empty()) {
      try {
        ChatTemplate parsed(tokenizer::resolve_chat_template(m.chat_template));
      } catch (const Error& e) {
        bad(p + ".chat_template", e.what());
      }
    }
    if (!m.chat_template_file.empty()) {
      std::ifstream in(m.chat_template_file, std::ios::binary);
      if (!fs::exists(m.chat_template_file, ec) || !in) {
        bad(p + ".chat_template_file", fmt::format("'{}' does not exist or cannot be read", m.chat_template_file));
      } else {
        std::stringstream text;
        text << in.rdbuf();
        try {
          ChatTemplate parsed(text.str());
        } catch (const Error& e) {
          bad(p + ".chat_template_file", fmt::format("{}: {}", m.chat_template_file, e.what()));
        }
      }
    }
    const SamplingDefaults& d = m.sampling;
    std::string q = p + ".sampling.";
    range(q + "temperature", d.temperature, 0, 2);
    range(q + "top_p", d.top_p, 0, 1, true);
    if (d.top_k < 0) bad(q + "top_k", fmt::format("must be >= 0, got {}", d.top_k));
    range(q + "min_p", d.min_p, 0, 1);
    range(q + "repeat_penalty", d.repeat_penalty, 0, 100, true);
    if (d.repeat_last_n < 0) bad(q + "repeat_last_n", fmt::format("must be >= 0, got {}", d.repeat_last_n));
    range(q + "presence_penalty", d.presence_penalty, -2, 2);
    range(q + "frequency_penalty", d.frequency_penalty, -2, 2);
    if (d.max_tokens < -1 || d.max_tokens == 0)
      bad(q + "max_tokens", fmt::format("must be >= 1 (or -1 for no limit), got {}", d.max_tokens));
  }
}

}  // namespace

std::string DeviceSpec::to_string() const {
  return kind == Kind::Auto ? "auto" : kind == Kind::Cpu ? "cpu" : fmt::format("cuda:{}", index);
}

DeviceSpec parse_device(std::string_view text) {
  if (text == "auto") return {};
  if (text == "cpu") return DeviceSpec{DeviceSpec::Kind::Cpu, 0};
  if (text.starts_with("cuda:")) {
    std::string_view digits = text.substr(5);
    int32_t index = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec == std::errc() && end == digits.data() + digits.size() && !digits.empty() && index >= 0 &&
        index <= 1023 && (digits.size() == 1 || digits[0] != '0'))
      return DeviceSpec{DeviceSpec::Kind::Cuda, index};
  }
  fail("device '{}' is not \"auto\", \"cpu\" or \"cuda:N\"", text);
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  if (!host.starts_with("127.")) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') ++dots;
    else if (c < '0' || c > '9') return false;
  }
  return dots == 3;
}

void validate(ServerConfig& config, std::string_view where) {
  std::string prefix(where);
  validate_with(config, [&](const std::string&) { return prefix; });
}

ServerConfig parse_config(std::string_view toml_text, std::string_view source_name, std::string_view base_dir) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    fail("{}: {}", position(source_name, e.source()), e.description());
  }
  ServerConfig config;
  config.source = std::string(source_name);
  std::map<std::string, std::string> positions;
  TableReader top(root, "", source_name, positions);

  if (const toml::table* t = top.subtable("server")) {
    ServerSettings& s = config.server;
    TableReader r(*t, "server", source_name, positions);
    r.string("host", s.host);
    r.integer("port", s.port);
    r.integer("threads", s.threads);
    r.string_list("api_keys", s.api_keys);
    r.string("api_key_file", s.api_key_file);
    s.api_key_file = resolve(base_dir, s.api_key_file);
    r.boolean("allow_no_key_public", s.allow_no_key_public);
    r.string_list("allowed_hosts", s.allowed_hosts);
    r.string_list("cors_origins", s.cors_origins);
    r.integer("max_body_bytes", s.max_body_bytes);
    r.integer("max_queue", s.max_queue);
    r.number("header_timeout_s", s.header_timeout_s);
    r.number("request_timeout_s", s.request_timeout_s);
    r.number("shutdown_grace_s", s.shutdown_grace_s);
    r.number("keepalive_interval_s", s.keepalive_interval_s);
    r.finish("host, port, threads, api_keys, api_key_file, allow_no_key_public, allowed_hosts, cors_origins, "
             "max_body_bytes, max_queue, header_timeout_s, request_timeout_s, shutdown_grace_s, keepalive_interval_s");
  }
  if (const toml::node* n = top.get("model")) {
    if (!n->is_array_of_tables()) fail("{}: model: expected [[model]] tables", position(source_name, n->source()));
    size_t i = 0;
    for (const toml::node& item : *n->as_array()) {
      ModelEntry m;
      TableReader r(*item.as_table(), fmt::format("model[{}]", i++), source_name, positions);
      r.string("name", m.name);
      r.string("path", m.path);
      m.path = resolve(base_dir, m.path);
      std::string device = "auto";
      r.string("device", device);
      try {
        m.device = parse_device(device);
      } catch (const Error& e) {
        fail("{}: {}: {}", positions[r.full("device")], r.full("device"), e.what());
      }
      r.integer("ctx", m.ctx);
      r.integer("slots", m.slots);
      r.integer("prefill_chunk", m.prefill_chunk);
      r.integer("gpu_layers", m.gpu_layers);
      r.boolean("mmap", m.mmap);
      r.integer("max_queue", m.max_queue);
      r.number("generation_timeout_s", m.generation_timeout_s);
      r.string("cache_type_k", m.cache_type_k);
      r.string("cache_type_v", m.cache_type_v);
      r.string("chat_template", m.chat_template);
      r.string("chat_template_file", m.chat_template_file);
      m.chat_template_file = resolve(base_dir, m.chat_template_file);
      r.boolean("parse_special_in_content", m.parse_special_in_content);
      if (const toml::table* st = r.subtable("sampling")) {
        TableReader sr(*st, r.full("sampling"), source_name, positions);
        read_sampling(sr, m.sampling);
      }
      r.finish("name, path, device, ctx, slots, gpu_layers, mmap, prefill_chunk, max_queue, generation_timeout_s, cache_type_k, cache_type_v, chat_template, "
               "chat_template_file, parse_special_in_content, sampling");
      config.models.push_back(std::move(m));
    }
  }
  top.finish("server, model");

  // A key that is absent points at its table, and a table that is absent at the file.
  std::string file(source_name);
  validate_with(config, [&](const std::string& key) {
    for (std::string k = key;;) {
      if (auto it = positions.find(k); it != positions.end()) return it->second;
      size_t cut = k.find_last_of(".");
      if (cut == std::string::npos) return file;
      k.resize(cut);
    }
  });
  return config;
}

ServerConfig load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read the config file '{}'", path);
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path, fs::path(path).parent_path().string());
}

ServerConfig config_from_flags(const ServeFlags& flags) {
  static const std::map<std::string, std::string> kFlag = {
      {"server.host", "--host"},          {"server.port", "--port"},
      {"server.api_keys", "--api-key"},   {"server.api_key_file", "--api-key-file"},
      {"server.allowed_hosts", "--allowed-host"}, {"server.cors_origins", "--cors-origin"},
      {"model", "--model"},               {"model[0].path", "--model"},
      {"model[0].name", "--name"},        {"model[0].ctx", "--ctx"},
      {"model[0].slots", "--slots"},      {"model[0].prefill_chunk", "--prefill-chunk"},
      {"model[0].gpu_layers", "--gpu-layers"}, {"model[0].mmap", "--no-mmap"},
      {"model[0].cache_type_k", "--cache-type-k"},
      {"model[0].cache_type_v", "--cache-type-v"}, {"model[0].chat_template", "--chat-template"},
      {"model[0].chat_template_file", "--chat-template-file"},
      {"model[0].sampling.temperature", "--temperature"}, {"model[0].sampling.top_p", "--top-p"},
      {"model[0].sampling.top_k", "--top-k"}, {"model[0].sampling.min_p", "--min-p"},
      {"model[0].sampling.repeat_penalty", "--repeat-penalty"}};
  bool model_flags = !flags.model_path.empty() || !flags.model_name.empty() || flags.ctx || flags.slots || flags.prefill_chunk || flags.gpu_layers || flags.no_mmap ||
                     !flags.cache_type_k.empty() || !flags.cache_type_v.empty() || !flags.chat_template.empty() ||
                     !flags.chat_template_file.empty() ||
                     flags.temperature || flags.top_p || flags.min_p || flags.repeat_penalty || flags.top_k ||
                     flags.seed || flags.device != "auto";
  ServerConfig config;
  if (!flags.config_file.empty()) {
    if (model_flags) fail("command line: give either --config or --model and its options, not both");
    config = load_config_file(flags.config_file);
  } else {
    config.source = "command line";
    ModelEntry m;
    m.path = flags.model_path;
    m.name = flags.model_name;
    try {
      m.device = parse_device(flags.device);
    } catch (const Error& e) {
      fail("command line: --device: {}", e.what());
    }
    if (flags.ctx) m.ctx = *flags.ctx;
    if (flags.slots) m.slots = *flags.slots;
    if (flags.prefill_chunk) m.prefill_chunk = *flags.prefill_chunk;
    if (flags.gpu_layers) m.gpu_layers = *flags.gpu_layers;
    m.mmap = !flags.no_mmap;
    if (!flags.cache_type_k.empty()) m.cache_type_k = flags.cache_type_k;
    if (!flags.cache_type_v.empty()) m.cache_type_v = flags.cache_type_v;
    m.chat_template = flags.chat_template;
    m.chat_template_file = flags.chat_template_file;
    if (flags.temperature) m.sampling.temperature = *flags.temperature;
    if (flags.top_p) m.sampling.top_p = *flags.top_p;
    if (flags.min_p) m.sampling.min_p = *flags.min_p;
    if (flags.repeat_penalty) m.sampling.repeat_penalty = *flags.repeat_penalty;
    if (flags.top_k) m.sampling.top_k = *flags.top_k;
    if (flags.seed) m.sampling.seed = *flags.seed;
    if (!m.path.empty()) config.models.push_back(std::move(m));
  }
  ServerSettings& s = config.server;
  if (flags.host) s.host = *flags.host;
  if (flags.port) {
    if (*flags.port < 0 || *flags.port > 65535) fail("command line: --port: must be in [0, 65535], got {}", *flags.port);
    s.port = (uint16_t)*flags.port;
  }
  for (const std::string& key : flags.api_keys) s.api_keys.push_back(key);
  if (!flags.api_key_file.empty()) s.api_key_file = flags.api_key_file;
  if (flags.allow_no_key_public) s.allow_no_key_public = true;
  s.allowed_hosts.insert(s.allowed_hosts.end(), flags.allowed_hosts.begin(), flags.allowed_hosts.end());
  s.cors_origins.insert(s.cors_origins.end(), flags.cors_origins.begin(), flags.cors_origins.end());
  validate_with(config, [](const std::string& key) {
    auto it = kFlag.find(key);
    return it == kFlag.end() ? std::string("command line") : "command line (" + it->second + ")";
  });
  return config;
}

}  // namespace velocity::server
