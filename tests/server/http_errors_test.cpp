// The malformed-request table: every case goes through real HTTP to a FakeService and must get
// the right status and an OpenAI-shaped error body; afterwards the server still serves.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "test_client.h"

namespace velocity::server::test {
namespace {

using json = nlohmann::json;

constexpr const char* kKey = "sk-test-key";
const std::string kChat = "/v1/chat/completions";
const std::string kCompletions = "/v1/completions";

// {"error": {"message": string, "type": string, "param": string|null, "code": string|null}}
void expect_error_shape(const std::string& body, const std::string& context) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    ADD_FAILURE() << context << ": body is not JSON: " << body;
    return;
  }
  ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_object()) << context << ": " << body;
  const json& e = j["error"];
  EXPECT_EQ(e.size(), 4u) << context << ": " << body;
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << context;
  EXPECT_TRUE(e["type"].is_string()) << context;
  EXPECT_TRUE(e.contains("param") && (e["param"].is_string() || e["param"].is_null())) << context;
  EXPECT_TRUE(e.contains("code") && (e["code"].is_string() || e["code"].is_null())) << context;
}

std::string chat(const std::string& extra, const std::string& messages = R"([{"role":"user","content":"hi"}])") {
  return R"({"model":"fake","messages":)" + messages + (extra.empty() ? "" : "," + extra) + "}";
}

struct Case {
  const char* name;
  std::string target;
  std::string body;
  int status;
  const char* param = nullptr;  // checked when set ("" = null)
  http::verb method = http::verb::post;
  const char* key = kKey;
};

ServerSettings keyed_settings() {
  ServerSettings s = TestServer::test_settings();
  s.api_keys = {kKey};
  return s;
}

FakeServiceOptions small_context() {
  FakeServiceOptions o;
  o.n_ctx = 32;
  return o;
}

