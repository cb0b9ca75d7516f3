#include "tca_attention/tca_attention_plugin.h"

#include <algorithm>
#include <limits>

namespace asl_edge {
namespace trt {

using nvinfer1::DataType;

namespace {

bool fitsInt32(int64_t v) { return v >= 0 && v <= std::numeric_limits<int32_t>::max(); }

}  // namespace

std::string TcaAttentionConfig::problem() const {
  const kernels::TcaShape shape{1, num_heads, 1, num_heads, window, theta, channel_scale};
  char const* kernelProblem = kernels::tca_attention_check(shape);
  return kernelProblem != nullptr ? kernelProblem : "";
}

// =============================================================================================
int32_t TcaAttentionPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                               int32_t nbInputs) const noexcept {
  if (!expectIo(outputTypes != nullptr && inputTypes != nullptr, nbInputs, nbOutputs, "getOutputDataTypes")) return -1;
  outputTypes[0] = inputTypes[0];
  return 0;
}

int32_t TcaAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                            nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/,
                                            nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                            nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept {
  if (!expectIo(inputs != nullptr && outputs != nullptr, nbInputs, nbOutputs, "getOutputShapes")) return -1;
  for (int32_t i = 0; i < 3; ++i) {
    if (inputs[i].nbDims != 3) {
      error("getOutputShapes: q, k and v must have rank 3 (batch, channels, length)");
      return -1;
    }
  }
  if (inputs[3].nbDims != 2) {
    error("getOutputShapes: mask must have rank 2 (batch, length)");
    return -1;
  }
  nvinfer1::IDimensionExpr const* channels = inputs[0].d[1];
  if (channels != nullptr && channels->isConstant()) {
    const int64_t c = channels->getConstantValue();
    if (c <= 0 || c % config().num_heads != 0) {
      error("getOutputShapes: channels (" + std::to_string(c) + ") must be a positive multiple of num_heads (" +
            std::to_string(config().num_heads) + ")");
      return -1;
    }
  }
  outputs[0].nbDims = 3;
  for (int32_t i = 0; i < 3; ++i) outputs[0].d[i] = inputs[0].d[i];
  return 0;
}

bool TcaAttentionPlugin::supportsFormat(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut) const {
  nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
  switch (pos) {
    case 0: return isFloatingLinear(desc);  // q: FP32 or FP16
    case 3: return isLinear(desc, DataType::kBOOL);  // mask
    default: return isLinear(desc, inOut[0].desc.type);  // k, v, f: the type of q
  }
}

bool TcaAttentionPlugin::checkDescs(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs, char const* where) const {
  if (!expectIo(in != nullptr && out != nullptr, nbInputs, nbOutputs, where)) return false;
  nvinfer1::Dims const& q = in[0].dims;
  for (int32_t i = 0; i < 3; ++i) {
    if (in[i].dims.nbDims != 3) {
      error(std::string(where) + ": q, k and v must have rank 3, got " + dimsToString(in[i].dims));
      return false;
    }
    for (int32_t j = 0; j < 3; ++j) {
      if (!extentsAgree(q.d[j], in[i].dims.d[j])) {
        error(std::string(where) + ": q, k and v must have the same shape, got " + dimsToString(q) + " and " +
              dimsToString(in[i].dims));
        return false;
      }
    }
    if (!isFloatingLinear(in[i]) || in[i].type != in[0].type) {
      error(std::string(where) + ": q, k and v must all be linear FP32 or all linear FP16");
      return false;
    }
  }
  nvinfer1::Dims const& mask = in[3].dims;
  if (mask.nbDims != 2 || !extentsAgree(mask.d[0], q.d[0]) || !extentsAgree(mask.d[1], q.d[2])) {
    error(std::string(where) + ": mask must be (batch, length) of q " + dimsToString(q) + ", got " +
          dimsToString(mask));
    return false;
  }
  if (!isLinear(in[3], DataType::kBOOL)) {
    error(std::string(where) + ": mask must be linear BOOL, got " + dataTypeName(in[3].type));
    return false;
  }
  if (out[0].dims.nbDims != 3 || !isLinear(out[0], in[0].type)) {
    error(std::string(where) + ": the output must be rank 3 and of the type of q");
    return false;
  }
  if (q.d[1] >= 0) {
    kernels::TcaShape shape = shapeOf(q);
    shape.batch = 1;
    shape.length = 1;
    if (char const* problem = kernels::tca_attention_check(shape)) {
      error(std::string(where) + ": " + problem + " (channels " + std::to_string(q.d[1]) + ")");
      return false;
    }
  }
  for (int32_t j = 0; j < 3; ++j) {
    if (q.d[j] >= 0 && !fitsInt32(q.d[j])) {
      error(std::string(where) + ": dimensions beyond int32 are not supported, got " + dimsToString(q));
      return false;
    }
  }
  return true;
}

kernels::TcaShape TcaAttentionPlugin::shapeOf(nvinfer1::Dims const& q) const {
  kernels::TcaShape shape{};
  shape.batch = static_cast<int32_t>(std::max<int64_t>(q.d[0], 0));
  shape.channels = static_cast<int32_t>(std::max<int64_t>(q.d[1], 0));
  shape.length = static_cast<int32_t>(std::max<int64_t>(q.d[2], 0));
  shape.num_heads = config().num_heads;
  shape.window = config().window;
  shape.theta = config().theta;
  shape.channel_scale = config().channel_scale;
  return shape;
}

size_t TcaAttentionPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                            nvinfer1::DynamicPluginTensorDesc const* /*outputs*/,
                                            int32_t /*nbOutputs*/) const noexcept {
  if (inputs == nullptr || nbInputs != kNbInputs || inputs[0].max.nbDims != 3) return 0;
  // The kernel's workspace for the profile's largest shape; min and opt are included in case a
  // kernel's need is not monotone in the shape.
  size_t bytes = 0;
  for (nvinfer1::Dims const* dims : {&inputs[0].min, &inputs[0].opt, &inputs[0].max}) {
    if (dims->nbDims != 3) continue;
    bytes = std::max(bytes, kernels::tca_attention_cuda_workspace(shapeOf(*dims)));
  }
  return bytes;
}

