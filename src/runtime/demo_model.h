// The bundled demo model (models/demo/demo.gguf): what `velocity serve` and `velocity run` use
// when no model is given.
#pragma once

#include <string>

namespace velocity::runtime {

// $VELOCITY_DEMO_MODEL, then models/demo/demo.gguf in the binary's directory or up to four
// levels above it (build/<preset>/app/velocity sits three below the source tree), then in the
// current directory. "" when none exists.
std::string find_demo_model(const std::string& argv0);

}  // namespace velocity::runtime
