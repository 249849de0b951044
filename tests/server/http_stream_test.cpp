// Streaming format, keep-alives, concurrency, cancel on disconnect, shutdown, and the other
// routes, all through real HTTP against FakeService.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
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

struct Stream {
  std::vector<json> chunks;  // every data payload but [DONE]
  bool done = false;         // ended with [DONE]
  std::string text, reasoning;
  std::string finish_reason;
  std::optional<json> usage;
};

Stream parse_stream(const std::string& body) {
  Stream s;
  for (const std::string& data : sse_data(body)) {
    EXPECT_FALSE(s.done) << "data after [DONE]";
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    json j = json::parse(data);  // every chunk is JSON
    s.chunks.push_back(j);
    if (j.contains("usage") && !j["usage"].is_null()) s.usage = j["usage"];
    for (const json& c : j["choices"]) {
      if (c.contains("delta")) {
        if (c["delta"].contains("content")) s.text += c["delta"]["content"].get<std::string>();
        if (c["delta"].contains("reasoning_content")) s.reasoning += c["delta"]["reasoning_content"].get<std::string>();
      }
      if (c.contains("text")) s.text += c["text"].get<std::string>();
      if (!c["finish_reason"].is_null()) s.finish_reason = c["finish_reason"];
    }
  }
  return s;
}

TEST(HttpStream, ChatChunksUsageAndDone) {
  TestServer server;
  Response r = post(server.port, "/v1/chat/completions",
                    chat_body("one two three", R"("stream":true,"stream_options":{"include_usage":true})"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  Stream s = parse_stream(r.body);
  EXPECT_TRUE(s.done);
  ASSERT_GE(s.chunks.size(), 5u);
  EXPECT_EQ(s.chunks[0]["choices"][0]["delta"]["role"], "assistant");
  std::string id = s.chunks[0]["id"];
  for (const json& c : s.chunks) {
    EXPECT_EQ(c["id"], id);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["model"], "fake");
  }
  EXPECT_EQ(s.text, "one two three");
  EXPECT_EQ(s.finish_reason, "stop");
  ASSERT_TRUE(s.usage);
  EXPECT_EQ((*s.usage)["prompt_tokens"], 4);
  EXPECT_EQ((*s.usage)["completion_tokens"], 3);
  EXPECT_EQ((*s.usage)["total_tokens"], 7);
  EXPECT_TRUE(s.chunks.back()["choices"].empty());  // the usage chunk comes last
}

TEST(HttpStream, CompletionsStreamWithoutUsage) {
  TestServer server;
  Response r = post(server.port, "/v1/completions", R"({"model":"fake","prompt":"a b c d","stream":true,"max_tokens":2})");
  ASSERT_EQ(r.status, 200);
  Stream s = parse_stream(r.body);
  EXPECT_TRUE(s.done);
  EXPECT_FALSE(s.usage);
  EXPECT_EQ(s.text, "a b");
  EXPECT_EQ(s.finish_reason, "length");
  for (const json& c : s.chunks) EXPECT_EQ(c["object"], "text_completion");
}

TEST(HttpStream, NonStreamingResponses) {
  TestServer server;
  Response r = post(server.port, "/v1/chat/completions", chat_body("think:hm alpha beta gamma", R"("stop":"gam")"));
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().substr(0, 9), "chatcmpl-");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], " alpha beta ");
  EXPECT_EQ(j["choices"][0]["message"]["reasoning_content"], "hm");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
  EXPECT_TRUE(j["timings"].contains("predicted_per_second"));

  r = post(server.port, "/v1/completions", R"({"model":"fake","prompt":"x y z","max_tokens":1,"seed":7,"temperature":0})");
  j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "x");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  GenerationJob job = server.fake().last_job();
  EXPECT_EQ(job.sampling.seed, 7u);
  EXPECT_EQ(job.sampling.temperature, 0.0f);
  EXPECT_EQ(job.sampling.top_k, 40);  // the model's default

  r = post(server.port, "/v1/chat/completions", chat_body("a __error__"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "server_error");
}

TEST(HttpStream, KeepAliveCommentsDuringALongPrefill) {
  FakeServiceOptions o;
  o.prefill_delay = 300ms;
  TestServer server(TestServer::test_settings(), {o});
  Response r = post(server.port, "/v1/chat/completions", chat_body("x", R"("stream":true)"));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find(": keep-alive\n\n"), std::string::npos);
  Stream s = parse_stream(r.body);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.text, "x");
}

