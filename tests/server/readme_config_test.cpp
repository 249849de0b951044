// The two-model config shown in README.md parses and validates (with the coder's path pointed at
// a file that exists here), so the README cannot drift from the config format.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/config.h"

namespace velocity::server {
namespace {

TEST(ReadmeConfig, TheTwoModelExampleIsValid) {
  const std::filesystem::path root = VELOCITY_SOURCE_DIR;
  if (!std::filesystem::exists(root / "models/demo/demo.gguf")) GTEST_SKIP() << "models/demo/demo.gguf is absent";
  std::ifstream in(root / "README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  const size_t begin = readme.find("```toml\n");
  ASSERT_NE(begin, std::string::npos) << "README.md has no ```toml block";
  const size_t end = readme.find("```", begin + 8);
  std::string toml = readme.substr(begin + 8, end - begin - 8);
  const std::string coder = "/models/qwen2.5-coder-32b-q4_k_m.gguf";
  const size_t at = toml.find(coder);
  ASSERT_NE(at, std::string::npos);
  toml.replace(at, coder.size(), (root / "models/demo/demo.gguf").string());
  const ServerConfig c = parse_config(toml, "README.md", root.string());
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[0].name, "coder");
  EXPECT_EQ(c.models[0].slots, 4);
  EXPECT_EQ(c.models[0].cache_type_k, "q8_0");
  EXPECT_EQ(c.models[1].name, "demo");
  EXPECT_FLOAT_EQ(c.models[1].sampling.temperature, 0.7f);
  EXPECT_EQ(c.server.api_keys.size(), 1u);
  EXPECT_EQ(c.server.allowed_hosts, std::vector<std::string>{"gpu-box.lan"});
  EXPECT_EQ(c.server.cors_origins, std::vector<std::string>{"http://localhost:3000"});
}

}  // namespace
}  // namespace velocity::server