int32_t TcaAttentionPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                          nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  return guarded("onShapeChange", [&] {
    if (!checkDescs(in, nbInputs, out, nbOutputs, "onShapeChange")) return -1;
    for (int32_t j = 0; j < 3; ++j) {
      if (in[0].dims.d[j] < 0) {
        error("onShapeChange: unresolved dimension in " + dimsToString(in[0].dims));
        return -1;
      }
    }
    return 0;
  });
}

int32_t TcaAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                                    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs,
                                    void* const* outputs, void* workspace, cudaStream_t stream) noexcept {
  return guarded("enqueue", [&] {
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
      error("enqueue: null descriptions or buffers");
      return -1;
    }
    const kernels::TcaShape shape = shapeOf(inputDesc[0].dims);
    if (char const* problem = kernels::tca_attention_check(shape)) {
      error(std::string("enqueue: ") + problem);
      return -1;
    }
    if (shape.batch == 0 || shape.length == 0) return 0;
    const kernels::DataType dtype =
        inputDesc[0].type == DataType::kHALF ? kernels::DataType::kFloat16 : kernels::DataType::kFloat32;
    const kernels::Status status =
        kernels::tca_attention_cuda(shape, dtype, inputs[0], inputs[1], inputs[2], static_cast<uint8_t const*>(inputs[3]),
                                    outputs[0], workspace, static_cast<void*>(stream));
    if (status != kernels::Status::kSuccess) {
      error(std::string("enqueue: tca_attention_cuda failed: ") + kernels::status_message(status));
      return -1;
    }
    return 0;
  });
}

}  // namespace trt
}  // namespace asl_edge
