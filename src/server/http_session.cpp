// Connection I/O: reading requests with limits and timeouts, writing plain and streamed
// responses, keep-alive comments, and watching for a client that disconnects mid-generation.
#include "server/http_session.h"

#include <algorithm>
#include <array>

namespace velocity::server {

namespace {
std::chrono::milliseconds seconds_to_ms(double s) { return std::chrono::milliseconds((int64_t)(s * 1000.0)); }
}  // namespace

std::chrono::milliseconds ServerState::header_timeout() const { return seconds_to_ms(settings.header_timeout_s); }
std::chrono::milliseconds ServerState::request_timeout() const { return seconds_to_ms(settings.request_timeout_s); }
std::chrono::milliseconds ServerState::keepalive_interval() const {
  return seconds_to_ms(settings.keepalive_interval_s);
}

void Mailbox::post(std::function<void(Session&)> fn) {
  std::lock_guard lock(mutex_);
  if (!strand_) return;
  net::post(*strand_, [session = session_, fn = std::move(fn)]() {
    if (auto s = session.lock()) fn(*s);
  });
}

void Mailbox::close() {
  std::lock_guard lock(mutex_);
  strand_.reset();
}

Session::Session(tcp::socket socket, ServerState& state)
    : state_(state),
      strand_(net::make_strand(static_cast<net::io_context&>(socket.get_executor().context()))),
      stream_(std::move(socket)),
      keepalive_timer_(strand_) {}

Session::~Session() {
  std::lock_guard lock(state_.sessions_mutex);
  state_.sessions.erase(this);
  state_.sessions_cv.notify_all();
}

void Session::start() {
  mailbox_ = std::make_shared<Mailbox>(strand_, weak_from_this());
  {
    std::lock_guard lock(state_.sessions_mutex);
    state_.sessions[this] = {state_.next_session_id++, weak_from_this()};
    std::erase_if(state_.mailboxes, [](const std::weak_ptr<Mailbox>& m) { return m.expired(); });
    state_.mailboxes.push_back(mailbox_);
  }
  net::dispatch(strand_, [self = shared_from_this()] { self->read_header(); });
}

// --- reading ----------------------------------------------------------------------------------

void Session::read_header() {
  if (phase_ == Phase::Closed) return;
  // During a shutdown's drain a connection accepted meanwhile is served one request (/health
  // says 503, generation requests get 503); the others close between requests.
  if (close_after_ || (state_.shutting_down && n_requests_ > 0)) return close();
  phase_ = Phase::ReadingHeader;
  cors_origin_.clear();
  parser_.emplace();
  parser_->header_limit(16 * 1024);
  parser_->body_limit((uint64_t)state_.settings.max_body_bytes);
  stream_.expires_after(state_.header_timeout());
  http::async_read_header(stream_, buffer_, *parser_,
                          net::bind_executor(strand_, beast::bind_front_handler(&Session::on_header, shared_from_this())));
}

void Session::on_header(beast::error_code ec, size_t) {
  if (phase_ == Phase::Closed) return;
  if (ec) {
    // end_of_stream: the client closed between requests; timeout: slowloris or idle keep-alive.
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof)
      return close();
    close_after_ = true;
    // A Content-Length over body_limit fails here, with the headers, before any body byte is read.
    if (ec == http::error::body_limit) return respond_error(body_too_large());
    if (ec == http::error::header_limit)
      return respond_error(ApiError(431, "invalid_request_error", "request headers are too large", {}, "headers_too_large"));
    return respond_error(ApiError::bad_request("malformed HTTP request: " + ec.message(), {}, "bad_http_request"));
  }
  auto& header = parser_->get();
  if (beast::iequals(header[http::field::expect], "100-continue")) {
    auto continue_line = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
    stream_.expires_after(state_.request_timeout());
    net::async_write(stream_, net::buffer(*continue_line),
                     net::bind_executor(strand_, [self = shared_from_this(), continue_line](beast::error_code e, size_t) {
                       if (e) return self->close();
                       self->read_body();
                     }));
    return;
  }
  read_body();
}

ApiError Session::body_too_large() const {
  return ApiError(413, "invalid_request_error",
                  "request body exceeds the limit of " + std::to_string(state_.settings.max_body_bytes) + " bytes",
                  {}, "request_too_large");
}

void Session::read_body() {
  if (phase_ == Phase::Closed) return;
  phase_ = Phase::ReadingBody;
  stream_.expires_after(state_.request_timeout());
  http::async_read(stream_, buffer_, *parser_,
                   net::bind_executor(strand_, beast::bind_front_handler(&Session::on_body, shared_from_this())));
}

