// The HTTP side of asynchronous preparation (service.h): the response starts only when the
// service accepts the job (a prompt that is too long is a plain 400, also for a streaming
// request), a client that disconnects while its prompt is being prepared abandons the
// preparation, shutdown abandons preparations at once instead of waiting out the grace period,
// and slow preparations leave the I/O threads free. FakeService's prepare_delay stands in for
// a slow chat template.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "test_client.h"

namespace velocity::server::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

std::string chat_body(const std::string& content, const std::string& extra = "") {
  std::string body = json{{"model", "fake"}, {"messages", {{{"role", "user"}, {"content", content}}}}}.dump();
  if (!extra.empty()) body.insert(1, extra + ",");
  return body;
}

// Sends a request and closes the connection after `after`, without reading.
void send_then_close(uint16_t port, const std::string& body, std::chrono::milliseconds after) {
  net::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  net::write(socket, net::buffer(req));
  std::this_thread::sleep_for(after);
  socket.close();
}

TEST(HttpPrepare, RejectedStreamingRequestIsAPlainError) {
  FakeServiceOptions o;
  o.n_ctx = 3;  // "a b c d" is 5 prompt tokens
  TestServer server(TestServer::test_settings(), {o});
  Response r = post(server.port, "/v1/chat/completions", chat_body("a b c d", R"("stream":true)"));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(server.fake().n_accepted(), 0);
  // And the connection's next request is served normally.
  EXPECT_EQ(post(server.port, "/v1/chat/completions", chat_body("a")).status, 200);
}

TEST(HttpPrepare, DisconnectAbandonsThePreparation) {
  FakeServiceOptions o;
  o.prepare_delay = 20s;
  TestServer server(TestServer::test_settings(), {o});
  const auto start = std::chrono::steady_clock::now();
  send_then_close(server.port, chat_body("hello", R"("stream":true)"), 100ms);
  for (int i = 0; i < 300 && server.fake().n_abandoned() < 1; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server.fake().n_abandoned(), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(server.fake().n_accepted(), 0);
}

TEST(HttpPrepare, ShutdownAbandonsPreparationsAtOnce) {
  FakeServiceOptions o;
  o.prepare_delay = 20s;
  TestServer server(TestServer::test_settings(), {o});
  Response r;
  std::thread client([&] { r = post(server.port, "/v1/chat/completions", chat_body("hello")); });
  for (int i = 0; i < 300 && server.fake().n_in_flight() < 1; ++i) std::this_thread::sleep_for(10ms);
  const auto start = std::chrono::steady_clock::now();
  server.server->shutdown(10s);  // the grace is for requests that run, not for prompts in preparation
  const auto took = std::chrono::steady_clock::now() - start;
  client.join();
  EXPECT_LT(took, 5s);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(server.fake().n_abandoned(), 1);
}

TEST(HttpPrepare, HealthAnswersWhilePromptsArePrepared) {
  FakeServiceOptions o;
  o.prepare_delay = 1500ms;
  TestServer server(TestServer::test_settings(), {o});
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i)
    clients.emplace_back([&] { post(server.port, "/v1/chat/completions", chat_body("hello")); });
  for (int i = 0; i < 300 && server.fake().n_in_flight() < 2; ++i) std::this_thread::sleep_for(10ms);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(get(server.port, "/health").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  for (auto& c : clients) c.join();
}

}  // namespace
}  // namespace velocity::server::test
