#include "server/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace velocity::server {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("velocity_config_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    write("a.gguf", "GGUF");
    write("b.gguf", "GGUF");
    write("keys.txt", "# keys\nsk-one\n\n  sk-two  \n");
    write("template.jinja", "{{ messages }}");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  ServerConfig parse(const std::string& text) { return parse_config(text, "serve.toml", dir_.string()); }
  // The message of the velocity::Error that parsing throws ("" when none).
  std::string error_of(const std::string& text) {
    try {
      parse(text);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
};

TEST_F(ConfigTest, ValidFileWithTwoModels) {
  ServerConfig c = parse(R"(
[server]
host = "0.0.0.0"
port = 9000
api_key_file = "keys.txt"
max_body_bytes = 2097152
request_timeout_s = 30
keepalive_interval_s = 2.5

[[model]]
name = "alpha"
path = "a.gguf"
device = "cuda:1"
ctx = 8192
slots = 4
prefill_chunk = 64
cache_type_k = "q8_0"
chat_template_file = "template.jinja"
parse_special_in_content = true
[model.sampling]
temperature = 0.2
top_k = 20
seed = 42

[[model]]
path = "b.gguf"
max_queue = 3
sampling = { top_p = 0.5, min_p = 0 }
)");
  EXPECT_EQ(c.server.host, "0.0.0.0");
  EXPECT_EQ(c.server.port, 9000);
  EXPECT_EQ(c.server.api_keys, (std::vector<std::string>{"sk-one", "sk-two"}));
  EXPECT_EQ(c.server.max_body_bytes, 2097152);
  EXPECT_DOUBLE_EQ(c.server.keepalive_interval_s, 2.5);
  ASSERT_EQ(c.models.size(), 2u);
  const ModelEntry& a = c.models[0];
  EXPECT_EQ(a.name, "alpha");
  EXPECT_EQ(a.path, (dir_ / "a.gguf").string());
  EXPECT_EQ(a.device.kind, DeviceSpec::Kind::Cuda);
  EXPECT_TRUE(a.parse_special_in_content);
  EXPECT_EQ(a.device.index, 1);
  EXPECT_EQ(a.ctx, 8192);
  EXPECT_EQ(a.slots, 4);
  EXPECT_EQ(a.prefill_chunk, 64);
  EXPECT_EQ(a.cache_type_k, "q8_0");
  EXPECT_EQ(a.cache_type_v, "f16");
  EXPECT_EQ(a.max_queue, 64);  // the server default
  EXPECT_FLOAT_EQ(a.sampling.temperature, 0.2f);
  EXPECT_EQ(a.sampling.top_k, 20);
  EXPECT_EQ(a.sampling.seed, 42u);
  const ModelEntry& b = c.models[1];
  EXPECT_EQ(b.name, "b");  // the file stem
  EXPECT_EQ(b.device.kind, DeviceSpec::Kind::Auto);  // the default: a GPU when there is one
  EXPECT_FALSE(b.parse_special_in_content);
  EXPECT_EQ(b.max_queue, 3);
  EXPECT_EQ(b.prefill_chunk, 128);  // the default
  EXPECT_FLOAT_EQ(b.sampling.top_p, 0.5f);
  EXPECT_FLOAT_EQ(b.sampling.min_p, 0.0f);
  EXPECT_FALSE(b.sampling.seed.has_value());
}

TEST_F(ConfigTest, LoopbackNeedsNoKey) {
  ServerConfig c = parse("[[model]]\npath = \"a.gguf\"\n");
  EXPECT_EQ(c.server.host, "127.0.0.1");
  EXPECT_TRUE(c.server.api_keys.empty());
}

struct BadCase {
  const char* name;
  const char* toml;
  std::vector<const char*> expect;  // substrings of the message
};

TEST_F(ConfigTest, InvalidInputNamesFileLineAndKey) {
  const BadCase cases[] = {
      {"unknown server key", "[server]\nport = 1\nbogus = 2\n[[model]]\npath = \"a.gguf\"\n",
       {"serve.toml:3:1", "server.bogus", "unknown key"}},
      {"unknown model key", "[[model]]\npath = \"a.gguf\"\nctxx = 5\n", {"serve.toml:3:1", "model[0].ctxx", "unknown key"}},
      {"unknown top-level table", "[serverx]\n[[model]]\npath = \"a.gguf\"\n", {"serve.toml:1:", "serverx"}},
      {"unknown sampling key", "[[model]]\npath = \"a.gguf\"\n[model.sampling]\ntemp = 1\n",
       {"serve.toml:4:1", "model[0].sampling.temp"}},
      {"port is a string", "[server]\nport = \"80\"\n[[model]]\npath = \"a.gguf\"\n",
       {"serve.toml:2:8", "server.port", "expected an integer, got a string"}},
      {"port out of range", "[server]\nport = 70000\n[[model]]\npath = \"a.gguf\"\n",
       {"serve.toml:2:8", "server.port", "70000"}},
      {"ctx too small", "[[model]]\npath = \"a.gguf\"\nctx = 4\n", {"serve.toml:3:7", "model[0].ctx", "got 4"}},
      {"slots zero", "[[model]]\npath = \"a.gguf\"\nslots = 0\n", {"serve.toml:3:9", "model[0].slots"}},
      {"prefill chunk over the batch", "[[model]]\npath = \"a.gguf\"\nprefill_chunk = 513\n",
       {"serve.toml:3:17", "model[0].prefill_chunk", "[1, 512]", "513"}},
      {"negative generation timeout", "[[model]]\npath = \"a.gguf\"\ngeneration_timeout_s = -1\n",
       {"serve.toml:3:", "model[0].generation_timeout_s"}},
      {"temperature too high", "[[model]]\npath = \"a.gguf\"\n[model.sampling]\ntemperature = 2.5\n",
       {"serve.toml:4:15", "model[0].sampling.temperature", "2.5"}},
      {"top_p zero", "[[model]]\npath = \"a.gguf\"\nsampling = { top_p = 0.0 }\n",
       {"serve.toml:3:", "model[0].sampling.top_p", "(0, 1]"}},
      {"api_keys not strings", "[server]\napi_keys = [1]\n[[model]]\npath = \"a.gguf\"\n",
       {"serve.toml:2:", "server.api_keys", "an array of strings"}},
      {"duplicate names",
       "[[model]]\nname = \"m\"\npath = \"a.gguf\"\n[[model]]\nname = \"m\"\npath = \"b.gguf\"\n",
       {"serve.toml:5:8", "model[1].name", "duplicate model name 'm'"}},
      {"missing path", "[[model]]\nname = \"m\"\n", {"serve.toml:1:1", "model[0].path", "missing"}},
      {"path does not exist", "[[model]]\npath = \"nope.gguf\"\n", {"serve.toml:2:8", "model[0].path", "does not exist"}},
      {"bad device", "[[model]]\npath = \"a.gguf\"\ndevice = \"gpu0\"\n",
       {"serve.toml:3:10", "model[0].device", "\"cpu\" or \"cuda:N\""}},
      {"bad cuda index", "[[model]]\npath = \"a.gguf\"\ndevice = \"cuda:x\"\n", {"serve.toml:3:10", "model[0].device"}},
      {"bad cache type", "[[model]]\npath = \"a.gguf\"\ncache_type_v = \"q3\"\n",
       {"serve.toml:3:", "model[0].cache_type_v", "q3"}},
      {"public without key", "[server]\nhost = \"0.0.0.0\"\n[[model]]\npath = \"a.gguf\"\n",
       {"serve.toml:2:8", "server.host", "allow_no_key_public"}},
      {"no model", "[server]\nport = 1\n", {"serve.toml", "no model configured"}},
      {"model not an array of tables", "model = 3\n", {"serve.toml:1:", "model"}},
      {"toml syntax error", "[server\nport = 1\n", {"serve.toml:1:"}},
      {"both templates", "[[model]]\npath = \"a.gguf\"\nchat_template = \"x\"\nchat_template_file = \"template.jinja\"\n",
       {"serve.toml:3:", "model[0].chat_template", "not both"}},
      {"missing key file", "[server]\napi_key_file = \"nokeys.txt\"\n[[model]]\npath = \"a.gguf\"\n",
       {"serve.toml:2:", "server.api_key_file", "nokeys.txt"}},
      {"negative timeout", "[server]\nheader_timeout_s = -1\n[[model]]\npath = \"a.gguf\"\n",
       {"serve.toml:2:", "server.header_timeout_s"}},
      {"body limit too small", "[server]\nmax_body_bytes = 10\n[[model]]\npath = \"a.gguf\"\n",
       {"serve.toml:2:", "server.max_body_bytes"}},
  };
  for (const BadCase& c : cases) {
    std::string message = error_of(c.toml);
    EXPECT_FALSE(message.empty()) << c.name << ": no error";
    for (const char* part : c.expect)
      EXPECT_NE(message.find(part), std::string::npos) << c.name << ": '" << part << "' not in: " << message;
  }
}

TEST_F(ConfigTest, PublicHostWithKeyOrExplicitOptOut) {
  EXPECT_NO_THROW(parse("[server]\nhost = \"0.0.0.0\"\napi_keys = [\"k\"]\n[[model]]\npath = \"a.gguf\"\n"));
  EXPECT_NO_THROW(parse("[server]\nhost = \"0.0.0.0\"\nallow_no_key_public = true\n[[model]]\npath = \"a.gguf\"\n"));
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("127.evil.com"));
  EXPECT_FALSE(is_loopback_host("::"));
}

