#include "test_client.h"

#include <boost/asio/connect.hpp>

namespace velocity::server::test {

namespace {

Response read_response(beast::tcp_stream& stream, std::chrono::milliseconds timeout) {
  Response r;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  stream.expires_after(timeout);
  beast::error_code ec;
  http::read(stream, buffer, parser, ec);
  if (ec && !parser.is_header_done()) return r;
  const auto& res = parser.get();
  r.status = (int)res.result_int();
  r.body = res.body();
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (char& c : name) c = (char)std::tolower((unsigned char)c);
    r.headers[name] = std::string(field.value());
  }
  return r;
}

}  // namespace

Response request(uint16_t port, http::verb method, const std::string& target, const std::string& body,
                 const std::map<std::string, std::string>& headers, std::chrono::milliseconds timeout) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(timeout);
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty() || method == http::verb::post) req.prepare_payload();
  beast::error_code ec;
  http::write(stream, req, ec);
  Response r = read_response(stream, timeout);
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return r;
}

Response post(uint16_t port, const std::string& target, const std::string& body, const std::string& key) {
  std::map<std::string, std::string> headers = {{"Content-Type", "application/json"}};
  if (!key.empty()) headers["Authorization"] = "Bearer " + key;
  return request(port, http::verb::post, target, body, headers);
}

Response get(uint16_t port, const std::string& target, const std::string& key) {
  std::map<std::string, std::string> headers;
  if (!key.empty()) headers["Authorization"] = "Bearer " + key;
  return request(port, http::verb::get, target, {}, headers);
}

Response raw(uint16_t port, const std::string& bytes, std::chrono::milliseconds timeout) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(timeout);
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  beast::error_code ec;
  net::write(stream.socket(), net::buffer(bytes), ec);
  return read_response(stream, timeout);
}

std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    std::string event = body.substr(pos, end - pos);
    pos = end + 2;
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
  }
  return out;
}

ServerSettings TestServer::test_settings() {
  ServerSettings s;
  s.host = "127.0.0.1";
  s.port = 0;
  s.threads = 2;
  s.header_timeout_s = 2;
  s.request_timeout_s = 5;
  s.shutdown_grace_s = 2;
  s.keepalive_interval_s = 0.05;
  s.max_body_bytes = 64 * 1024;
  return s;
}

TestServer::TestServer(ServerSettings settings, std::vector<FakeServiceOptions> models) {
  std::vector<std::shared_ptr<ModelService>> list;
  for (FakeServiceOptions& o : models) {
    services.push_back(std::make_shared<FakeService>(o));
    list.push_back(services.back());
  }
  server = std::make_unique<HttpServer>(settings, list);
  server->start();
  port = server->port();
}

TestServer::~TestServer() { server->shutdown(std::chrono::milliseconds(0)); }

}  // namespace velocity::server::test