void Session::on_body(beast::error_code ec, size_t) {
  if (phase_ == Phase::Closed) return;
  if (ec) {
    if (ec == http::error::body_limit) {  // a chunked body grew past the limit while being read
      close_after_ = true;
      return respond_error(body_too_large());
    }
    if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted || ec == http::error::partial_message)
      return close();
    close_after_ = true;
    return respond_error(ApiError::bad_request("malformed HTTP request: " + ec.message(), {}, "bad_http_request"));
  }
  stream_.expires_never();
  request_ = parser_->release();
  parser_.reset();
  phase_ = Phase::Handling;
  ++n_requests_;
  request_number_ = ++state_.n_requests;
  handle_request();
}

// --- plain responses --------------------------------------------------------------------------

bool Session::keep_alive() const { return request_.keep_alive() && !close_after_ && !state_.shutting_down; }

void Session::respond(http::status status, std::string body, const char* content_type,
                      std::vector<std::pair<std::string, std::string>> headers) {
  if (phase_ == Phase::Closed) return;
  phase_ = Phase::Handling;
  state_.metrics.count_response((int)status);
  response_ = std::make_shared<http::response<http::string_body>>(status, request_.version() ? request_.version() : 11);
  response_->set(http::field::server, "velocity");
  if (*content_type) response_->set(http::field::content_type, content_type);
  if (!cors_origin_.empty()) {
    response_->set(http::field::access_control_allow_origin, cors_origin_);
    response_->set(http::field::vary, "Origin");
  }
  for (auto& [name, value] : headers) response_->set(name, value);
  bool alive = keep_alive();
  response_->keep_alive(alive);
  response_->body() = std::move(body);
  if (content_type == std::string_view("application/json")) response_->body() += '\n';
  response_->prepare_payload();
  // The answer to HEAD has the GET's headers, Content-Length included, and no body (a body would
  // be read as the start of the next response on a keep-alive connection).
  if (request_.method() == http::verb::head) response_->body().clear();
  stream_.expires_after(state_.request_timeout());
  http::async_write(stream_, *response_,
                    net::bind_executor(strand_, beast::bind_front_handler(&Session::on_response_written,
                                                                          shared_from_this(), alive)));
}

void Session::respond_error(const ApiError& error, std::vector<std::pair<std::string, std::string>> headers) {
  // A full queue clears within moments; clients (the openai SDKs among them) wait this long.
  if (error.status == 429 && std::none_of(headers.begin(), headers.end(), [](const auto& h) {
        return beast::iequals(h.first, "Retry-After");
      }))
    headers.emplace_back("Retry-After", "1");
  respond(http::status(error.status), error_body(error), "application/json", std::move(headers));
}

void Session::on_response_written(bool alive, beast::error_code ec, size_t) {
  response_.reset();
  if (ec) return close();
  if (!alive) return linger_close();
  next_request();
}

// Closing with unread bytes in the receive buffer (an oversized body we refused) makes the
// kernel send a reset, which can destroy the response before the client reads it. So: send
// FIN, read and discard what the client still sends (up to 1 s, 1 MiB), then close.
void Session::linger_close() {
  if (phase_ == Phase::Closed) return;
  if (watching_) return close();
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(std::chrono::seconds(1));
  auto drained = std::make_shared<size_t>(0);
  auto scratch = std::make_shared<std::array<char, 16384>>();
  auto step = std::make_shared<std::function<void(beast::error_code, size_t)>>();
  *step = [self = shared_from_this(), drained, scratch, weak_step = std::weak_ptr(step)](beast::error_code ec, size_t n) {
    *drained += n;
    auto next = weak_step.lock();
    if (ec || *drained > (1u << 20) || !next || self->phase_ == Phase::Closed) return self->close();
    self->stream_.async_read_some(net::buffer(*scratch), net::bind_executor(self->strand_, [next](beast::error_code e, size_t k) {
      (*next)(e, k);
    }));
  };
  (*step)({}, 0);
}

void Session::next_request() {
  gen_.reset();
  keepalive_timer_.cancel();
  if (!keep_alive()) return close();
  request_ = {};
  if (watching_) {
    // The watch read must end before the next request is read from the same socket.
    resume_after_watch_ = true;
    beast::error_code ignored;
    stream_.socket().cancel(ignored);
    return;
  }
  read_header();
}

// --- streaming --------------------------------------------------------------------------------

void Session::stream_begin() {
  stream_header_ = std::make_unique<http::response<http::empty_body>>(http::status::ok, request_.version());
  stream_header_->set(http::field::server, "velocity");
  stream_header_->set(http::field::content_type, "text/event-stream");
  if (!cors_origin_.empty()) {
    stream_header_->set(http::field::access_control_allow_origin, cors_origin_);
    stream_header_->set(http::field::vary, "Origin");
  }
  stream_header_->set(http::field::cache_control, "no-cache");
  stream_header_->set("X-Accel-Buffering", "no");
  // HTTP/1.0 has no chunked encoding: the body then ends when the connection closes.
  raw_stream_ = request_.version() < 11;
  if (raw_stream_) close_after_ = true;
  stream_header_->keep_alive(keep_alive());
  stream_header_->chunked(!raw_stream_);
  stream_serializer_ = std::make_unique<http::response_serializer<http::empty_body>>(*stream_header_);
  state_.metrics.count_response(200);
  writing_ = true;
  stream_.expires_after(state_.request_timeout());
  http::async_write_header(stream_, *stream_serializer_,
                           net::bind_executor(strand_, beast::bind_front_handler(&Session::on_stream_written,
                                                                                 shared_from_this())));
  last_write_ = Clock::now();
  arm_keepalive();
}

