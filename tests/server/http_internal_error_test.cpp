// A failed internal check (a bug) is a 500 server_error with a log line, never a 4xx: a service
// that turns the user's faults (velocity::Error) into 400s, as EngineService does, must not
// catch a VELOCITY_CHECK with them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <stdexcept>

#include "core/error.h"
#include "test_client.h"

namespace velocity::server::test {
namespace {

using json = nlohmann::json;

// FakeService behind EngineService's error mapping. The last user message picks the fault:
// "__check__" fails a VELOCITY_CHECK, "__user_fault__" is a velocity::Error.
class CheckingService final : public ModelService {
 public:
  const std::string& name() const override { return fake_.name(); }
  State state(std::string* message) const override { return fake_.state(message); }
  int64_t n_ctx() const override { return fake_.n_ctx(); }
  const SamplingDefaults& sampling_defaults() const override { return fake_.sampling_defaults(); }
  ServiceStats stats() const override { return fake_.stats(); }
  std::shared_ptr<JobHandle> submit(GenerationJob job) override {
    const std::string& input = job.is_chat ? job.messages.back().content : job.prompt;
    try {
      VELOCITY_CHECK(input != "__check__", "a broken invariant for the test");
      if (input == "__user_fault__") fail("the prompt is not acceptable");
    } catch (const Error& e) {
      throw ApiError::bad_request(e.what());
    }
    return fake_.submit(std::move(job));
  }

 private:
  FakeService fake_;
};

struct CheckingServer {
  std::shared_ptr<CheckingService> service = std::make_shared<CheckingService>();
  HttpServer server{TestServer::test_settings(), {service}};
  uint16_t port = 0;
  CheckingServer() {
    server.start();
    port = server.port();
  }
  ~CheckingServer() { server.shutdown(std::chrono::milliseconds(0)); }
};

std::string chat(const std::string& content) {
  return json{{"model", "fake"}, {"messages", {{{"role", "user"}, {"content", content}}}}}.dump();
}

TEST(HttpInternalError, AFailedCheckIsNotAUserError) {
  bool internal = false;
  try {
    VELOCITY_CHECK(1 + 1 == 3, "arithmetic");
  } catch (const Error&) {
    ADD_FAILURE() << "VELOCITY_CHECK threw velocity::Error, the user-fault type";
  } catch (const InternalError& e) {
    internal = true;
    EXPECT_NE(std::string(e.what()).find("1 + 1 == 3: arithmetic"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(internal);
}

TEST(HttpInternalError, ACheckFailureIsA500WithALogLine) {
  CheckingServer server;
  testing::internal::CaptureStderr();
  Response r = post(server.port, "/v1/chat/completions", chat("__check__"));
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(r.status, 500) << r.body;
  json j = json::parse(r.body, nullptr, false);
  EXPECT_EQ(j["error"]["type"], "server_error") << r.body;
  EXPECT_EQ(j["error"]["code"], "internal_error") << r.body;
  // The client is told it is the server's fault; the details (file, line) go to the log only.
  EXPECT_EQ(r.body.find("error_test.cpp"), std::string::npos) << r.body;
  // One line: a timestamp, what was asked, the check and its place.
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log.find('\n'), log.size() - 1) << log;
  EXPECT_TRUE(isdigit((unsigned char)log[0]) && log.find('T') == 10) << log;  // 2025-06-01T12:00:00.000Z
  EXPECT_NE(log.find("internal error"), std::string::npos) << log;
  EXPECT_NE(log.find("POST /v1/chat/completions"), std::string::npos) << log;
  EXPECT_NE(log.find("a broken invariant for the test"), std::string::npos) << log;
  EXPECT_NE(log.find("http_internal_error_test.cpp"), std::string::npos) << log;
  // The request number in the client's message is the one in the log.
  const std::string message = j["error"]["message"];
  const size_t at = message.find("request ");
  ASSERT_NE(at, std::string::npos) << message;
  const std::string id = message.substr(at, message.find_first_not_of("0123456789", at + 8) - at);
  EXPECT_NE(log.find(id), std::string::npos) << id << " not in: " << log;

  // A user's fault stays a 400, and the server serves on.
  r = post(server.port, "/v1/chat/completions", chat("__user_fault__"));
  EXPECT_EQ(r.status, 400) << r.body;
  r = post(server.port, "/v1/chat/completions", chat("fine"));
  EXPECT_EQ(r.status, 200) << r.body;
}

}  // namespace
}  // namespace velocity::server::test
