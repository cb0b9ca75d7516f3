#include "nms1d/nms1d_plugin.h"

#include <algorithm>
#include <limits>

namespace asl_edge {
namespace trt {

using nvinfer1::DataType;

kernels::NmsParams Nms1dConfig::params(int32_t numCandidates) const {
  kernels::NmsParams p{};
  p.num_candidates = numCandidates;
  p.num_classes = num_classes;
  p.method = method;
  p.iou_threshold = iou_threshold;
  p.sigma = sigma;
  p.min_score = min_score;
  p.max_out = max_out;
  p.multiclass = multiclass != 0;
  p.voting_threshold = voting_threshold;
  return p;
}

std::string Nms1dConfig::problem() const {
  if (multiclass != 0 && multiclass != 1) return "multiclass must be 0 or 1, got " + std::to_string(multiclass);
  char const* kernelProblem = kernels::nms1d_check(params(0));
  return kernelProblem != nullptr ? kernelProblem : "";
}

Nms1dWorkspaceLayout Nms1dWorkspaceLayout::make(kernels::NmsParams const& params, bool fp16) {
  Nms1dWorkspaceLayout l;
  size_t offset = alignUp(kernels::nms1d_cuda_workspace(params));
  if (fp16) {
    const size_t n = static_cast<size_t>(std::max(params.num_candidates, 0));
    const size_t m = static_cast<size_t>(std::max(params.max_out, 0));
    l.segments = offset;
    offset += alignUp(2 * n * sizeof(float));
    l.scores = offset;
    offset += alignUp(n * sizeof(float));
    l.outSegments = offset;
    offset += alignUp(2 * m * sizeof(float));
    l.outScores = offset;
    offset += alignUp(m * sizeof(float));
  }
  l.total = offset;
  return l;
}

// =============================================================================================
int32_t Nms1dPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                        int32_t nbInputs) const noexcept {
  if (!expectIo(outputTypes != nullptr && inputTypes != nullptr, nbInputs, nbOutputs, "getOutputDataTypes")) return -1;
  outputTypes[0] = inputTypes[0];
  outputTypes[1] = inputTypes[0];
  outputTypes[2] = DataType::kINT32;
  outputTypes[3] = DataType::kINT32;
  return 0;
}

int32_t Nms1dPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                     nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/,
                                     nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                     nvinfer1::IExprBuilder& exprBuilder) noexcept {
  if (!expectIo(inputs != nullptr && outputs != nullptr, nbInputs, nbOutputs, "getOutputShapes")) return -1;
  if (inputs[0].nbDims != 2 || inputs[1].nbDims != 1 || inputs[2].nbDims != 1) {
    error("getOutputShapes: expected segments (N, 2), scores (N) and labels (N)");
    return -1;
  }
  nvinfer1::IDimensionExpr const* width = inputs[0].d[1];
  if (width != nullptr && width->isConstant() && width->getConstantValue() != 2) {
    error("getOutputShapes: segments must be (N, 2), got a last dimension of " +
          std::to_string(width->getConstantValue()));
    return -1;
  }
  nvinfer1::IDimensionExpr const* maxOut = exprBuilder.constant(config().max_out);
  nvinfer1::IDimensionExpr const* two = exprBuilder.constant(2);
  nvinfer1::IDimensionExpr const* one = exprBuilder.constant(1);
  if (maxOut == nullptr || two == nullptr || one == nullptr) {
    error("getOutputShapes: the expression builder returned null");
    return -1;
  }
  outputs[0].nbDims = 2;
  outputs[0].d[0] = maxOut;
  outputs[0].d[1] = two;
  outputs[1].nbDims = 1;
  outputs[1].d[0] = maxOut;
  outputs[2].nbDims = 1;
  outputs[2].d[0] = maxOut;
  outputs[3].nbDims = 1;
  outputs[3].d[0] = one;
  return 0;
}

bool Nms1dPlugin::supportsFormat(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut) const {
  nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
  switch (pos) {
    case 0: return isFloatingLinear(desc);  // segments: FP32 or FP16
    case 1:                                 // scores
    case 3:                                 // out segments
    case 4: return isLinear(desc, inOut[0].desc.type);  // out scores
    default: return isLinear(desc, DataType::kINT32);   // labels, out labels, count
  }
}

bool Nms1dPlugin::checkDescs(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                             nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs, char const* where) const {
  if (!expectIo(in != nullptr && out != nullptr, nbInputs, nbOutputs, where)) return false;
  nvinfer1::Dims const& seg = in[0].dims;
  if (seg.nbDims != 2 || !extentsAgree(seg.d[1], 2) || in[1].dims.nbDims != 1 || in[2].dims.nbDims != 1 ||
      !extentsAgree(seg.d[0], in[1].dims.d[0]) || !extentsAgree(seg.d[0], in[2].dims.d[0])) {
    error(std::string(where) + ": expected segments (N, 2), scores (N), labels (N), got " + dimsToString(seg) + ", " +
          dimsToString(in[1].dims) + ", " + dimsToString(in[2].dims));
    return false;
  }
  if (seg.d[0] > std::numeric_limits<int32_t>::max()) {
    error(std::string(where) + ": more than 2^31-1 candidates are not supported");
    return false;
  }
  if (!isFloatingLinear(in[0]) || !isLinear(in[1], in[0].type) || !isLinear(in[2], DataType::kINT32)) {
    error(std::string(where) + ": segments and scores must be linear FP32 or FP16 (the same), labels linear INT32");
    return false;
  }
  const int64_t m = config().max_out;
  if (out[0].dims.nbDims != 2 || !extentsAgree(out[0].dims.d[0], m) || !extentsAgree(out[0].dims.d[1], 2) ||
      out[1].dims.nbDims != 1 || !extentsAgree(out[1].dims.d[0], m) || out[2].dims.nbDims != 1 ||
      !extentsAgree(out[2].dims.d[0], m) || out[3].dims.nbDims != 1 || !extentsAgree(out[3].dims.d[0], 1)) {
    error(std::string(where) + ": outputs must be (max_out, 2), (max_out), (max_out), (1)");
    return false;
  }
  if (!isLinear(out[0], in[0].type) || !isLinear(out[1], in[0].type) || !isLinear(out[2], DataType::kINT32) ||
      !isLinear(out[3], DataType::kINT32)) {
    error(std::string(where) + ": output types must be the input type, the input type, INT32, INT32 (linear)");
    return false;
  }
  return true;
}