TEST(HttpStream, SixteenConcurrentStreams) {
  FakeServiceOptions o;
  o.n_slots = 4;
  o.max_queue = 16;
  o.token_delay = 2ms;
  TestServer server(TestServer::test_settings(), {o});
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      std::string words;
      for (int w = 0; w < 20; ++w) words += std::string("w").append(std::to_string(i)).append("_").append(std::to_string(w)).append(" ");
      Response r = post(server.port, "/v1/chat/completions", chat_body(words, R"("stream":true)"));
      Stream s = parse_stream(r.body);
      words.pop_back();
      if (r.status == 200 && s.done && s.text == words && s.finish_reason == "stop") ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 16);
  EXPECT_TRUE(server.fake().wait_idle(2s));
}

// Sends a streaming request, reads until some content arrived, then disconnects.
void stream_then_disconnect(uint16_t port, const std::string& body, const std::string& wait_for) {
  net::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  net::write(socket, net::buffer(req));
  std::string got;
  char buf[4096];
  while (got.find(wait_for) == std::string::npos) {
    beast::error_code ec;
    size_t n = socket.read_some(net::buffer(buf), ec);
    if (ec) break;
    got.append(buf, n);
  }
  socket.close();
}

TEST(HttpStream, DisconnectCancelsTheJob) {
  FakeServiceOptions o;
  o.token_delay = 5ms;
  TestServer server(TestServer::test_settings(), {o});
  // Streaming: close after the first delta.
  stream_then_disconnect(server.port, chat_body("__forever__ la", R"("stream":true)"), "\"content\":\"la\"");
  auto closed = std::chrono::steady_clock::now();
  for (int i = 0; i < 100 && server.fake().n_cancelled() < 1; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server.fake().n_cancelled(), 1);
  EXPECT_LT(server.fake().last_cancel_request() - closed, 1s);

  // Non-streaming: nothing is written until the end, the pending read sees the close.
  stream_then_disconnect(server.port, chat_body("__forever__ la"), "");
  for (int i = 0; i < 100 && server.fake().n_cancelled() < 2; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server.fake().n_cancelled(), 2);
  EXPECT_TRUE(server.fake().wait_idle(1s));
  EXPECT_EQ(post(server.port, "/v1/chat/completions", chat_body("still fine")).status, 200);
}

TEST(HttpStream, ShutdownLetsRunningRequestsFinish) {
  FakeServiceOptions o;
  o.token_delay = 10ms;
  TestServer server(TestServer::test_settings(), {o});
  Response r;
  std::thread client([&] {
    r = post(server.port, "/v1/chat/completions", chat_body("__forever__ a", R"("stream":true,"max_tokens":40)"));
  });
  // Accepted (past the preparation thread): a request still being prepared is refused by a drain.
  for (int i = 0; i < 2000 && server.fake().n_accepted() < 1; ++i) std::this_thread::sleep_for(5ms);
  auto start = std::chrono::steady_clock::now();
  server.server->shutdown(5s);
  auto took = std::chrono::steady_clock::now() - start;
  client.join();
  EXPECT_LT(took, 3s);
  Stream s = parse_stream(r.body);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.finish_reason, "length");
  // No longer accepting.
  net::io_context ioc;
  tcp::socket socket(ioc);
  beast::error_code ec;
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port), ec);
  EXPECT_TRUE(ec);
}

TEST(HttpStream, ShutdownCancelsAfterTheGrace) {
  FakeServiceOptions o;
  o.token_delay = 10ms;
  TestServer server(TestServer::test_settings(), {o});
  Response streamed, plain;
  std::thread a([&] { streamed = post(server.port, "/v1/chat/completions", chat_body("__forever__ a", R"("stream":true)")); });
  std::thread b([&] { plain = post(server.port, "/v1/chat/completions", chat_body("__forever__ a")); });
  // Both accepted (past the preparation thread): a request still being prepared when the drain
  // starts is refused with a 503 instead of streaming, which this test is not about.
  for (int i = 0; i < 2000 && server.fake().n_accepted() < 2; ++i) std::this_thread::sleep_for(5ms);
  auto start = std::chrono::steady_clock::now();
  server.server->shutdown(200ms);
  auto took = std::chrono::steady_clock::now() - start;
  a.join();
  b.join();
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 1500ms);
  Stream s = parse_stream(streamed.body);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.finish_reason, "cancelled");
  EXPECT_EQ(plain.status, 503);
  EXPECT_EQ(server.fake().n_cancelled(), 2);
}

