// velocity serve: config (flags or TOML) -> one EngineService per model -> HttpServer, until
// SIGINT/SIGTERM, then a graceful drain; a second signal exits at once (status 130). With no
// model at all it serves the bundled demo model.
#pragma once

#include <iosfwd>
#include <string>

#include "server/config.h"

namespace velocity::server {

// Runs the server until a signal; returns the process exit code. Errors before the server is
// listening throw velocity::Error.
int serve(ServeFlags flags, const std::string& argv0, int n_threads, std::ostream& log);

}  // namespace velocity::server