TEST(HttpErrors, MalformedRequestTable) {
  TestServer server(keyed_settings(), {small_context()});
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "word ";
  const std::vector<Case> cases = {
      {"bad json", kChat, "{", 400, ""},
      {"empty body", kChat, "", 400, ""},
      {"body is an array", kChat, "[]", 400, "body"},
      {"body is a string", kChat, "\"x\"", 400, "body"},
      {"nested brackets", kChat, std::string(20000, '['), 400, ""},
      {"model is a number", kChat, R"({"model":3,"messages":[{"role":"user","content":"hi"}]})", 400, "model"},
      {"unknown model", kChat, R"({"model":"nope","messages":[{"role":"user","content":"hi"}]})", 404, "model"},
      {"missing messages", kChat, R"({"model":"fake"})", 400, "messages"},
      {"messages is an object", kChat, chat("", "{}"), 400, "messages"},
      {"empty messages", kChat, chat("", "[]"), 400, "messages"},
      {"message is a string", kChat, chat("", R"(["hi"])"), 400, "messages[0]"},
      {"missing role", kChat, chat("", R"([{"content":"hi"}])"), 400, "messages[0].role"},
      {"unknown role", kChat, chat("", R"([{"role":"wizard","content":"hi"}])"), 400, "messages[0].role"},
      {"role is a number", kChat, chat("", R"([{"role":1,"content":"hi"}])"), 400, "messages[0].role"},
      {"content is a number", kChat, chat("", R"([{"role":"user","content":5}])"), 400, "messages[0].content"},
      {"content is missing", kChat, chat("", R"([{"role":"user"}])"), 400, "messages[0].content"},
      {"content part image", kChat, chat("", R"([{"role":"user","content":[{"type":"image_url","image_url":{}}]}])"),
       400, "messages[0].content[0].type"},
      {"content part text not string", kChat, chat("", R"([{"role":"user","content":[{"type":"text","text":1}]}])"),
       400, "messages[0].content[0].text"},
      {"max_tokens negative", kChat, chat(R"("max_tokens":-1)"), 400, "max_tokens"},
      {"max_tokens zero", kChat, chat(R"("max_tokens":0)"), 400, "max_tokens"},
      {"max_tokens huge", kChat, chat(R"("max_tokens":1000000000000)"), 400, "max_tokens"},
      {"max_tokens string", kChat, chat(R"("max_tokens":"10")"), 400, "max_tokens"},
      {"max_tokens fraction", kChat, chat(R"("max_tokens":1.5)"), 400, "max_tokens"},
      {"max_tokens integral float", kChat, chat(R"("max_tokens":4.0)"), 400, "max_tokens"},
      {"n integral float", kChat, chat(R"("n":1.0)"), 400, "n"},
      {"max_completion_tokens negative", kChat, chat(R"("max_completion_tokens":-5)"), 400, "max_completion_tokens"},
      {"temperature negative", kChat, chat(R"("temperature":-0.1)"), 400, "temperature"},
      {"temperature too high", kChat, chat(R"("temperature":2.5)"), 400, "temperature"},
      {"temperature string", kChat, chat(R"("temperature":"hot")"), 400, "temperature"},
      {"temperature overflow", kChat, chat(R"("temperature":1e999)"), 400, ""},
      {"NaN literal", kChat, chat(R"("temperature":NaN)"), 400, ""},
      {"Infinity literal", kChat, chat(R"("top_p":Infinity)"), 400, ""},
      {"top_p zero", kChat, chat(R"("top_p":0)"), 400, "top_p"},
      {"top_p above one", kChat, chat(R"("top_p":1.5)"), 400, "top_p"},
      {"top_k negative", kChat, chat(R"("top_k":-1)"), 400, "top_k"},
      {"min_p above one", kChat, chat(R"("min_p":2)"), 400, "min_p"},
      {"repeat_penalty zero", kChat, chat(R"("repeat_penalty":0)"), 400, "repeat_penalty"},
      {"presence_penalty 3", kChat, chat(R"("presence_penalty":3)"), 400, "presence_penalty"},
      {"frequency_penalty -2.5", kChat, chat(R"("frequency_penalty":-2.5)"), 400, "frequency_penalty"},
      {"seed string", kChat, chat(R"("seed":"x")"), 400, "seed"},
      {"five stops", kChat, chat(R"("stop":["a","b","c","d","e"])"), 400, "stop"},
      {"empty stop", kChat, chat(R"("stop":[""])"), 400, "stop[0]"},
      {"stop number", kChat, chat(R"("stop":7)"), 400, "stop"},
      {"logit_bias array", kChat, chat(R"("logit_bias":[1])"), 400, "logit_bias"},
      {"logit_bias bad key", kChat, chat(R"("logit_bias":{"abc":1})"), 400, "logit_bias"},
      {"logit_bias out of range", kChat, chat(R"("logit_bias":{"5":200})"), 400, "logit_bias"},
      {"logit_bias token beyond vocab", kChat, chat(R"("logit_bias":{"5000":1})"), 400, "logit_bias"},
      {"n = 2", kChat, chat(R"("n":2)"), 400, "n"},
      {"stream string", kChat, chat(R"("stream":"yes")"), 400, "stream"},
      {"stream_options string", kChat, chat(R"("stream":true,"stream_options":"x")"), 400, "stream_options"},
      {"invalid utf-8", kChat, chat("", "[{\"role\":\"user\",\"content\":\"a\xff\xfe\"}]"), 400, ""},
      {"lone surrogate", kChat, chat("", R"([{"role":"user","content":"\ud800"}])"), 400, ""},
      {"prompt longer than context", kChat, chat("", R"([{"role":"user","content":")" + long_prompt + "\"}]"), 400,
       "messages"},
      {"completions: missing prompt", kCompletions, R"({"model":"fake"})", 400, "prompt"},
      {"completions: token array", kCompletions, R"({"model":"fake","prompt":[1,2,3]})", 400, "prompt"},
      {"completions: prompt number", kCompletions, R"({"model":"fake","prompt":5})", 400, "prompt"},
      {"completions: two prompts", kCompletions, R"({"model":"fake","prompt":["a","b"]})", 400, "prompt"},
      {"completions: echo of bad max_tokens", kCompletions, R"({"model":"fake","prompt":"a","max_tokens":-3})", 400,
       "max_tokens"},
      {"no key", kChat, chat(""), 401, "", http::verb::post, ""},
      {"wrong key", kChat, chat(""), 401, "", http::verb::post, "sk-wrong"},
      {"wrong key on models", "/v1/models", "", 401, "", http::verb::get, "sk-wrong"},
      {"GET on chat", kChat, "", 405, "", http::verb::get},
      {"DELETE on models", "/v1/models", "", 405, "", http::verb::delete_},
      {"PUT on completions", kCompletions, chat(""), 405, "", http::verb::put},
      {"unknown route", "/v1/embeddings", "{}", 404, ""},
      {"unknown page", "/index.html", "", 404, "", http::verb::get},
      {"POST on the chat page", "/", "{}", 405, "", http::verb::post},
      {"unknown model id", "/v1/models/nope", "", 404, "model", http::verb::get},
  };
  ASSERT_GE(cases.size(), 40u);
  for (const Case& c : cases) {
    std::map<std::string, std::string> headers = {{"Content-Type", "application/json"}};
    if (c.key[0]) headers["Authorization"] = std::string("Bearer ") + c.key;
    Response r = request(server.port, c.method, c.target, c.body, headers);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    expect_error_shape(r.body, c.name);
    if (c.param && r.status == c.status) {
      json e = json::parse(r.body, nullptr, false)["error"];
      json want = c.param[0] ? json(c.param) : json();
      EXPECT_EQ(e["param"], want) << c.name << ": " << r.body;
    }
  }
  // Nothing invalid was accepted: what the HTTP layer can see is refused before submit(); what
  // only the service can judge (the context length, logit_bias ids against the vocabulary) is
  // refused by its preparation step, before generation.
  EXPECT_EQ(server.fake().n_accepted(), 0);

  // Bodies over max_body_bytes (64 KiB here): announced by Content-Length (the body is never
  // sent) and as a chunked body that only shows its size while being read.
  Response big = raw(server.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test-key\r\n"
                                  "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n");
  EXPECT_EQ(big.status, 413);
  expect_error_shape(big.body, "content-length 413");
  std::string chunk(70000, ' ');
  Response chunked = raw(server.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test-key\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n" +
                                          fmt::format("{:x}\r\n", chunk.size()) + chunk + "\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.status, 413);
  expect_error_shape(chunked.body, "chunked 413");

  // Headers over 16 KiB.
  Response huge_header = raw(server.port, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge_header.status, 431);
  expect_error_shape(huge_header.body, "431");

  // Not HTTP at all.
  Response garbage = raw(server.port, "HELLO THERE\r\n\r\n");
  EXPECT_EQ(garbage.status, 400);
  expect_error_shape(garbage.body, "garbage");

  // The server still serves a good request.
  Response ok = post(server.port, kChat, chat(""), kKey);
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(json::parse(ok.body)["choices"][0]["message"]["content"], "hi");
  // /health needs no key.
  EXPECT_EQ(get(server.port, "/health").status, 200);
}

