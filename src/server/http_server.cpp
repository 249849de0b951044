#include "server/http_server.h"

#include <future>
#include <thread>

#include "core/error.h"
#include "server/http_session.h"

namespace velocity::server {

struct HttpServer::Impl {
  // Declared first so that it outlives the io_context (sessions destroyed with the io_context's
  // pending handlers unregister from it).
  ServerState state;
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  Strand acceptor_strand{net::make_strand(ioc)};
  tcp::acceptor acceptor{acceptor_strand};
  std::vector<std::thread> threads;
  uint16_t port = 0;

  std::mutex mutex;
  std::condition_variable cv;
  bool started = false, stopping = false, stopped = false;

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), net::bind_executor(acceptor_strand, [this](beast::error_code ec,
                                                                                             tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) {
        // E.g. out of file descriptors: back off a little instead of spinning.
        auto timer = std::make_shared<net::steady_timer>(acceptor_strand, std::chrono::milliseconds(50));
        timer->async_wait([this, timer](beast::error_code) { accept(); });
        return;
      }
      // During a shutdown's drain new connections are still served, one request each (Session).
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(socket), state)->start();
      accept();
    }));
  }

  // Sessions accepted before the one numbered `below` (all by default).
  std::vector<std::shared_ptr<Session>> live_sessions(uint64_t below = UINT64_MAX) {
    std::lock_guard lock(state.sessions_mutex);
    std::vector<std::shared_ptr<Session>> out;
    for (auto& [ptr, live] : state.sessions)
      if (live.id < below)
        if (auto s = live.session.lock()) out.push_back(std::move(s));
    return out;
  }

  template <class F>
  void post_to_sessions(F f, uint64_t below = UINT64_MAX) {
    for (auto& s : live_sessions(below)) net::post(s->strand(), [s, f] { f(*s); });
  }

  // Until no session accepted before the one numbered `below` is left, or the deadline.
  bool wait_sessions(Clock::time_point deadline, uint64_t below = UINT64_MAX) {
    std::unique_lock lock(state.sessions_mutex);
    return state.sessions_cv.wait_until(lock, deadline, [&] {
      for (auto& [ptr, live] : state.sessions)
        if (live.id < below) return false;
      return true;
    });
  }

  // Closes the acceptor on its strand and waits for that: no session starts after this returns.
  void close_acceptor() {
    std::promise<void> closed;
    net::post(acceptor_strand, [this, &closed] {
      beast::error_code ignored;
      acceptor.close(ignored);
      closed.set_value();
    });
    closed.get_future().wait();
  }
};

HttpServer::HttpServer(ServerSettings settings, std::vector<std::shared_ptr<ModelService>> models)
    : impl_(std::make_unique<Impl>()) {
  ServerState& s = impl_->state;
  s.settings = std::move(settings);
  s.models = std::move(models);
  for (const auto& m : s.models) {
    VELOCITY_CHECK(m != nullptr);
    if (!s.by_name.emplace(m->name(), m).second) fail("two served models are named '{}'", m->name());
    s.metrics.model(m->name());
  }
  s.started_unix = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
}

HttpServer::~HttpServer() {
  if (impl_->started) shutdown(std::chrono::milliseconds(0));
}

void HttpServer::start() {
  Impl& m = *impl_;
  VELOCITY_CHECK(!m.started, "HttpServer::start() called twice");
  const ServerSettings& s = m.state.settings;
  beast::error_code ec;
  tcp::resolver resolver(m.ioc);
  std::string host = s.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto results = resolver.resolve(host, std::to_string(s.port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) fail("cannot resolve the listen address '{}': {}", s.host, ec.message());
  tcp::endpoint endpoint = results.begin()->endpoint();
  m.acceptor.open(endpoint.protocol(), ec);
  if (!ec) m.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) m.acceptor.bind(endpoint, ec);
  if (!ec) m.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail("cannot listen on {}:{}: {}", s.host, s.port, ec.message());
  m.port = m.acceptor.local_endpoint().port();
  m.work.emplace(m.ioc.get_executor());
  m.accept();
  for (int32_t i = 0; i < s.threads; ++i) m.threads.emplace_back([&m] { m.ioc.run(); });
  std::lock_guard lock(m.mutex);
  m.started = true;
}

uint16_t HttpServer::port() const { return impl_->port; }

Metrics& HttpServer::metrics() { return impl_->state.metrics; }

void HttpServer::shutdown() {
  shutdown(std::chrono::milliseconds((int64_t)(impl_->state.settings.shutdown_grace_s * 1000)));
}

void HttpServer::shutdown(std::chrono::milliseconds grace) {
  Impl& m = *impl_;
  {
    std::unique_lock lock(m.mutex);
    if (!m.started) return;
    if (m.stopping) {  // another thread does it: wait for it
      m.cv.wait(lock, [&] { return m.stopped; });
      return;
    }
    m.stopping = true;
  }
  m.state.shutting_down = true;
  uint64_t first_new = 0;  // sessions from here on were accepted during the drain
  {
    std::lock_guard lock(m.state.sessions_mutex);
    first_new = m.state.next_session_id;
  }
  // 1-2: idle connections close now; running requests get the grace period. The acceptor stays
  // open meanwhile: a new connection is served one request (so /health can say 503).
  m.post_to_sessions([](Session& s) { s.on_shutdown(); }, first_new);
  const bool drained = m.wait_sessions(Clock::now() + grace, first_new);
  m.close_acceptor();
  // 3: cancel, and give the services a moment to report on_done (their contract: promptly).
  // Connections accepted during the drain run no job: they close now unless answering.
  m.post_to_sessions([](Session& s) { s.cancel_job(); });
  if (!m.wait_sessions(Clock::now() + std::chrono::seconds(drained ? 1 : 3))) {
    m.post_to_sessions([](Session& s) { s.force_close(); });
    m.wait_sessions(Clock::now() + std::chrono::seconds(1));
  }
  {
    std::unique_lock lock(m.state.jobs->mutex);
    m.state.jobs->cv.wait_for(lock, std::chrono::seconds(2), [&] { return m.state.jobs->n == 0; });
  }
  // 4: from here on no service callback reaches the io_context.
  {
    std::lock_guard lock(m.state.sessions_mutex);
    for (auto& weak : m.state.mailboxes)
      if (auto box = weak.lock()) box->close();
  }
  m.work.reset();
  m.ioc.stop();
  for (std::thread& t : m.threads) t.join();
  m.threads.clear();
  std::lock_guard lock(m.mutex);
  m.stopped = true;
  m.cv.notify_all();
}

void HttpServer::wait() {
  std::unique_lock lock(impl_->mutex);
  impl_->cv.wait(lock, [&] { return impl_->stopped || !impl_->started; });
}

}  // namespace velocity::server
