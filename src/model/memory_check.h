// The check before a model loads: for every device with tracked memory (a GPU), the weights the
// placement puts there, its KV cache and its buffers must fit in what is free now, or loading
// stops before anything is uploaded with what was needed, what was free, and settings that fit.
#pragma once

#include <string>
#include <vector>

#include "engine/backend.h"
#include "gguf/file.h"
#include "model/placement.h"

namespace velocity::model {

struct DeviceNeed {
  engine::Backend* backend = nullptr;
  engine::StepShape shape;        // what reserve() will get
  std::vector<std::string> extra;  // tensors uploaded a second time here (a tied head on another device)
};

// Throws velocity::Error when a device lacks room (see the header comment).
void check_device_memory(const gguf::File& file, const Placement& placement, const std::vector<DeviceNeed>& needs);

}  // namespace velocity::model
