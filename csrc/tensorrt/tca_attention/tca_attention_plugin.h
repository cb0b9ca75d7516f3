// TensorRT plugin AslTcaAttention (namespace asl_edge, version 1): the fused temporal-channel
// attention of DESIGN §2.2 / §4 as an IPluginV3 (core, build and runtime capabilities) over the
// shared kernel csrc/kernels/tca_attention.h. See README.md in this folder for the contract.
#pragma once

#include <string>

#include "common/plugin_base.h"
#include "tca_attention.h"

namespace asl_edge {
namespace trt {

struct TcaAttentionConfig {
  int32_t num_heads = 0;
  int32_t window = 0;
  float theta = 0.0f;
  kernels::ChannelScale channel_scale = kernels::ChannelScale::kTime;

  // Why the kernel would reject these values, or "".
  std::string problem() const;

  // The plugin fields, in serialisation order (see plugin_common.h).
  template <typename Visit>
  void forEachField(Visit&& visit) {
    visit("num_heads", kRequired, num_heads);
    visit("window", kRequired, window);
    visit("theta", kRequired, theta);
    visit("channel_scale", kOptional, enumField(channel_scale, {"time", "head"}));
  }
};

class TcaAttentionPlugin final : public PluginBase<TcaAttentionPlugin, TcaAttentionConfig> {
 public:
  static constexpr char const* kName = "AslTcaAttention";
  static constexpr char const* kIo = "4 inputs (q, k, v, mask) and 1 output";
  static constexpr int32_t kNbInputs = 4;   // q, k, v, mask
  static constexpr int32_t kNbOutputs = 1;  // f

  using PluginBase::PluginBase;

  // IPluginV3OneBuild
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

  // IPluginV3OneRuntime
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;

 private:
  friend PluginBase;
  bool supportsFormat(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut) const;
  // Checks the I/O descriptions (dims may hold -1 at build time); logs and returns false on error.
  bool checkDescs(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                  int32_t nbOutputs, char const* where) const;
  kernels::TcaShape shapeOf(nvinfer1::Dims const& q) const;
};

using TcaAttentionCreator = PluginCreator<TcaAttentionPlugin>;

}  // namespace trt
}  // namespace asl_edge