TEST(HttpStream, HealthSays503ToNewConnectionsWhileDraining) {
  FakeServiceOptions o;
  o.token_delay = 10ms;
  TestServer server(TestServer::test_settings(), {o});
  Response running;
  std::thread client([&] {
    running = post(server.port, "/v1/chat/completions", chat_body("__forever__ a", R"("stream":true,"max_tokens":80)"));
  });
  for (int i = 0; i < 2000 && server.fake().n_accepted() < 1; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(server.fake().n_accepted(), 1);
  std::thread stopper([&] { server.server->shutdown(5s); });
  // A load balancer polling /health on a new connection sees the drain (not a refused connection).
  auto new_connection = [&](auto send) {
    try {
      return send();
    } catch (const std::exception&) {  // connection refused
      return Response{};
    }
  };
  Response health;
  for (int i = 0; i < 200; ++i) {  // 200 until the drain starts
    health = new_connection([&] { return get(server.port, "/health"); });
    if (health.status == 503) break;
    std::this_thread::sleep_for(5ms);
  }
  // A new generation request gets the 503 too; the running one is not disturbed.
  Response refused = new_connection([&] { return post(server.port, "/v1/chat/completions", chat_body("x")); });
  stopper.join();
  client.join();
  EXPECT_EQ(health.status, 503) << health.body;
  json h = json::parse(health.body, nullptr, false);
  ASSERT_TRUE(h.is_object()) << health.body;
  EXPECT_EQ(h["status"], "draining") << health.body;
  EXPECT_EQ(h["error"]["code"], "shutting_down") << health.body;
  EXPECT_EQ(health.header("connection"), "close");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("shutting_down"), std::string::npos) << refused.body;
  Stream s = parse_stream(running.body);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.finish_reason, "length");
  EXPECT_EQ(server.fake().n_submitted(), 1);
  // Once the drain is over nothing is accepted.
  net::io_context ioc;
  tcp::socket socket(ioc);
  beast::error_code ec;
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port), ec);
  EXPECT_TRUE(ec);
}

TEST(HttpStream, ModelsMetricsRoutingAndKeepAlive) {
  FakeServiceOptions a, b;
  a.name = "alpha";
  b.name = "beta";
  TestServer server(TestServer::test_settings(), {a, b});
  Response models = get(server.port, "/v1/models");
  ASSERT_EQ(models.status, 200);
  json m = json::parse(models.body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 2u);
  EXPECT_EQ(m["data"][1]["id"], "beta");
  EXPECT_EQ(m["data"][1]["object"], "model");
  EXPECT_EQ(json::parse(get(server.port, "/v1/models/alpha").body)["id"], "alpha");

  // Two requests on one connection, routed by model.
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port));
  for (const char* model : {"beta", "alpha"}) {
    http::request<http::string_body> req(http::verb::post, "/v1/completions", 11);
    req.set(http::field::host, "localhost");
    req.set(http::field::content_type, "application/json");
    req.body() = std::string(R"({"prompt":"p q","model":")") + model + "\"}";
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(json::parse(res.body())["model"], model);
  }
  EXPECT_EQ(server.fake(0).n_submitted(), 1);
  EXPECT_EQ(server.fake(1).n_submitted(), 1);

  Response metrics = get(server.port, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* line : {"velocity_requests_total{model=\"alpha\"} 1", "velocity_requests_total{model=\"beta\"} 1",
                           "velocity_generated_tokens_total{model=\"beta\"} 2",
                           "velocity_requests_finished_total{model=\"alpha\",reason=\"stop\"} 1",
                           "velocity_time_to_first_token_seconds_count{model=\"alpha\"} 1",
                           "velocity_inter_token_latency_seconds_count{model=\"alpha\"} 1",
                           "velocity_queue_depth{model=\"alpha\"} 0", "velocity_slots{model=\"alpha\"} 4",
                           "velocity_kv_cache_usage_ratio{model=\"beta\"}", "velocity_http_responses_total{code=\"200\"}",
                           "# TYPE velocity_time_to_first_token_seconds histogram"})
    EXPECT_NE(metrics.body.find(line), std::string::npos) << line << "\n" << metrics.body;
  server.server->metrics().add_collector([](std::string& out) { out += "# TYPE gpu_x gauge\ngpu_x 1\n"; });
  EXPECT_NE(get(server.port, "/metrics").body.find("gpu_x 1"), std::string::npos);
}

TEST(HttpStream, Http10StreamEndsAtCloseAndExpectContinue) {
  TestServer server;
  std::string body = chat_body("u v", R"("stream":true)");
  Response r = raw(server.port, "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: " +
                                    std::to_string(body.size()) +
                                    "\r\n\r\n" + body);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("transfer-encoding"), "");
  Stream s = parse_stream(r.body);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.text, "u v");

  // curl sends "Expect: 100-continue" for larger bodies and waits for the interim response.
  net::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port));
  body = chat_body("w");
  net::write(socket, net::buffer("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                                 "Content-Type: application/json\r\n"
                                 "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  std::string got;
  char buf[4096];
  while (got.find("\r\n\r\n") == std::string::npos) {
    size_t n = socket.read_some(net::buffer(buf));
    got.append(buf, n);
  }
  EXPECT_EQ(got.substr(0, 25), "HTTP/1.1 100 Continue\r\n\r\n");
  net::write(socket, net::buffer(body));
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(socket, buffer, res);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(json::parse(res.body())["choices"][0]["message"]["content"], "w");
}

}  // namespace
}  // namespace velocity::server::test