// Read the socket until it closes or `limit` passes; returns how long that took.
std::chrono::milliseconds time_until_closed(tcp::socket& socket, std::chrono::milliseconds limit) {
  auto start = std::chrono::steady_clock::now();
  socket.non_blocking(true);
  char buf[256];
  while (std::chrono::steady_clock::now() - start < limit) {
    beast::error_code ec;
    socket.read_some(net::buffer(buf), ec);
    if (ec && ec != net::error::would_block) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

TEST(HttpErrors, SlowlorisIsClosedAfterTheTimeouts) {
  ServerSettings s = TestServer::test_settings();
  s.header_timeout_s = 0.3;
  s.request_timeout_s = 0.5;
  TestServer server(s);
  net::io_context ioc;

  // Headers that never finish.
  tcp::socket a(ioc);
  a.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port));
  net::write(a, net::buffer(std::string("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")));
  auto t = time_until_closed(a, std::chrono::seconds(5));
  EXPECT_GE(t.count(), 200);
  EXPECT_LT(t.count(), 2000);

  // A body that never finishes.
  tcp::socket b(ioc);
  b.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port));
  net::write(b, net::buffer(std::string("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mo")));
  t = time_until_closed(b, std::chrono::seconds(5));
  EXPECT_GE(t.count(), 400);
  EXPECT_LT(t.count(), 2500);

  // An idle keep-alive connection is closed after the header timeout too; the server serves on.
  tcp::socket c(ioc);
  c.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port));
  t = time_until_closed(c, std::chrono::seconds(5));
  EXPECT_LT(t.count(), 2000);
  EXPECT_EQ(post(server.port, kChat, chat("")).status, 200);
}

