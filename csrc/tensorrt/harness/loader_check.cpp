// Load check of libasl_edge_trt_plugins.so built with ASL_TENSORRT_COMPILE_ONLY=ON: this program
// stands in for libnvinfer by defining the two TensorRT symbols the library imports
// (getPluginRegistry, getLogger) with a recording IPluginRegistry of its own, then dlopens the
// library as ctypes / trtexec --staticPlugins would and checks
//   - the static registration (REGISTER_TENSORRT_PLUGIN) of both V3 creators, their name,
//     version and namespace;
//   - the exported entry points setLoggerFinder and getCreators (what IPluginRegistry::loadLibrary
//     and trtexec --dynamicPlugins call), and that getCreators does not offer the creators again
//     once they are registered statically;
//   - that errors reach TensorRT's global logger before setLoggerFinder and the finder's after.
//
//   asl_edge_trt_loader_check <path/to/libasl_edge_trt_plugins.so>
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int gFailures = 0;

void check(bool ok, std::string const& what, std::string const& detail = "") {
  std::printf("  [%s] %s%s%s\n", ok ? "ok" : "FAIL", what.c_str(), detail.empty() ? "" : " -- ", detail.c_str());
  gFailures += ok ? 0 : 1;
}

class RecordingLogger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, char const* msg) noexcept override {
    if (severity <= Severity::kERROR) errors.emplace_back(msg != nullptr ? msg : "");
  }
  std::vector<std::string> errors;
};

class Finder final : public nvinfer1::ILoggerFinder {
 public:
  explicit Finder(nvinfer1::ILogger* logger) : logger_(logger) {}
  nvinfer1::ILogger* findLogger() override { return logger_; }

 private:
  nvinfer1::ILogger* logger_;
};

// Records registerCreator; everything else is inert.
class RecordingRegistry final : public nvinfer1::IPluginRegistry {
 public:
  struct Entry {
    nvinfer1::IPluginCreatorInterface* creator;
    std::string name, version, ns;
  };
  std::vector<Entry> entries;
  std::vector<nvinfer1::IPluginCreatorInterface*> list;

  bool registerCreator(nvinfer1::IPluginCreatorInterface& creator, char const* const) noexcept override {
    auto* v3 = static_cast<nvinfer1::IPluginCreatorV3One*>(&creator);
    if (std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0) return false;
    for (Entry const& e : entries) {
      if (e.name == v3->getPluginName() && e.version == v3->getPluginVersion() && e.ns == v3->getPluginNamespace()) {
        return false;  // TensorRT refuses duplicates too
      }
    }
    entries.push_back({&creator, v3->getPluginName(), v3->getPluginVersion(), v3->getPluginNamespace()});
    list.push_back(&creator);
    return true;
  }
  nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override {
    *n = static_cast<int32_t>(list.size());
    return list.data();
  }
  nvinfer1::IPluginCreatorInterface* getCreator(char const* const name, char const* const version,
                                                char const* const ns) noexcept override {
    for (Entry const& e : entries) {
      if (e.name == name && e.version == version && e.ns == (ns ? ns : "")) return e.creator;
    }
    return nullptr;
  }
  void setErrorRecorder(nvinfer1::IErrorRecorder* const) noexcept override {}
  nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
  bool isParentSearchEnabled() const override { return false; }
  void setParentSearchEnabled(bool const) override {}
  PluginLibraryHandle loadLibrary(char const*) noexcept override { return nullptr; }
  void deregisterLibrary(PluginLibraryHandle) noexcept override {}
  bool deregisterCreator(nvinfer1::IPluginCreatorInterface const&) noexcept override { return false; }
  nvinfer1::IPluginResource* acquirePluginResource(char const*, nvinfer1::IPluginResource*) noexcept override {
    return nullptr;
  }
  int32_t releasePluginResource(char const*) noexcept override { return 0; }
#if NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 10)
  nvinfer1::IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override {
    return getAllCreators(n);
  }
#endif
#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  bool registerCreator(nvinfer1::IPluginCreator&, char const* const) noexcept override { return false; }
  nvinfer1::IPluginCreator* const* getPluginCreatorList(int32_t* const n) const noexcept override {
    *n = 0;
    return nullptr;
  }
  nvinfer1::IPluginCreator* getPluginCreator(char const* const, char const* const, char const* const) noexcept override {
    return nullptr;
  }
  bool deregisterCreator(nvinfer1::IPluginCreator const&) noexcept override { return false; }
#pragma GCC diagnostic pop
#endif
};