TEST_F(ConfigTest, DeviceSyntax) {
  EXPECT_EQ(parse_device("cpu").kind, DeviceSpec::Kind::Cpu);
  EXPECT_EQ(parse_device("auto").kind, DeviceSpec::Kind::Auto);
  EXPECT_EQ(parse_device("auto").to_string(), "auto");
  EXPECT_EQ(parse_device("cuda:0").index, 0);
  EXPECT_EQ(parse_device("cuda:12").index, 12);
  EXPECT_EQ(parse_device("cuda:3").to_string(), "cuda:3");
  for (const char* bad : {"", "CPU", "cuda", "cuda:", "cuda:-1", "cuda:01", "cuda:1x", "cuda:99999", "gpu:0"})
    EXPECT_THROW(parse_device(bad), Error) << bad;
}

TEST_F(ConfigTest, LoadFileResolvesRelativePaths) {
  write("serve.toml", "[[model]]\npath = \"a.gguf\"\n");
  ServerConfig c = load_config_file((dir_ / "serve.toml").string());
  EXPECT_EQ(c.models[0].path, (dir_ / "a.gguf").string());
  EXPECT_EQ(c.models[0].name, "a");
  EXPECT_THROW(load_config_file((dir_ / "missing.toml").string()), Error);
}

TEST_F(ConfigTest, Flags) {
  ServeFlags f;
  f.model_path = (dir_ / "a.gguf").string();
  f.model_name = "m";
  f.device = "cuda:0";
  f.ctx = 2048;
  f.temperature = 0.0f;
  f.port = 0;
  ServerConfig c = config_from_flags(f);
  EXPECT_EQ(c.source, "command line");
  ASSERT_EQ(c.models.size(), 1u);
  EXPECT_EQ(c.models[0].name, "m");
  EXPECT_EQ(c.models[0].ctx, 2048);
  EXPECT_EQ(c.models[0].device.kind, DeviceSpec::Kind::Cuda);
  EXPECT_EQ(c.server.port, 0);

  ServeFlags chunk = f;
  chunk.prefill_chunk = 32;
  EXPECT_EQ(config_from_flags(chunk).models[0].prefill_chunk, 32);
  chunk.prefill_chunk = 0;
  try {
    config_from_flags(chunk);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--prefill-chunk"), std::string::npos) << e.what();
  }

  ServeFlags bad_ctx = f;
  bad_ctx.ctx = 1;
  try {
    config_from_flags(bad_ctx);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--ctx"), std::string::npos) << e.what();
  }
  ServeFlags public_host = f;
  public_host.host = "0.0.0.0";
  EXPECT_THROW(config_from_flags(public_host), Error);
  public_host.api_keys = {"k"};
  EXPECT_NO_THROW(config_from_flags(public_host));

  ServeFlags both = f;
  write("serve.toml", "[[model]]\npath = \"a.gguf\"\n");
  both.config_file = (dir_ / "serve.toml").string();
  EXPECT_THROW(config_from_flags(both), Error);
  ServeFlags file_only;
  file_only.config_file = both.config_file;
  file_only.port = 1234;
  EXPECT_EQ(config_from_flags(file_only).server.port, 1234);

  ServeFlags none;
  EXPECT_THROW(config_from_flags(none), Error);
}