TEST(HttpErrors, NotReadyAndQueueFull) {
  FakeServiceOptions o;
  o.n_slots = 1;
  o.max_queue = 1;
  o.token_delay = std::chrono::milliseconds(20);
  TestServer server(TestServer::test_settings(), {o});

  server.fake().set_state(ModelService::State::Loading, "37% of tensors");
  Response r = post(server.port, kChat, chat(""));
  EXPECT_EQ(r.status, 503);
  expect_error_shape(r.body, "503");
  Response health = get(server.port, "/health");
  EXPECT_EQ(health.status, 503);
  EXPECT_NE(health.body.find("'fake' is loading: 37% of tensors"), std::string::npos) << health.body;
  server.fake().set_state(ModelService::State::Ready);
  EXPECT_EQ(get(server.port, "/health").status, 200);

  // One running + one queued fill the model; the third gets 429.
  std::string slow = chat("", R"([{"role":"user","content":"__forever__ a"}])");
  std::thread t1([&] { post(server.port, kChat, chat(R"("max_tokens":100)", R"([{"role":"user","content":"__forever__ a"}])")); });
  std::thread t2([&] { post(server.port, kChat, chat(R"("max_tokens":100)", R"([{"role":"user","content":"__forever__ a"}])")); });
  // A loaded machine (CI's two cores) can take a while to get both in: wait up to 10 s, and join
  // the clients whatever happens (an early return would leave them running past the server).
  for (int i = 0; i < 2000 && server.fake().n_in_flight() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(server.fake().n_in_flight(), 2);
  if (server.fake().n_in_flight() == 2) {
    Response full = post(server.port, kChat, slow);
    EXPECT_EQ(full.status, 429);
    expect_error_shape(full.body, "429");
    EXPECT_EQ(full.header("retry-after"), "1");  // clients (and the openai SDKs) back off this long
  }
  t1.join();
  t2.join();
}

// "model" may be left out when the server has one model (curl users often do); with several it
// is required, and the error names them.
TEST(HttpErrors, ModelIsOptionalOnlyWithOneModel) {
  const std::string no_model = R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":2})";
  {
    TestServer server(keyed_settings(), {small_context()});
    Response r = post(server.port, kChat, no_model, kKey);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["model"], "fake") << r.body;
    r = post(server.port, kCompletions, R"({"prompt":"hi","max_tokens":2})", kKey);
    EXPECT_EQ(r.status, 200) << r.body;
  }
  FakeServiceOptions a, b;
  a.name = "alpha";
  b.name = "beta";
  TestServer server(keyed_settings(), {a, b});
  Response r = post(server.port, kChat, no_model, kKey);
  EXPECT_EQ(r.status, 400) << r.body;
  expect_error_shape(r.body, "no model, two served");
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "model");
  EXPECT_NE(r.body.find("alpha, beta"), std::string::npos) << r.body;
}

