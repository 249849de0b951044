// A small synchronous HTTP client (Boost.Beast) and a server fixture for the server tests.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/fake_service.h"
#include "server/http_server.h"

namespace velocity::server::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct Response {
  int status = 0;          // 0 when the connection closed without a response
  std::string body;        // de-chunked
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// One request on a fresh connection.
Response request(uint16_t port, http::verb method, const std::string& target, const std::string& body = {},
                 const std::map<std::string, std::string>& headers = {},
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
// POST a JSON body with the usual headers (and the key, if any).
Response post(uint16_t port, const std::string& target, const std::string& body, const std::string& key = {});
Response get(uint16_t port, const std::string& target, const std::string& key = {});

// Sends raw bytes, then reads one response (status 0 if the server closed without one).
Response raw(uint16_t port, const std::string& bytes, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The "data: ..." payloads of an SSE body, in order ("[DONE]" included; comments skipped).
std::vector<std::string> sse_data(const std::string& body);

// A served FakeService (or several) on 127.0.0.1 with an ephemeral port.
struct TestServer {
  std::vector<std::shared_ptr<FakeService>> services;
  std::unique_ptr<HttpServer> server;
  uint16_t port = 0;

  explicit TestServer(ServerSettings settings = test_settings(), std::vector<FakeServiceOptions> models = {{}});
  ~TestServer();
  FakeService& fake(size_t i = 0) { return *services[i]; }

  static ServerSettings test_settings();
};

}  // namespace velocity::server::test