// chat_template is a built-in template's name or inline Jinja (issue 15: "chatml" was taken as
// the template's text, so every prompt was the word "chatml"); anything else fails at load.
TEST_F(ConfigTest, ChatTemplateNamesAndJinja) {
  ServerConfig c = parse("[[model]]\npath = \"a.gguf\"\nchat_template = \"chatml\"\n");
  EXPECT_EQ(c.models[0].chat_template, "chatml");
  c = parse("[[model]]\npath = \"a.gguf\"\nchat_template = \"{% for m in messages %}{{ m.content }}{% endfor %}\"\n");
  EXPECT_EQ(c.models[0].chat_template, "{% for m in messages %}{{ m.content }}{% endfor %}");

  const std::string e = error_of("[[model]]\npath = \"a.gguf\"\nchat_template = \"chatml2\"\n");
  for (const char* part : {"serve.toml:3:17", "model[0].chat_template", "'chatml2'", "chatml, qwen, llama3", "Jinja"})
    EXPECT_NE(e.find(part), std::string::npos) << "'" << part << "' not in: " << e;

  ServeFlags f;
  f.model_path = (dir_ / "a.gguf").string();
  f.chat_template = "llama3";
  EXPECT_EQ(config_from_flags(f).models[0].chat_template, "llama3");
  f.chat_template = "llama-3";
  try {
    config_from_flags(f);
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    const std::string what = err.what();
    EXPECT_NE(what.find("command line (--chat-template)"), std::string::npos) << what;
    EXPECT_NE(what.find("'llama-3'"), std::string::npos) << what;
  }
  f.chat_template = "chatml";
  f.chat_template_file = (dir_ / "template.jinja").string();
  try {
    config_from_flags(f);
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("not both"), std::string::npos) << err.what();
  }
}