size_t Nms1dPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                     nvinfer1::DynamicPluginTensorDesc const* /*outputs*/,
                                     int32_t /*nbOutputs*/) const noexcept {
  if (inputs == nullptr || nbInputs != kNbInputs) return 0;
  const bool fp16 = inputs[0].desc.type == DataType::kHALF;
  size_t bytes = 0;
  for (nvinfer1::Dims const* dims : {&inputs[0].min, &inputs[0].opt, &inputs[0].max}) {
    if (dims->nbDims < 1) continue;
    const int64_t n = std::min<int64_t>(std::max<int64_t>(dims->d[0], 0), std::numeric_limits<int32_t>::max());
    bytes = std::max(bytes, Nms1dWorkspaceLayout::make(config().params(static_cast<int32_t>(n)), fp16).total);
  }
  return bytes;
}

int32_t Nms1dPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                   nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  return guarded("onShapeChange", [&] {
    if (!checkDescs(in, nbInputs, out, nbOutputs, "onShapeChange")) return -1;
    if (in[0].dims.d[0] < 0) {
      error("onShapeChange: unresolved number of candidates");
      return -1;
    }
    return 0;
  });
}

int32_t Nms1dPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                             void const* const* inputs, void* const* outputs, void* workspace,
                             cudaStream_t stream) noexcept {
  return guarded("enqueue", [&] {
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
      error("enqueue: null descriptions or buffers");
      return -1;
    }
    const int64_t n = inputDesc[0].dims.d[0];
    if (n < 0 || n > std::numeric_limits<int32_t>::max()) {
      error("enqueue: invalid number of candidates " + std::to_string(n));
      return -1;
    }
    const kernels::NmsParams params = config().params(static_cast<int32_t>(n));
    if (char const* problem = kernels::nms1d_check(params)) {
      error(std::string("enqueue: ") + problem);
      return -1;
    }
    const bool fp16 = inputDesc[0].type == DataType::kHALF;
    const Nms1dWorkspaceLayout layout = Nms1dWorkspaceLayout::make(params, fp16);
    char* ws = static_cast<char*>(workspace);
    if (layout.total > 0 && ws == nullptr) {
      error("enqueue: no workspace although " + std::to_string(layout.total) + " bytes are needed");
      return -1;
    }
    void* s = static_cast<void*>(stream);
    auto failed = [&](char const* what, kernels::Status status) {
      error(std::string("enqueue: ") + what + " failed: " + kernels::status_message(status));
      return -1;
    };

    float const* segments = static_cast<float const*>(inputs[0]);
    float const* scores = static_cast<float const*>(inputs[1]);
    float* outSegments = static_cast<float*>(outputs[0]);
    float* outScores = static_cast<float*>(outputs[1]);
    if (fp16) {
      float* segF = reinterpret_cast<float*>(ws + layout.segments);
      float* scoreF = reinterpret_cast<float*>(ws + layout.scores);
      if (n > 0) {
        kernels::Status st = kernels::half_to_float_cuda(inputs[0], segF, 2 * n, s);
        if (st != kernels::Status::kSuccess) return failed("half_to_float_cuda (segments)", st);
        st = kernels::half_to_float_cuda(inputs[1], scoreF, n, s);
        if (st != kernels::Status::kSuccess) return failed("half_to_float_cuda (scores)", st);
      }
      segments = segF;
      scores = scoreF;
      outSegments = reinterpret_cast<float*>(ws + layout.outSegments);
      outScores = reinterpret_cast<float*>(ws + layout.outScores);
    }
    kernels::Status st = kernels::nms1d_cuda(params, segments, scores, static_cast<int32_t const*>(inputs[2]),
                                             outSegments, outScores, static_cast<int32_t*>(outputs[2]),
                                             static_cast<int32_t*>(outputs[3]), ws + layout.kernel, s);
    if (st != kernels::Status::kSuccess) return failed("nms1d_cuda", st);
    if (fp16) {
      const int64_t m = params.max_out;
      st = kernels::float_to_half_cuda(outSegments, outputs[0], 2 * m, s);
      if (st != kernels::Status::kSuccess) return failed("float_to_half_cuda (segments)", st);
      st = kernels::float_to_half_cuda(outScores, outputs[1], m, s);
      if (st != kernels::Status::kSuccess) return failed("float_to_half_cuda (scores)", st);
    }
    return 0;
  });
}

}  // namespace trt
}  // namespace asl_edge
