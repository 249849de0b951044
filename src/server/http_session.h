// Internal to the server: the state every connection shares (ServerState) and one connection
// (Session). Not for use outside src/server.
//
// A Session lives on its own strand. It reads a request (headers within header_timeout_s, the
// body within request_timeout_s and max_body_bytes), answers it (routes.cpp), and then reads
// the next one (keep-alive) or closes. While a generation runs it also keeps a read pending on
// the socket, so that a client that goes away is seen at once (EOF or reset) and its job is
// cancelled; bytes that arrive meanwhile (a pipelined request) are kept for the next read.
//
// Before routing, handle_request checks who asks (README.md, "Security"): the Host header (DNS
// rebinding; skipped when API keys are configured), the Origin header (cross-site requests from
// browser pages; allowed origins get CORS headers on every response and their preflights a 204),
// then the route, the key, and for the generation POSTs the media type (application/json).
//
// Service callbacks come from the engine's thread and reach the session through its Mailbox,
// which posts them onto the strand. At teardown the server closes every mailbox before the
// io_context goes away, so a late callback touches nothing of the server.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "server/config.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "server/service.h"
#include "server/sse.h"

namespace velocity::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Strand = net::strand<net::io_context::executor_type>;
using Clock = std::chrono::steady_clock;

class Session;

// Where a service callback is delivered: the session's strand, while the server runs.
class Mailbox {
 public:
  Mailbox(Strand strand, std::weak_ptr<Session> session) : strand_(std::move(strand)), session_(std::move(session)) {}
  // Runs fn(session) on the strand if the server still runs and the session still exists.
  void post(std::function<void(Session&)> fn);
  void close();  // no post after this returns

 private:
  std::mutex mutex_;
  std::optional<Strand> strand_;
  std::weak_ptr<Session> session_;
};

// Jobs submitted whose on_done has not come yet (shared with the callbacks, which may outlive
// the server).
struct JobCounter {
  std::mutex mutex;
  std::condition_variable cv;
  int64_t n = 0;
  void add(int64_t d) {
    std::lock_guard lock(mutex);
    n += d;
    cv.notify_all();
  }
};

struct ServerState {
  ServerSettings settings;
  std::vector<std::shared_ptr<ModelService>> models;
  std::map<std::string, std::shared_ptr<ModelService>> by_name;
  Metrics metrics;
  int64_t started_unix = 0;
  std::atomic<bool> shutting_down{false};
  std::shared_ptr<JobCounter> jobs = std::make_shared<JobCounter>();
  std::atomic<uint64_t> n_requests{0};  // requests read so far; numbers them in log lines

  struct LiveSession {
    uint64_t id = 0;  // in the order the connections were accepted
    std::weak_ptr<Session> session;
  };
  std::mutex sessions_mutex;
  std::condition_variable sessions_cv;
  std::map<Session*, LiveSession> sessions;
  uint64_t next_session_id = 0;
  std::vector<std::weak_ptr<Mailbox>> mailboxes;  // pruned as sessions end

