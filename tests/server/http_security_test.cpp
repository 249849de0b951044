// The keyless loopback server against browsers: requests shaped as a browser sends them (a
// cross-site "simple" POST with text/plain, a DNS-rebinding page naming its own host, a
// same-origin page, a CORS preflight) must be refused or served as README's Security section
// says, and an OpenAI client (no Origin) must still be served.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <utility>
#include <vector>

#include "test_client.h"

namespace velocity::server::test {
namespace {

using json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

const std::string kChatBody = R"({"model":"fake","messages":[{"role":"user","content":"hi"}]})";

// One raw HTTP/1.1 request with exactly these headers (no Host unless given).
std::string http_bytes(const std::string& method, const std::string& target, const Headers& headers,
                       const std::string& body = {}, const std::string& version = "HTTP/1.1") {
  std::string out = method + " " + target + " " + version + "\r\n";
  for (const auto& [name, value] : headers) out += name + ": " + value + "\r\n";
  if (!body.empty() || method == "POST") out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return out + "\r\n" + body;
}

// The headers Chrome sends with fetch(url, {method: "POST", body}) from a page at `origin` where
// the body is a string: a "simple" request (text/plain), sent without a preflight.
Headers browser_simple_post(const std::string& host, const std::string& origin) {
  return {{"Host", host},
          {"Connection", "keep-alive"},
          {"Origin", origin},
          {"Content-Type", "text/plain;charset=UTF-8"},
          {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"},
          {"Accept", "*/*"},
          {"Sec-Fetch-Site", "cross-site"},
          {"Sec-Fetch-Mode", "no-cors"},
          {"Sec-Fetch-Dest", "empty"},
          {"Referer", origin + "/"},
          {"Accept-Encoding", "gzip, deflate, br"},
          {"Accept-Language", "en-US,en;q=0.9"}};
}

// fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body}) from a page
// at `origin` whose own host is `host` (same-origin from the page's point of view).
Headers browser_json_post(const std::string& host, const std::string& origin, const std::string& site) {
  return {{"Host", host},
          {"Connection", "keep-alive"},
          {"Origin", origin},
          {"Content-Type", "application/json"},
          {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"},
          {"Accept", "*/*"},
          {"Sec-Fetch-Site", site},
          {"Sec-Fetch-Mode", "cors"},
          {"Sec-Fetch-Dest", "empty"},
          {"Referer", origin + "/"}};
}

std::string error_code(const Response& r) {
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.contains("error")) return "(not an error body: " + r.body + ")";
  EXPECT_TRUE(j["error"]["message"].is_string() && !j["error"]["message"].get<std::string>().empty()) << r.body;
  EXPECT_TRUE(j["error"]["type"].is_string()) << r.body;
  return j["error"]["code"].is_string() ? j["error"]["code"].get<std::string>() : "(null)";
}

std::string error_message(const Response& r) {
  json j = json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("error") || !j["error"]["message"].is_string()) return {};
  return j["error"]["message"].get<std::string>();
}

TEST(HttpSecurity, CrossSiteSimplePostIsRefused) {
  TestServer server;
  const std::string host = "127.0.0.1:" + std::to_string(server.port);
  Response r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                           browser_simple_post(host, "http://evil.example"), kChatBody));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(error_code(r), "origin_not_allowed");
  EXPECT_NE(error_message(r).find("cors_origins"), std::string::npos) << r.body;  // says what to change
  EXPECT_EQ(r.header("access-control-allow-origin"), "");
  // The same from a page at a localhost origin on another port (another local web app).
  r = raw(server.port, http_bytes("POST", "/v1/completions", browser_simple_post(host, "http://localhost:3000"),
                                  R"({"model":"fake","prompt":"x"})"));
  EXPECT_EQ(r.status, 403) << r.body;
  // A sandboxed iframe or a file:// page sends "Origin: null".
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions", browser_simple_post(host, "null"), kChatBody));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(server.fake().n_submitted(), 0);
}

