// Entry points of libasl_edge_trt_plugins.so, the one library that serves every way TensorRT
// loads plugins:
//  - static registration (REGISTER_TENSORRT_PLUGIN): loading the library with dlopen / ctypes /
//    trtexec --staticPlugins registers both creators in TensorRT's global plugin registry;
//  - IPluginRegistry::loadLibrary / trtexec --dynamicPlugins: TensorRT calls the exported
//    `setLoggerFinder(ILoggerFinder*)` and `getCreators(int32_t&)` (the V3-creator entry points,
//    returning IPluginCreatorInterface* const*).
// loadLibrary dlopens the library first, which runs the static registration; registering the same
// creators again would fail ("the call will fail ... if any of the plugins are already registered",
// NvInferRuntimeCommon.h), so getCreators returns only the creators whose static registration did
// not run. Configure with -DASL_TENSORRT_STATIC_REGISTRATION=OFF for a library that registers
// through getCreators alone.
#include "nms1d/nms1d_plugin.h"
#include "tca_attention/tca_attention_plugin.h"

#include <atomic>

namespace asl_edge {
namespace trt {
namespace {

nvinfer1::ILogger* tensorrtGlobalLogger() { return ::getLogger(); }

// Until TensorRT hands over a logger finder, log through TensorRT's global logger.
struct FallbackLoggerInstaller {
  FallbackLoggerInstaller() { setFallbackLogger(&tensorrtGlobalLogger); }
};
const FallbackLoggerInstaller gFallbackLoggerInstaller;

std::atomic<bool> gTcaStatic{false};
std::atomic<bool> gNmsStatic{false};

}  // namespace

#if ASL_TRT_STATIC_REGISTRATION
// The creators instantiated by the static registrars; constructing one records that the static
// registration of that plugin ran.
class StaticTcaAttentionCreator final : public TcaAttentionCreator {
 public:
  StaticTcaAttentionCreator() { gTcaStatic.store(true); }
};
class StaticNms1dCreator final : public Nms1dCreator {
 public:
  StaticNms1dCreator() { gNmsStatic.store(true); }
};
#endif

}  // namespace trt
}  // namespace asl_edge

#if ASL_TRT_STATIC_REGISTRATION
using asl_edge::trt::StaticNms1dCreator;
using asl_edge::trt::StaticTcaAttentionCreator;
REGISTER_TENSORRT_PLUGIN(StaticTcaAttentionCreator);
REGISTER_TENSORRT_PLUGIN(StaticNms1dCreator);
#endif

extern "C" TENSORRTAPI void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  asl_edge::trt::setLoggerFinder(finder);
}

extern "C" TENSORRTAPI nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static asl_edge::trt::TcaAttentionCreator tcaCreator;
  static asl_edge::trt::Nms1dCreator nmsCreator;
  static nvinfer1::IPluginCreatorInterface* creators[2] = {nullptr, nullptr};
  int32_t count = 0;
  if (!asl_edge::trt::gTcaStatic.load()) creators[count++] = &tcaCreator;
  if (!asl_edge::trt::gNmsStatic.load()) creators[count++] = &nmsCreator;
  nbCreators = count;
  return creators;
}