  std::chrono::milliseconds header_timeout() const;
  std::chrono::milliseconds request_timeout() const;
  std::chrono::milliseconds keepalive_interval() const;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ServerState& state);
  ~Session();

  void start();
  const Strand& strand() const { return strand_; }

  // Posted by the server at shutdown, on the strand, to the connections open when it began
  // (one accepted during the drain is served one request, then closes).
  void on_shutdown();  // idle connections close; a running request closes after its response
  void cancel_job();   // the grace period is over: cancel the running job
  void force_close();

 private:
  enum class Phase { ReadingHeader, ReadingBody, Handling, Closed };

  // One generation request in progress.
  struct Generation {
    uint64_t serial = 0;
    bool stream = false;
    bool include_usage = false;
    ResponseMeta meta;
    std::shared_ptr<JobHandle> handle;
    ModelMetrics* metrics = nullptr;
    Clock::time_point submitted, last_delta;
    bool got_delta = false;
    bool accepted = false;        // the service accepted the job (on_accepted came)
    bool stream_started = false;  // the SSE response header is out
    bool done = false;
    bool client_gone = false;
    std::string text, reasoning;  // non-streaming: the whole answer
    bool logprobs = false;        // the request asked for logprobs
    std::vector<TokenLogprob> token_logprobs;  // streaming: the next chunk's; else all of them
    size_t text_offset = 0;       // completions: bytes of the tokens already sent
    GenerationJob::Utility utility = GenerationJob::Utility::None;  // /tokenize, ...: no generation
    bool with_pieces = false;     // /tokenize
  };

  // Reading (http_session.cpp).
  void read_header();
  void on_header(beast::error_code ec, size_t n);
  void read_body();
  void on_body(beast::error_code ec, size_t n);
  ApiError body_too_large() const;

  // Plain responses.
  void respond(http::status status, std::string body, const char* content_type = "application/json",
               std::vector<std::pair<std::string, std::string>> headers = {});
  void respond_error(const ApiError& error, std::vector<std::pair<std::string, std::string>> headers = {});
  void on_response_written(bool keep_alive, beast::error_code ec, size_t n);
  void next_request();  // after a complete response: read the next one or close
  bool keep_alive() const;

  // Routes (routes.cpp).
  void handle_request();
  void handle_generation(Endpoint endpoint);
  void handle_models();
  void handle_health();
  void handle_props();
  void handle_slots();
  const ModelService& model_from_query(const char* route) const;
  ModelService& served_model(const std::string& name, std::string_view missing) const;
  void handle_utility(GenerationJob::Utility kind);
  void submit(ModelService& service, GenerationJob job, Generation gen);
  void handle_version();
  void handle_metrics();
  void handle_page();  // GET /: the chat page
  bool authorized() const;
  // Who may ask, before routing (routes.cpp; README.md "Security").
  std::optional<ApiError> check_host() const;
  std::optional<ApiError> check_origin();  // sets cors_origin_ for an allowed cross-origin request
  std::optional<ApiError> check_media_type() const;
  void handle_preflight();
  void internal_error(std::string_view target, std::string_view what, bool bug);  // 500 + log line

  // Generation events, on the strand (routes.cpp).
  void on_accepted(uint64_t serial);
  void on_prompt_processed(uint64_t serial);
  void on_delta(uint64_t serial, std::string text, std::string reasoning);
  void on_logprobs(uint64_t serial, std::vector<TokenLogprob> entries);
  void send_last_logprobs();
  void on_done(uint64_t serial, Completion completion);
  // One line per finished generation on stderr: id, model, outcome, tokens, prefill time, tok/s.
  void log_request(const Completion& completion) const;

  // Streaming (http_session.cpp).
  void stream_begin();
  void stream_send(std::string_view data);
  void stream_finish();  // everything is queued: write the last chunk after it
  void stream_flush();
  void on_stream_written(beast::error_code ec, size_t n);
  void arm_keepalive();
  void watch_disconnect();
  void on_watch(beast::error_code ec, size_t n);
  void client_gone();
  void close();
  void linger_close();  // after a final response: FIN, drain briefly, close

  ServerState& state_;
  Strand strand_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  Phase phase_ = Phase::ReadingHeader;
  bool close_after_ = false;  // shutdown: no keep-alive
  int64_t n_requests_ = 0;    // read on this connection
  uint64_t request_number_ = 0;  // server-wide number of the current request (log lines)
  std::string cors_origin_;   // the current request's allowed cross origin: echoed in
                              // Access-Control-Allow-Origin on every response; "" = none

  std::shared_ptr<Mailbox> mailbox_;
  std::optional<Generation> gen_;
  std::shared_ptr<Session> gen_self_;  // keeps the session alive until the job's on_done
  uint64_t next_serial_ = 1;

  // Response writing.
  std::shared_ptr<http::response<http::string_body>> response_;
  std::unique_ptr<http::response<http::empty_body>> stream_header_;
  std::unique_ptr<http::response_serializer<http::empty_body>> stream_serializer_;
  std::string out_pending_, out_writing_;
  bool writing_ = false;
  bool stream_finishing_ = false;
  bool raw_stream_ = false;  // HTTP/1.0 client: no chunk framing, close at the end
  Clock::time_point last_write_;
  net::steady_timer keepalive_timer_;

  // Disconnect watch.
  bool watching_ = false;
  bool resume_after_watch_ = false;
};

}  // namespace velocity::server