// A template given in the config is parsed with the config (issue 15: a syntax error in it was
// found only after "listening", when the model had loaded): serve fails before the port opens.
TEST_F(ConfigTest, ChatTemplateSyntaxErrorsFailTheConfig) {
  std::string e = error_of("[[model]]\npath = \"a.gguf\"\nchat_template = \"{% for m in messages %}{{ m.content }}\"\n");
  for (const char* part : {"serve.toml:3:", "model[0].chat_template", "template:"})
    EXPECT_NE(e.find(part), std::string::npos) << "'" << part << "' not in: " << e;

  write("broken.jinja", "{{ messages[0].content ");
  e = error_of("[[model]]\npath = \"a.gguf\"\nchat_template_file = \"broken.jinja\"\n");
  for (const char* part : {"serve.toml:3:", "model[0].chat_template_file", "broken.jinja", "template:"})
    EXPECT_NE(e.find(part), std::string::npos) << "'" << part << "' not in: " << e;

  ServeFlags f;
  f.model_path = (dir_ / "a.gguf").string();
  f.chat_template_file = (dir_ / "broken.jinja").string();
  try {
    config_from_flags(f);
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("--chat-template-file"), std::string::npos) << err.what();
  }
  // The good file of SetUp still parses.
  EXPECT_EQ(parse("[[model]]\npath = \"a.gguf\"\nchat_template_file = \"template.jinja\"\n").models.size(), 1u);
}

TEST_F(ConfigTest, AllowedHostsAndCorsOrigins) {
  ServerConfig c = parse(R"(
[server]
allowed_hosts = ["gpu-box.lan", "[fe80::1]", "*"]
cors_origins = ["http://localhost:3000", "https://app.example:8443", "null", "*"]
[[model]]
path = "a.gguf"
)");
  EXPECT_EQ(c.server.allowed_hosts, (std::vector<std::string>{"gpu-box.lan", "[fe80::1]", "*"}));
  EXPECT_EQ(c.server.cors_origins.size(), 4u);
  EXPECT_TRUE(parse("[[model]]\npath = \"a.gguf\"\n").server.cors_origins.empty());

  for (const char* host : {"gpu-box.lan:8080", "http://gpu-box.lan", "", "a b", "fe80::1"}) {
    const std::string e = error_of(std::string("[server]\nallowed_hosts = [\"") + host + "\"]\n[[model]]\npath = \"a.gguf\"\n");
    EXPECT_NE(e.find("server.allowed_hosts"), std::string::npos) << host << ": " << e;
    EXPECT_NE(e.find("serve.toml:2:"), std::string::npos) << e;
  }
  for (const char* origin : {"localhost:3000", "http://localhost:3000/", "http://", "http://a/b", "://x"}) {
    const std::string e = error_of(std::string("[server]\ncors_origins = [\"") + origin + "\"]\n[[model]]\npath = \"a.gguf\"\n");
    EXPECT_NE(e.find("server.cors_origins"), std::string::npos) << origin << ": " << e;
  }
  EXPECT_NE(error_of("[server]\ncors_origins = \"*\"\n[[model]]\npath = \"a.gguf\"\n").find("an array of strings"),
            std::string::npos);

  // Flags add to the file's lists.
  write("serve.toml", "[server]\nallowed_hosts = [\"one.lan\"]\n[[model]]\npath = \"a.gguf\"\n");
  ServeFlags f;
  f.config_file = (dir_ / "serve.toml").string();
  f.allowed_hosts = {"two.lan"};
  f.cors_origins = {"http://localhost:5173"};
  c = config_from_flags(f);
  EXPECT_EQ(c.server.allowed_hosts, (std::vector<std::string>{"one.lan", "two.lan"}));
  EXPECT_EQ(c.server.cors_origins, (std::vector<std::string>{"http://localhost:5173"}));
  f.cors_origins = {"localhost:5173"};
  try {
    config_from_flags(f);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cors-origin"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace velocity::server