TEST(HttpSecurity, DnsRebindingHostIsRefused) {
  TestServer server;
  const std::string evil = "attacker.example:" + std::to_string(server.port);
  // After rebinding, the page's fetches are same-origin for the browser: GETs carry no Origin,
  // POSTs carry the page's own origin, and Host names the attacker's domain.
  Response r = raw(server.port, http_bytes("GET", "/v1/models", {{"Host", evil}, {"Accept", "*/*"},
                                                                 {"Sec-Fetch-Site", "same-origin"}}));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(error_code(r), "host_not_allowed");
  EXPECT_NE(error_message(r).find("allowed_hosts"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("\"fake\""), std::string::npos);  // nothing of the answer leaks
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_json_post(evil, "http://" + evil, "same-origin"), kChatBody));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(error_code(r), "host_not_allowed");
  // /health needs no key but is not exempt from the Host check.
  r = raw(server.port, http_bytes("GET", "/health", {{"Host", evil}}));
  EXPECT_EQ(r.status, 403) << r.body;
  r = raw(server.port, http_bytes("GET", "/metrics", {{"Host", "attacker.example"}}));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(server.fake().n_submitted(), 0);
}

TEST(HttpSecurity, LoopbackNamesAndIpLiteralsAreServed) {
  TestServer server;
  const std::string port = std::to_string(server.port);
  for (const std::string& host : std::vector<std::string>{"127.0.0.1:" + port, "127.0.0.1", "localhost:" + port,
                                                           "LocalHost:" + port, "[::1]:" + port, "[::1]",
                                                           "192.168.1.20:" + port, "10.0.0.7"}) {
    Response r = raw(server.port, http_bytes("GET", "/v1/models", {{"Host", host}}));
    EXPECT_EQ(r.status, 200) << host << ": " << r.body;
  }
  for (const std::string& host : std::vector<std::string>{"localhost.evil.example:" + port, "127.0.0.1.nip.io:" + port,
                                                           "0x7f000001.evil", "example.com"}) {
    Response r = raw(server.port, http_bytes("GET", "/v1/models", {{"Host", host}}));
    EXPECT_EQ(r.status, 403) << host << ": " << r.body;
  }
}

TEST(HttpSecurity, MissingOrDoubleHostIsABadRequest) {
  TestServer server;
  Response r = raw(server.port, http_bytes("GET", "/health", {}));
  EXPECT_EQ(r.status, 400) << r.body;
  r = raw(server.port, http_bytes("GET", "/health", {{"Host", "127.0.0.1"}, {"Host", "attacker.example"}}));
  EXPECT_EQ(r.status, 400) << r.body;
  // HTTP/1.0 has no Host requirement (and no browser speaks it).
  r = raw(server.port, http_bytes("GET", "/health", {}, {}, "HTTP/1.0"));
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(HttpSecurity, SameOriginPageAndOpenAIClientAreServed) {
  TestServer server;
  const std::string host = "127.0.0.1:" + std::to_string(server.port);
  // A page served at http://127.0.0.1:PORT (the built-in chat page, when it exists).
  Response r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                           browser_json_post(host, "http://" + host, "same-origin"), kChatBody));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["choices"][0]["message"]["content"], "hi");
  // Same origin by another loopback name, and the default port spelled out or not.
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_json_post("localhost:" + std::to_string(server.port),
                                                    "http://LOCALHOST:" + std::to_string(server.port), "same-origin"),
                                  kChatBody));
  EXPECT_EQ(r.status, 200) << r.body;
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_json_post("127.0.0.1", "http://127.0.0.1:80", "same-origin"), kChatBody));
  EXPECT_EQ(r.status, 200) << r.body;
  // https or another port is another origin.
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_json_post(host, "https://" + host, "cross-site"), kChatBody));
  EXPECT_EQ(r.status, 403) << r.body;
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_json_post(host, "http://127.0.0.1:1", "same-site"), kChatBody));
  EXPECT_EQ(r.status, 403) << r.body;
  // The same-origin page posting text/plain passes the Origin check and meets the media type check.
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions", browser_simple_post(host, "http://" + host), kChatBody));
  EXPECT_EQ(r.status, 415) << r.body;

  // What the openai npm/python clients send: no Origin, Host with the port, application/json.
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  {{"Host", host},
                                   {"Accept", "application/json"},
                                   {"Content-Type", "application/json"},
                                   {"User-Agent", "OpenAI/JS 4.104.0"},
                                   {"X-Stainless-Lang", "js"},
                                   {"Authorization", "Bearer sk-anything"}},
                                  kChatBody));
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(HttpSecurity, GenerationPostsMustBeJson) {
  TestServer server;
  const std::string host = "127.0.0.1:" + std::to_string(server.port);
  auto post_as = [&](const std::string& target, const std::string& content_type) {
    Headers h = {{"Host", host}};
    if (!content_type.empty()) h.emplace_back("Content-Type", content_type);
    return raw(server.port, http_bytes("POST", target, h, target == "/v1/completions"
                                                               ? R"({"model":"fake","prompt":"x"})"
                                                               : kChatBody));
  };
  for (const std::string type : {"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/jsonp", "json", ""}) {
    for (const std::string target : {"/v1/chat/completions", "/v1/completions"}) {
      Response r = post_as(target, type);
      EXPECT_EQ(r.status, 415) << target << " '" << type << "': " << r.body;
      EXPECT_EQ(error_code(r), "unsupported_media_type") << type;
      const std::string message = error_message(r);
      EXPECT_NE(message.find("application/json"), std::string::npos) << message;
      if (!type.empty()) {
        EXPECT_NE(message.find(type), std::string::npos) << message;  // names what was sent
      }
    }
  }
  for (const char* type : {"application/json", "application/json; charset=utf-8", "Application/JSON",
                           "application/json;charset=UTF-8"}) {
    Response r = post_as("/v1/chat/completions", type);
    EXPECT_EQ(r.status, 200) << type << ": " << r.body;
  }
  EXPECT_EQ(server.fake().n_submitted(), 4);
}

