// libFuzzer target: an HTTP request body, parsed and validated as each generation endpoint
// (/v1/chat/completions, /v1/completions, /infill), then turned into a job and, on error, into the
// error body the server would send. ApiError (a 400) is an accepted outcome; crashes, hangs,
// other exception types and sanitizer reports are findings.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/openai.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace velocity::server;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  static const SamplingDefaults defaults;
  for (Endpoint endpoint : {Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Infill}) {
    try {
      OpenAIRequest request = parse_request(endpoint, body);
      GenerationJob job = make_job(request, defaults, 42);
      // validated invariants: max_tokens 0 only to score an echoed prompt; logprobs in [-1, 20]
      if ((job.max_tokens == 0 && !job.echo) || job.stop.size() > kMaxStops || job.logprobs < -1 || job.logprobs > 20)
        __builtin_trap();
    } catch (const ApiError& e) {
      if (e.status != 400 || error_body(e).empty()) __builtin_trap();
    }
  }
  return 0;
}