// Operators see one line per request: its id, model, outcome and token counts.
TEST(HttpErrors, EveryGenerationLogsOneLine) {
  TestServer server(keyed_settings(), {small_context()});
  ::testing::internal::CaptureStderr();
  Response r = post(server.port, kChat, chat(R"("max_tokens":3)"), kKey);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = json::parse(r.body);
  const std::string id = body["id"];
  const size_t at = log.find(id + " model 'fake': finish " + body["choices"][0]["finish_reason"].get<std::string>() +
                             "; prompt " + std::to_string(body["usage"]["prompt_tokens"].get<int64_t>()) + " tokens");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_NE(log.find("completion " + std::to_string(body["usage"]["completion_tokens"].get<int64_t>()) + " tokens at ", at),
            std::string::npos)
      << log;
}


// GET /props (llama-server's shape) and /version: the served model's settings, the model named by
// ?model= when several are served; behind the API key like every route but /health.
TEST(HttpErrors, PropsAndVersion) {
  {
    FakeServiceOptions o = small_context();
    o.defaults.temperature = 0.25f;
    o.defaults.top_k = 7;
    TestServer server(keyed_settings(), {o});
    Response r = get(server.port, "/props", kKey);
    ASSERT_EQ(r.status, 200) << r.body;
    json props = json::parse(r.body);
    EXPECT_EQ(props["model"], "fake");
    EXPECT_EQ(props["default_generation_settings"]["n_ctx"], 32);
    EXPECT_FLOAT_EQ(props["default_generation_settings"]["params"]["temperature"].get<float>(), 0.25f);
    EXPECT_EQ(props["default_generation_settings"]["params"]["top_k"], 7);
    EXPECT_EQ(props["default_generation_settings"]["params"]["seed"], -1);
    EXPECT_EQ(props["total_slots"], 4);
    EXPECT_TRUE(props["chat_template"].is_string() && props["model_path"].is_string()) << r.body;
    EXPECT_EQ(get(server.port, "/props").status, 401);
    r = get(server.port, "/version", kKey);
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string version = json::parse(r.body)["version"];
    EXPECT_EQ(std::count(version.begin(), version.end(), '.'), 2) << version;  // MAJOR.MINOR.PATCH
    EXPECT_EQ(version.find_first_not_of("0123456789."), std::string::npos) << version;
    EXPECT_NE(props["build_info"].get<std::string>().find(version), std::string::npos) << r.body;
    EXPECT_EQ(request(server.port, http::verb::post, "/props", "{}", {{"Authorization", std::string("Bearer ") + kKey}}).status,
              405);
  }
  FakeServiceOptions a = small_context(), b;
  a.name = "alpha";
  b.name = "beta b";
  b.n_slots = 2;
  TestServer server(keyed_settings(), {a, b});
  Response r = get(server.port, "/props", kKey);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("alpha, beta b"), std::string::npos) << r.body;
  r = get(server.port, "/props?model=beta+b", kKey);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["model"], "beta b");
  EXPECT_EQ(json::parse(r.body)["total_slots"], 2);
  r = get(server.port, "/props?x=1&model=alpha", kKey);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["default_generation_settings"]["n_ctx"], 32);
  EXPECT_EQ(get(server.port, "/props?model=gamma", kKey).status, 404);
}

