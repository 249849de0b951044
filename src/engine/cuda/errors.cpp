// The error paths of the .cu files (common.cuh), compiled by the host compiler.
#include <cuda_runtime.h>

#include <fmt/format.h>

#include "core/error.h"
#include "engine/backend.h"
#include "engine/cuda/common.cuh"

namespace velocity::engine::cuda {

namespace {
// Sticky errors leave the context unusable: every later call fails too.
bool is_sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorECCUncorrectable:
    case cudaErrorDevicesUnavailable:
    case cudaErrorUnknown:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorNoDevice:
    case cudaErrorDeviceUninitialized:
      return true;
    default:
      return false;
  }
}
}  // namespace

void throw_cuda_error(cudaError_t error, const char* what, const char* file, int line) {
  const std::string message = fmt::format("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(error),
                                          cudaGetErrorString(error), what, file, line);
  if (is_sticky(error)) throw DeviceFault(message);
  cudaGetLastError();  // a non-sticky error must not be reported again by the next check
  throw Error(message);
}

void throw_check_failed(const char* condition, const char* message, const char* file, int line) {
  throw InternalError(fmt::format("internal check failed at {}:{}: {}: {}", file, line, condition, message));
}

void throw_error(const char* message) { throw Error(message); }

}  // namespace velocity::engine::cuda
