#include "server/service.h"

#include <nlohmann/json.hpp>

namespace velocity::server {

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "error";
}

std::string_view state_name(ModelService::State state) {
  switch (state) {
    case ModelService::State::Loading: return "loading";
    case ModelService::State::Ready: return "ready";
    case ModelService::State::Draining: return "draining";
    case ModelService::State::Failed: return "failed";
  }
  return "failed";
}

std::string error_body(const ApiError& error) {
  nlohmann::json e = {{"message", error.what()},
                      {"type", error.type},
                      {"param", error.param.empty() ? nlohmann::json() : nlohmann::json(error.param)},
                      {"code", error.code.empty() ? nlohmann::json() : nlohmann::json(error.code)}};
  // Messages may quote client bytes; replace invalid UTF-8 rather than throw while reporting.
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace velocity::server