// /tokenize, /detokenize, /apply-template in llama-server's shapes (FakeService: one token per
// byte, BOS 999), their errors, and "model" optional with one model.
TEST(HttpErrors, TokenizeDetokenizeApplyTemplate) {
  TestServer server(keyed_settings(), {small_context()});
  Response r = post(server.port, "/tokenize", R"({"content":"hi"})", kKey);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"tokens":[104,105]})"));
  r = post(server.port, "/tokenize", R"({"model":"fake","content":"a\u00e9","add_special":true,"with_pieces":true})", kKey);
  ASSERT_EQ(r.status, 200) << r.body;
  // "é" is two tokens of one byte each: pieces that are not UTF-8 come as their bytes.
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"tokens":[{"id":999,"piece":"<s>"},{"id":97,"piece":"a"},)"
                                             R"({"id":195,"piece":[195]},{"id":169,"piece":[169]}]})"));
  r = post(server.port, "/detokenize", R"({"tokens":[104,105,33]})", kKey);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["content"], "hi!");
  r = post(server.port, "/apply-template", R"({"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]})",
           kKey);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["prompt"], "<system>s\n<user>u\n<assistant>");
  const struct {
    const char* target;
    const char* body;
    int status;
    const char* param;
  } bad[] = {
      {"/tokenize", R"({})", 400, "content"},
      {"/tokenize", R"({"content":5})", 400, "content"},
      {"/tokenize", R"({"content":"x","with_pieces":"yes"})", 400, "with_pieces"},
      {"/tokenize", R"([1])", 400, nullptr},
      {"/tokenize", R"({"content":"x"})" "x", 400, nullptr},
      {"/detokenize", R"({"tokens":[1,-2]})", 400, "tokens"},
      {"/detokenize", R"({"tokens":[1.5]})", 400, "tokens"},
      {"/detokenize", R"({"tokens":[5000]})", 400, "tokens"},
      {"/detokenize", R"({"tokens":"1 2"})", 400, "tokens"},
      {"/apply-template", R"({"messages":"hi"})", 400, "messages"},
      {"/tokenize", R"({"model":"nope","content":"x"})", 404, "model"},
  };
  for (const auto& c : bad) {
    r = post(server.port, c.target, c.body, kKey);
    EXPECT_EQ(r.status, c.status) << c.target << " " << c.body << ": " << r.body;
    expect_error_shape(r.body, c.body);
    if (c.param) {
      EXPECT_EQ(json::parse(r.body)["error"]["param"], c.param) << c.target << " " << c.body << ": " << r.body;
    }
  }
  EXPECT_EQ(post(server.port, "/tokenize", R"({"content":"x"})").status, 401);
  EXPECT_EQ(get(server.port, "/tokenize", kKey).status, 405);
}

// GET /slots: one entry per slot with llama-server's fields; a slot is processing while a request
// runs in it, and not after.
TEST(HttpErrors, SlotsShowTheRunningRequest) {
  FakeServiceOptions o;
  o.n_slots = 3;
  o.token_delay = std::chrono::milliseconds(20);
  TestServer server(keyed_settings(), {o});
  Response r = get(server.port, "/slots", kKey);
  ASSERT_EQ(r.status, 200) << r.body;
  json slots = json::parse(r.body);
  ASSERT_EQ(slots.size(), 3u) << r.body;
  for (const json& s : slots) {
    EXPECT_FALSE(s["is_processing"].get<bool>()) << r.body;
    EXPECT_EQ(s["n_ctx"], 4096);
  }
  std::thread client([&] {
    post(server.port, kChat, R"({"messages":[{"role":"user","content":"a b c"}],"max_tokens":30})", kKey);
  });
  bool seen = false;
  for (int i = 0; i < 200 && !seen; ++i) {
    slots = json::parse(get(server.port, "/slots", kKey).body);
    for (const json& s : slots) seen = seen || (s["is_processing"].get<bool>() && s["n_prompt_tokens"] == 4);
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  client.join();
  EXPECT_TRUE(seen) << "no slot was seen processing";
  slots = json::parse(get(server.port, "/slots", kKey).body);
  for (const json& s : slots) EXPECT_FALSE(s["is_processing"].get<bool>()) << slots.dump();
  EXPECT_EQ(get(server.port, "/slots").status, 401);
}

}  // namespace
}  // namespace velocity::server::test