TEST(HttpSecurity, ChecksComeInOrder) {
  ServerSettings s = TestServer::test_settings();
  s.api_keys = {"sk-key"};
  TestServer server(s);
  const std::string host = "127.0.0.1:" + std::to_string(server.port);
  // With a key configured the Host check is off: a rebinding page cannot send the key.
  Response r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                           {{"Host", "attacker.example"}, {"Content-Type", "application/json"},
                                            {"Authorization", "Bearer sk-key"}},
                                           kChatBody));
  EXPECT_EQ(r.status, 200) << r.body;
  r = raw(server.port, http_bytes("GET", "/v1/models", {{"Host", "attacker.example"}}));
  EXPECT_EQ(r.status, 401) << r.body;
  // Origin before the route and the key.
  r = raw(server.port, http_bytes("GET", "/nowhere", {{"Host", host}, {"Origin", "http://evil.example"}}));
  EXPECT_EQ(r.status, 403) << r.body;
  // The route before the key; the key before the media type.
  r = raw(server.port, http_bytes("POST", "/nowhere", {{"Host", host}, {"Content-Type", "text/plain"}}, "{}"));
  EXPECT_EQ(r.status, 404) << r.body;
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions", {{"Host", host}, {"Content-Type", "text/plain"}},
                                  kChatBody));
  EXPECT_EQ(r.status, 401) << r.body;
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  {{"Host", host}, {"Content-Type", "text/plain"}, {"Authorization", "Bearer sk-key"}},
                                  kChatBody));
  EXPECT_EQ(r.status, 415) << r.body;
}