RecordingRegistry gRegistry;
RecordingLogger gGlobalLogger;

}  // namespace

// The libnvinfer symbols the plugin library imports.
extern "C" nvinfer1::IPluginRegistry* getPluginRegistry() noexcept { return &gRegistry; }
extern "C" nvinfer1::ILogger* getLogger() noexcept { return &gGlobalLogger; }

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <libasl_edge_trt_plugins.so>\n", argv[0]);
    return 2;
  }
  std::printf("loader check (TensorRT headers %d.%d.%d): %s\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
              NV_TENSORRT_PATCH, argv[1]);
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  check(lib != nullptr, "dlopen with RTLD_NOW (every import resolved)", lib ? "" : dlerror());
  if (lib == nullptr) return 1;

  std::string names;
  bool namesOk = gRegistry.entries.size() == 2;
  for (auto const& e : gRegistry.entries) {
    names += e.ns + "::" + e.name + " v" + e.version + " ";
    namesOk = namesOk && e.ns == "asl_edge" && e.version == "1" && (e.name == "AslTcaAttention" || e.name == "AslNms1d");
  }
  check(namesOk, "static registration of both IPluginCreatorV3One creators", names);

  using SetLoggerFinder = void (*)(nvinfer1::ILoggerFinder*);
  using GetCreators = nvinfer1::IPluginCreatorInterface* const* (*)(int32_t&);
  auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
  auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
  check(setLoggerFinder != nullptr && getCreators != nullptr, "exports setLoggerFinder and getCreators");
  check(dlsym(lib, "_ZN8asl_edge7kernels14status_messageENS0_6StatusE") == nullptr,
        "internal symbols stay local (version script)");
  if (getCreators != nullptr) {
    int32_t n = -1;
    getCreators(n);
    check(n == 0, "getCreators offers no creator already registered statically", "nbCreators=" + std::to_string(n));
  }

  auto* tca = static_cast<nvinfer1::IPluginCreatorV3One*>(gRegistry.getCreator("AslTcaAttention", "1", "asl_edge"));
  if (tca != nullptr && setLoggerFinder != nullptr) {
    const std::string bad = "tokens";
    nvinfer1::PluginField field("channel_scale", bad.c_str(), nvinfer1::PluginFieldType::kCHAR,
                                static_cast<int32_t>(bad.size()));
    nvinfer1::PluginFieldCollection fc{};
    fc.nbFields = 1;
    fc.fields = &field;
    nvinfer1::IPluginV3* p = tca->createPlugin("x", &fc, nvinfer1::TensorRTPhase::kBUILD);
    check(p == nullptr && !gGlobalLogger.errors.empty(), "errors go to TensorRT's global logger before setLoggerFinder",
          gGlobalLogger.errors.empty() ? "" : gGlobalLogger.errors.back());
    RecordingLogger finderLogger;
    Finder finder(&finderLogger);
    setLoggerFinder(&finder);
    p = tca->createPlugin("x", &fc, nvinfer1::TensorRTPhase::kBUILD);
    check(p == nullptr && !finderLogger.errors.empty(), "errors go to the ILoggerFinder's logger after setLoggerFinder",
          finderLogger.errors.empty() ? "" : finderLogger.errors.back());
    const int32_t heads = 4, window = 9;
    const float theta = 0.2f;
    std::vector<nvinfer1::PluginField> good = {
        {"num_heads", &heads, nvinfer1::PluginFieldType::kINT32, 1},
        {"window", &window, nvinfer1::PluginFieldType::kINT32, 1},
        {"theta", &theta, nvinfer1::PluginFieldType::kFLOAT32, 1},
    };
    fc.nbFields = static_cast<int32_t>(good.size());
    fc.fields = good.data();
    p = tca->createPlugin("x", &fc, nvinfer1::TensorRTPhase::kBUILD);
    check(p != nullptr, "the registered creator builds a plugin");
    delete p;
    setLoggerFinder(nullptr);
  } else {
    check(false, "registered AslTcaAttention creator found");
  }
  std::printf("loader check: %s\n", gFailures == 0 ? "passed" : "FAILED");
  return gFailures == 0 ? 0 : 1;
}