void Session::stream_send(std::string_view data) {
  out_pending_ += data;
  if (!writing_) stream_flush();
}

void Session::stream_finish() {
  stream_finishing_ = true;
  if (!writing_) stream_flush();
}

void Session::stream_flush() {
  if (phase_ == Phase::Closed) return;
  if (!out_pending_.empty()) {
    writing_ = true;
    out_writing_ = std::move(out_pending_);
    out_pending_.clear();
    stream_.expires_after(state_.request_timeout());
    auto done = net::bind_executor(strand_, beast::bind_front_handler(&Session::on_stream_written, shared_from_this()));
    if (raw_stream_) net::async_write(stream_, net::buffer(out_writing_), std::move(done));
    else net::async_write(stream_, http::make_chunk(net::buffer(out_writing_)), std::move(done));
    last_write_ = Clock::now();
    return;
  }
  if (stream_finishing_ && raw_stream_) {
    stream_finishing_ = false;
    return linger_close();
  }
  if (stream_finishing_) {
    writing_ = true;
    stream_finishing_ = false;
    stream_.expires_after(state_.request_timeout());
    bool alive = keep_alive();
    net::async_write(stream_, http::make_chunk_last(),
                     net::bind_executor(strand_, [self = shared_from_this(), alive](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       self->stream_serializer_.reset();
                       self->stream_header_.reset();
                       if (ec) return self->close();
                       if (!alive) return self->linger_close();
                       self->next_request();
                     }));
  }
}

void Session::on_stream_written(beast::error_code ec, size_t) {
  writing_ = false;
  if (phase_ == Phase::Closed) return;
  if (ec) return client_gone();
  out_writing_.clear();
  stream_flush();
}

void Session::arm_keepalive() {
  keepalive_timer_.expires_after(state_.keepalive_interval());
  keepalive_timer_.async_wait(net::bind_executor(strand_, [self = shared_from_this()](beast::error_code ec) {
    if (ec || self->phase_ == Session::Phase::Closed || !self->gen_ || self->gen_->done) return;
    if (Clock::now() - self->last_write_ >= self->state_.keepalive_interval() - std::chrono::milliseconds(5))
      self->stream_send(kSseKeepAlive);
    self->arm_keepalive();
  }));
}

void Session::watch_disconnect() {
  if (watching_ || phase_ == Phase::Closed) return;
  watching_ = true;
  // The raw socket, not stream_: the watch has no timeout and must not disturb the write timer.
  stream_.socket().async_read_some(
      buffer_.prepare(4096),
      net::bind_executor(strand_, beast::bind_front_handler(&Session::on_watch, shared_from_this())));
}

void Session::on_watch(beast::error_code ec, size_t n) {
  watching_ = false;
  if (phase_ == Phase::Closed) return;
  if (!ec) buffer_.commit(n);
  if (resume_after_watch_) {
    resume_after_watch_ = false;
    return read_header();
  }
  bool running = gen_ && !gen_->done;
  if (ec) {
    if (running) client_gone();
    return;
  }
  // A pipelined request: keep its bytes; stop watching when they pile up.
  if (running && buffer_.size() < 64 * 1024) watch_disconnect();
}

void Session::client_gone() {
  if (gen_ && !gen_->done && !gen_->client_gone) {
    gen_->client_gone = true;
    if (gen_->handle) gen_->handle->cancel();
  }
  close();
}

void Session::close() {
  if (phase_ == Phase::Closed) return;
  phase_ = Phase::Closed;
  keepalive_timer_.cancel();
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
  // gen_self_ stays until on_done: the job still holds callbacks into this session.
  if (!gen_ || gen_->done) gen_self_.reset();
}

// --- shutdown ---------------------------------------------------------------------------------

void Session::on_shutdown() {
  close_after_ = true;
  // A prompt still being prepared (template, tokeniser) is abandoned at once: it has produced
  // nothing the client could want, and a hostile template must not hold up the shutdown.
  if (gen_ && !gen_->accepted && !gen_->done && gen_->handle) gen_->handle->cancel();
  if (phase_ == Phase::ReadingHeader) close();
}

void Session::cancel_job() {
  if (gen_ && !gen_->done && gen_->handle) gen_->handle->cancel();
  if (phase_ != Phase::Handling) close();
}

void Session::force_close() {
  if (gen_ && !gen_->done) {
    gen_->client_gone = true;
    if (gen_->handle) gen_->handle->cancel();
  }
  close();
}

}  // namespace velocity::server