TEST(HttpSecurity, AllowedHostsConfigured) {
  ServerSettings s = TestServer::test_settings();
  s.allowed_hosts = {"gpu-box.lan", "Proxy.Example."};
  TestServer server(s);
  const std::string port = std::to_string(server.port);
  for (const std::string& host : std::vector<std::string>{"gpu-box.lan:" + port, "GPU-BOX.LAN", "proxy.example",
                                                           "proxy.example.:443"}) {
    Response r = raw(server.port, http_bytes("GET", "/v1/models", {{"Host", host}}));
    EXPECT_EQ(r.status, 200) << host << ": " << r.body;
  }
  Response r = raw(server.port, http_bytes("GET", "/v1/models", {{"Host", "other.lan:" + port}}));
  EXPECT_EQ(r.status, 403) << r.body;

  s.allowed_hosts = {"*"};
  TestServer any(s);
  r = raw(any.port, http_bytes("GET", "/v1/models", {{"Host", "attacker.example"}}));
  EXPECT_EQ(r.status, 200) << r.body;

  // The bound host is a name of the server too.
  s = TestServer::test_settings();
  s.host = "localhost";
  TestServer named(s);
  r = raw(named.port, http_bytes("GET", "/health", {{"Host", "localhost:" + std::to_string(named.port)}}));
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(HttpSecurity, CorsOriginsGetHeadersAndPreflights) {
  ServerSettings s = TestServer::test_settings();
  s.cors_origins = {"http://localhost:3000", "null"};
  TestServer server(s);
  const std::string host = "127.0.0.1:" + std::to_string(server.port);

  // The preflight of fetch(url, {method: "POST", headers: {"Content-Type": "application/json",
  // Authorization: ...}}) from http://localhost:3000.
  Headers preflight = {{"Host", host},
                       {"Origin", "http://localhost:3000"},
                       {"Access-Control-Request-Method", "POST"},
                       {"Access-Control-Request-Headers", "authorization,content-type,x-stainless-os"},
                       {"Sec-Fetch-Mode", "cors"},
                       {"Sec-Fetch-Site", "same-site"}};
  Response r = raw(server.port, http_bytes("OPTIONS", "/v1/chat/completions", preflight));
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "http://localhost:3000");
  EXPECT_EQ(r.header("vary"), "Origin");
  EXPECT_NE(r.header("access-control-allow-methods").find("POST"), std::string::npos);
  EXPECT_NE(r.header("access-control-allow-methods").find("GET"), std::string::npos);
  const std::string allow_headers = r.header("access-control-allow-headers");
  EXPECT_NE(allow_headers.find("Authorization"), std::string::npos) << allow_headers;
  EXPECT_NE(allow_headers.find("Content-Type"), std::string::npos) << allow_headers;
  EXPECT_NE(allow_headers.find("x-stainless-os"), std::string::npos) << allow_headers;
  EXPECT_FALSE(r.header("access-control-max-age").empty());
  EXPECT_TRUE(r.body.empty());
  // Chrome's Private Network Access asks whether a public page may reach a local server.
  preflight.emplace_back("Access-Control-Request-Private-Network", "true");
  r = raw(server.port, http_bytes("OPTIONS", "/v1/models/fake", preflight));
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(r.header("access-control-allow-private-network"), "true");

  // The request itself, and its error responses, carry the header; streams too.
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_json_post(host, "http://localhost:3000", "same-site"), kChatBody));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "http://localhost:3000");
  EXPECT_EQ(r.header("vary"), "Origin");
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_json_post(host, "http://localhost:3000", "same-site"),
                                  R"({"model":"fake","messages":[{"role":"user","content":"hi"}],"stream":true})"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  EXPECT_EQ(r.header("access-control-allow-origin"), "http://localhost:3000");
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_json_post(host, "http://localhost:3000", "same-site"), "{"));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "http://localhost:3000");
  // A sandboxed page ("null") is listed too.
  r = raw(server.port, http_bytes("GET", "/v1/models", {{"Host", host}, {"Origin", "null"}}));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "null");

  // Other origins: the preflight and the request are refused, without CORS headers.
  preflight[1].second = "http://evil.example";
  r = raw(server.port, http_bytes("OPTIONS", "/v1/chat/completions", preflight));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "");
  r = raw(server.port, http_bytes("POST", "/v1/chat/completions",
                                  browser_simple_post(host, "http://localhost:3001"), kChatBody));
  EXPECT_EQ(r.status, 403) << r.body;
  // An OPTIONS of a same-origin page (no CORS needed) or of a tool: 204 with Allow.
  r = raw(server.port, http_bytes("OPTIONS", "/health", {{"Host", host}}));
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "");
  EXPECT_NE(r.header("allow").find("OPTIONS"), std::string::npos);
  r = raw(server.port, http_bytes("OPTIONS", "/v1/nowhere", {{"Host", host}}));
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(server.fake().n_submitted(), 2);

  // "*" allows every origin and echoes it.
  s.cors_origins = {"*"};
  TestServer any(s);
  r = raw(any.port, http_bytes("POST", "/v1/chat/completions",
                               browser_json_post(host, "https://app.example", "cross-site"), kChatBody));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "https://app.example");
  r = raw(any.port, http_bytes("GET", "/health", {{"Host", host}, {"Origin", "null"}}));
  EXPECT_EQ(r.status, 200) << r.body;
}

}  // namespace
}  // namespace velocity::server::test
