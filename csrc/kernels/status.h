// Types shared by the kernel interfaces (no framework types).
#pragma once

#include <cstdint>

namespace asl_edge {
namespace kernels {

enum class DataType : int32_t { kFloat32 = 0, kFloat16 = 1 };

enum class Status : int32_t {
  kSuccess = 0,
  kInvalidArgument = 1,  // shape or attribute rejected by the *_check function
  kLaunchFailed = 2,     // a CUDA launch reported an error
  kNotCompiled = 3,      // the library was built without CUDA
};

const char* status_message(Status status);

// What caused the last kLaunchFailed on this thread (a CUDA error string or the limit that was
// hit), "" when nothing was recorded. The string is static.
const char* last_error_detail();
void set_last_error_detail(const char* detail);

}  // namespace kernels
}  // namespace asl_edge
