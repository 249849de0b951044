// make_cuda_backend for a build without CUDA (VELOCITY_CUDA=OFF or no nvcc): says so.
#if !defined(VELOCITY_HAVE_CUDA)
#include "core/error.h"
#include "engine/backend.h"

namespace velocity::engine {

std::unique_ptr<Backend> make_cuda_backend(int index) {
  fail("device cuda:{}: this velocity was built without CUDA (rebuild with nvcc installed, -DVELOCITY_CUDA=ON)", index);
}

int cuda_device_count() { return 0; }
bool cuda_device_supported(int) { return false; }
std::optional<double> measure_copy_bandwidth(Device, uint64_t) { return std::nullopt; }
std::optional<double> tensor_peak_flops(Device) { return std::nullopt; }

}  // namespace velocity::engine
#endif
