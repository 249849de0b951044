// GET / : the built-in chat page (web/chat.html compiled in). It is served byte for byte with a
// restrictive Content-Security-Policy, needs no key (the API calls it makes do), and is refused
// like every route to a Host that does not name the server (DNS rebinding) or a foreign Origin.
// The page's behaviour in a browser is tested by ctest server.chat_page_browser (tests/server/browser).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "test_client.h"

namespace velocity::server::test {
namespace {

std::string page_source() {
  std::ifstream in(std::string(VELOCITY_SOURCE_DIR) + "/web/chat.html", std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// One raw HTTP/1.1 request with these headers.
std::string http_bytes(const std::string& method, const std::string& target,
                       const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string out = method + " " + target + " HTTP/1.1\r\n";
  for (const auto& [name, value] : headers) out += name + ": " + value + "\r\n";
  return out + "\r\n";
}

// Everything the server sends after `bytes` until it closes the connection.
std::string read_until_close(uint16_t port, const std::string& bytes) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(std::chrono::seconds(10));
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  net::write(stream.socket(), net::buffer(bytes));
  std::string out;
  char chunk[4096];
  beast::error_code ec;
  while (!ec) out.append(chunk, stream.read_some(net::buffer(chunk), ec));
  return out;
}

TEST(HttpPage, GetServesTheChatPage) {
  TestServer server;
  Response r = get(server.port, "/");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(r.header("cache-control"), "no-cache");
  const std::string csp = r.header("content-security-policy");
  for (const char* directive : {"default-src 'none'", "script-src 'unsafe-inline'", "style-src 'unsafe-inline'",
                                "connect-src 'self'", "frame-ancestors 'none'"})
    EXPECT_NE(csp.find(directive), std::string::npos) << directive << " missing from: " << csp;
  EXPECT_EQ(r.header("x-content-type-options"), "nosniff");
  EXPECT_NE(r.body.find("<title>velocity chat</title>"), std::string::npos);
  // The bytes of web/chat.html as the source tree has them (the build regenerates the array).
  const std::string source = page_source();
  ASSERT_FALSE(source.empty()) << "cannot read web/chat.html";
  EXPECT_EQ(r.body, source);
  // A query string names the same page.
  EXPECT_EQ(get(server.port, "/?model=fake").status, 200);
}

TEST(HttpPage, NeedsNoKeyButTheApiDoes) {
  ServerSettings settings = TestServer::test_settings();
  settings.api_keys = {"sk-page"};
  TestServer server(settings);
  Response page = get(server.port, "/");
  EXPECT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find("<title>velocity chat</title>"), std::string::npos);
  EXPECT_EQ(get(server.port, "/v1/models").status, 401);
  EXPECT_EQ(get(server.port, "/v1/models", "sk-page").status, 200);
}

TEST(HttpPage, ForeignHostAndOriginAreRefused) {
  TestServer server;
  const std::string port = std::to_string(server.port);
  // A page that rebinds attacker.example to 127.0.0.1 and loads / from there.
  Response r = raw(server.port, http_bytes("GET", "/", {{"Host", "attacker.example:" + port}}));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("host_not_allowed"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("<title>"), std::string::npos);
  r = raw(server.port, http_bytes("HEAD", "/", {{"Host", "attacker.example"}, {"Connection", "close"}}));
  EXPECT_EQ(r.status, 403);
  // The names the server is always reachable by.
  for (const std::string& host : std::vector<std::string>{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port}) {
    r = raw(server.port, http_bytes("GET", "/", {{"Host", host}}));
    EXPECT_EQ(r.status, 200) << host;
  }
  // Another site's page fetching / with CORS.
  r = raw(server.port, http_bytes("GET", "/", {{"Host", "127.0.0.1:" + port}, {"Origin", "http://evil.example"}}));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("origin_not_allowed"), std::string::npos) << r.body;
}

TEST(HttpPage, HeadHasTheHeadersAndNoBody) {
  TestServer server;
  const std::string page = page_source();
  // HEAD then GET /health on one connection: had the HEAD's answer a body, the second status
  // line would not follow its blank line.
  const std::string requests = http_bytes("HEAD", "/", {{"Host", "127.0.0.1"}}) +
                               http_bytes("GET", "/health", {{"Host", "127.0.0.1"}, {"Connection", "close"}});
  const std::string out = read_until_close(server.port, requests);
  ASSERT_TRUE(out.starts_with("HTTP/1.1 200 OK\r\n")) << out;
  const size_t end = out.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos) << out;
  const std::string head = out.substr(0, end);
  EXPECT_NE(head.find("Content-Type: text/html; charset=utf-8"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Security-Policy: default-src 'none'"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Length: " + std::to_string(page.size())), std::string::npos) << head;
  EXPECT_TRUE(out.substr(end + 4).starts_with("HTTP/1.1 200 OK\r\n")) << out.substr(end + 4, 200);
}

TEST(HttpPage, OtherMethodsAreNotAllowed) {
  TestServer server;
  Response r = post(server.port, "/", "{}");
  EXPECT_EQ(r.status, 405) << r.body;
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  EXPECT_EQ(get(server.port, "/index.html").status, 404);
}

}  // namespace
}  // namespace velocity::server::test
