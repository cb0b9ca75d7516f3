#include "status.h"

namespace asl_edge {
namespace kernels {

const char* status_message(Status status) {
  switch (status) {
    case Status::kSuccess:
      return "success";
    case Status::kInvalidArgument:
      return "invalid shape or attribute";
    case Status::kLaunchFailed:
      return "CUDA kernel launch failed";
    case Status::kNotCompiled:
      return "asl_edge was built without CUDA (rebuild with `asl-edge build-ext --cuda`)";
  }
  return "unknown status";
}

namespace {
thread_local const char* error_detail = "";
}  // namespace

const char* last_error_detail() { return error_detail; }

void set_last_error_detail(const char* detail) { error_detail = detail ? detail : ""; }

}  // namespace kernels
}  // namespace asl_edge
