// TensorRT plugin AslNms1d (namespace asl_edge, version 1): 1-D temporal NMS (DESIGN §3, §4)
// as an IPluginV3 over the shared kernel csrc/kernels/nms1d.h. See README.md in this folder.
#pragma once

#include <string>

#include "common/plugin_base.h"
#include "nms1d.h"

namespace asl_edge {
namespace trt {

struct Nms1dConfig {
  kernels::NmsMethod method = kernels::NmsMethod::kSoft;
  float iou_threshold = 0.1f;
  float sigma = 0.5f;
  float min_score = 0.001f;
  int32_t max_out = 0;
  int32_t multiclass = 1;
  float voting_threshold = 0.0f;
  int32_t num_classes = 0;

  kernels::NmsParams params(int32_t numCandidates) const;
  // Why the kernel would reject these values, or "".
  std::string problem() const;

  // The plugin fields, in serialisation order (see plugin_common.h).
  template <typename Visit>
  void forEachField(Visit&& visit) {
    visit("method", kRequired, enumField(method, {"soft", "hard"}));
    visit("iou_threshold", kOptional, iou_threshold);
    visit("sigma", kOptional, sigma);
    visit("min_score", kOptional, min_score);
    visit("max_out", kRequired, max_out);
    visit("multiclass", kOptional, multiclass);
    visit("voting_threshold", kOptional, voting_threshold);
    visit("num_classes", kRequired, num_classes);
  }
};

// Where the pieces of the plugin's workspace lie (byte offsets, each 256-byte aligned): the
// kernel's own workspace, then, for FP16 I/O only, the FP32 copies of the inputs and outputs.
struct Nms1dWorkspaceLayout {
  size_t kernel = 0;
  size_t segments = 0;
  size_t scores = 0;
  size_t outSegments = 0;
  size_t outScores = 0;
  size_t total = 0;
  static Nms1dWorkspaceLayout make(kernels::NmsParams const& params, bool fp16);
};

class Nms1dPlugin final : public PluginBase<Nms1dPlugin, Nms1dConfig> {
 public:
  static constexpr char const* kName = "AslNms1d";
  static constexpr char const* kIo = "3 inputs (segments, scores, labels) and 4 outputs";
  static constexpr int32_t kNbInputs = 3;   // segments, scores, labels
  static constexpr int32_t kNbOutputs = 4;  // segments, scores, labels, count

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
  bool checkDescs(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                  int32_t nbOutputs, char const* where) const;
};

using Nms1dCreator = PluginCreator<Nms1dPlugin>;

}  // namespace trt
}  // namespace asl_edge
