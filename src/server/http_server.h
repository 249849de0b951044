// HttpServer — the OpenAI-compatible HTTP front of `velocity serve` (Boost.Beast over Asio).
//
//   std::vector<std::shared_ptr<ModelService>> models = ...;   // one per [[model]]
//   HttpServer server(config.server, models);
//   server.start();                        // binds; throws velocity::Error naming host:port
//   ...                                    // SIGTERM handler thread: server.shutdown();
//   server.wait();
//
// Routes: POST /v1/chat/completions, POST /v1/completions (JSON or SSE with "stream": true),
// GET /v1/models, GET /v1/models/{id}, GET /health (no key needed), GET /metrics (Prometheus).
// Errors are OpenAI error objects: 400 invalid request, 401 missing/wrong key, 404 unknown model
// or route, 405 wrong method, 413 body over max_body_bytes (from Content-Length before the body
// is read, and while reading a chunked body), 415 a generation POST that is not
// application/json, 429 queue full (with Retry-After), 503 not ready or shutting down, 500 an
// internal fault (logged on stderr). 403: without API keys, a Host header that does not name the
// server (DNS rebinding); with or without, an Origin that is neither same-origin nor in
// cors_origins (cross-site requests from browser pages). OPTIONS answers CORS preflights.
//
// Threads: `settings.threads` I/O threads run the io_context; each connection is a strand. Only
// parsing, validation, JSON building and socket I/O happen there; generation runs in the
// services. Timeouts: headers within header_timeout_s (also the idle keep-alive limit), the body
// within request_timeout_s, each write within request_timeout_s; a connection past one is
// closed. A client that disconnects mid-generation is noticed by a read kept pending on its
// socket, and its job is cancelled at once.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/config.h"
#include "server/metrics.h"
#include "server/service.h"

namespace velocity::server {

class HttpServer {
 public:
  // Model names must be unique (the config guarantees it); throws velocity::Error otherwise.
  HttpServer(ServerSettings settings, std::vector<std::shared_ptr<ModelService>> models);
  ~HttpServer();  // shutdown(0) when still running
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens, starts the I/O threads. Throws velocity::Error when the address cannot
  // be resolved or bound.
  void start();
  // The bound port (the real one when settings.port was 0). Valid after start().
  uint16_t port() const;

  // Graceful shutdown, blocking, idempotent, callable from any thread but an I/O thread:
  //   1. new requests on open connections get 503; idle connections close; new connections are
  //      still accepted and served one request each (Connection: close): /health says 503
  //      "draining", generation requests get 503 shutting_down;
  //   2. running requests may finish for `grace` (less if they are done sooner); then the
  //      acceptor closes;
  //   3. then their jobs are cancelled (clients see finish_reason "cancelled" or a 503) and,
  //      once their on_done came (at most a few seconds), the connections close;
  //   4. the I/O threads stop.
  void shutdown(std::chrono::milliseconds grace);
  void shutdown();  // grace = settings.shutdown_grace_s
  // Blocks until shutdown() has completed.
  void wait();

  Metrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace velocity::server
