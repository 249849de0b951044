#include "server/serve_cli.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fmt/format.h>
#include <ostream>
#include <thread>

#include "core/error.h"
#include "runtime/demo_model.h"
#include "server/engine_service.h"
#include "server/http_server.h"
#include "server/nvml.h"

namespace velocity::server {

namespace {

// Blocks SIGINT/SIGTERM in every thread (call before starting any) and waits for one.
sigset_t block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

}  // namespace

int serve(ServeFlags flags, const std::string& argv0, int n_threads, std::ostream& log) {
  if (flags.config_file.empty() && flags.model_path.empty()) {
    flags.model_path = runtime::find_demo_model(argv0);
    if (flags.model_path.empty())
      fail("no model given (--model or --config) and the bundled demo model models/demo/demo.gguf was not found");
    if (flags.model_name.empty()) flags.model_name = "demo";
    log << "velocity: no model given; serving the bundled demo model " << flags.model_path << "\n";
  }
  ServerConfig config = config_from_flags(flags);
  const sigset_t signals = block_signals();

  std::vector<std::shared_ptr<ModelService>> services;
  std::vector<std::shared_ptr<EngineService>> engines;
  const int64_t default_queue = 64;
  for (const ModelEntry& m : config.models) {
    auto e = std::make_shared<EngineService>(m, m.max_queue >= 0 ? m.max_queue : default_queue, n_threads);
    engines.push_back(e);
    services.push_back(e);
  }
  // What can be checked before the weights are read (the GGUF, its architecture, the device, the
  // cache types, the memory needed) is, before the port opens: a bad model never gets a
  // "listening" line. The weights then load in the background (/health 503 until ready).
  for (auto& e : engines) {
    std::string warning, message;
    if (!e->wait_checked(&warning)) {
      e->state(&message);
      log << "velocity: error: " << message << "\n";
      return 1;
    }
    if (!warning.empty()) log << "velocity: warning: " << warning << "\n";
  }
  HttpServer http(config.server, services);
  // GPU gauges on /metrics when the NVIDIA driver is there (loaded once; absent: nothing).
  if (auto nvml = std::make_shared<const Nvml>(); nvml->enabled()) {
    log << fmt::format("velocity: GPU metrics from NVML ({} GPU{})\n", nvml->device_count(),
                       nvml->device_count() == 1 ? "" : "s");
    http.metrics().add_collector(gpu_metrics_collector(nvml));
  }
  http.start();
  const std::string host = config.server.host;
  log << fmt::format("velocity: listening on http://{}:{} ({} model{})\n", host, http.port(), services.size(),
                     services.size() == 1 ? "" : "s");
  // Models load in the background; /health says 503 until they are ready.
  for (size_t i = 0; i < engines.size(); ++i) {
    auto& e = engines[i];
    std::string message;
    if (!e->wait_loaded()) {
      e->state(&message);
      log << "velocity: error: " << message << "\n";
      http.shutdown(std::chrono::milliseconds(0));
      return 1;
    }
    log << fmt::format("velocity: model '{}' ready ({}, {}, context {} x {} slots, {})\n", e->name(),
                       config.models[i].path, e->device_name(), e->n_ctx(), e->stats().n_slots, e->memory_summary());
  }
  const std::string key_header =
      config.server.api_keys.empty() ? "" : " -H 'Authorization: Bearer $VELOCITY_API_KEY'";
  const std::string shown_host = host == "0.0.0.0" ? "127.0.0.1" : host;
  log << fmt::format(
      "\nTry it:\n  curl http://{}:{}/v1/chat/completions -H 'Content-Type: application/json'{} \\\n"
      "    -d '{{\"model\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Who was Moses?\"}}], "
      "\"max_tokens\": 64}}'\n"
      "or open http://{}:{}/ in a browser (the built-in chat page).\n\n",
      shown_host, http.port(), key_header, config.models.front().name, shown_host, http.port());
  log.flush();

  // The first SIGINT/SIGTERM starts the graceful drain (or the server stops on its own); a second
  // one ends the process at once, as an impatient operator's second Ctrl-C means.
  std::atomic<bool> stopped{false};
  std::thread drainer;
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (stopped) return;
    log << fmt::format("velocity: signal {}; draining (grace {} s; a second signal exits at once)\n", sig,
                       config.server.shutdown_grace_s);
    log.flush();
    drainer = std::thread([&] { http.shutdown(); });
    sigwait(&signals, &sig);
    if (stopped) return;
    log << "velocity: second signal; exiting now\n";
    log.flush();
    ::_exit(130);
  });
  http.wait();
  // Wake the waiter (from its first or second wait) now that the server has stopped.
  stopped = true;
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  if (drainer.joinable()) drainer.join();
  for (auto& e : engines) e->drain(0);
  log << "velocity: stopped\n";
  return 0;
}

}  // namespace velocity::server
