// ApiError — an error the server answers with an HTTP status and OpenAI's error object:
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "top_p", "code": null}}
// Request validation, routing, auth and ModelService::submit() throw it; the HTTP layer turns it
// into the response. `param` and `code` are JSON null when empty.
#pragma once

#include <stdexcept>
#include <string>

namespace velocity::server {

struct ApiError : std::runtime_error {
  int status = 400;    // HTTP status: 400, 401, 404, 405, 413, 429, 500, 503
  std::string type;    // OpenAI error type, e.g. "invalid_request_error"
  std::string param;   // the request field at fault ("" = null)
  std::string code;    // machine-readable code ("" = null)

  ApiError(int status_, std::string type_, std::string message, std::string param_ = {}, std::string code_ = {})
      : std::runtime_error(std::move(message)),
        status(status_), type(std::move(type_)), param(std::move(param_)), code(std::move(code_)) {}

  // The common cases.
  static ApiError bad_request(std::string message, std::string param = {}, std::string code = {}) {
    return ApiError(400, "invalid_request_error", std::move(message), std::move(param), std::move(code));
  }
  static ApiError queue_full(const std::string& model) {
    return ApiError(429, "rate_limit_error", "model '" + model + "' has too many queued requests; retry later",
                    {}, "queue_full");
  }
  static ApiError unavailable(std::string message, std::string code = "model_not_ready") {
    return ApiError(503, "unavailable_error", std::move(message), {}, std::move(code));
  }
  static ApiError internal(std::string message) {
    return ApiError(500, "server_error", std::move(message), {}, "internal_error");
  }
};

// {"error": {"message", "type", "param", "code"}} serialised, without a trailing newline.
std::string error_body(const ApiError& error);

}  // namespace velocity::server
