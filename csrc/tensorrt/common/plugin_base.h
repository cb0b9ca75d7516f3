// The parts of an asl_edge plugin and its creator that do not depend on the operation: CRTP bases
// that AslTcaAttention and AslNms1d derive from.
//
// A plugin class `P final : public PluginBase<P, Config>` provides
//   static constexpr char const* kName;           the plugin name
//   static constexpr char const* kIo;             "N inputs (...) and M outputs", for messages
//   static constexpr int32_t kNbInputs, kNbOutputs;
//   bool supportsFormat(int32_t pos, DynamicPluginTensorDesc const* inOut) const;
//       (pos and the I/O counts are checked before)
//   bool checkDescs(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
//                   int32_t nbOutputs, char const* where) const;   logs and returns false on error
//   and the remaining build/runtime methods (output types and shapes, workspace, onShapeChange,
//   enqueue). Config provides forEachField (see plugin_common.h) and `std::string problem() const`
//   (why the kernel would reject the values, or "").
#pragma once

#include <exception>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/plugin_common.h"

namespace asl_edge {
namespace trt {

template <typename Plugin, typename ConfigT>
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
 public:
  using Config = ConfigT;

  PluginBase(std::string layerName, Config const& config) : layerName_(std::move(layerName)), config_(config) {}
  ~PluginBase() override = default;

  Config const& config() const noexcept { return config_; }

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override {
    switch (type) {
      case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
      case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
      case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }

  nvinfer1::IPluginV3* clone() noexcept override {
    try {
      return new Plugin(layerName_, config_);
    } catch (std::exception const& e) {
      error(std::string("clone failed: ") + e.what());
    } catch (...) {
      error("clone failed");
    }
    return nullptr;
  }

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override { return Plugin::kName; }
  char const* getPluginVersion() const noexcept override { return kPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

  // IPluginV3OneBuild
  int32_t getNbOutputs() const noexcept override { return Plugin::kNbOutputs; }

  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override {
    if (inOut == nullptr || nbInputs != Plugin::kNbInputs || nbOutputs != Plugin::kNbOutputs || pos < 0 ||
        pos >= nbInputs + nbOutputs) {
      return false;
    }
    return self().supportsFormat(pos, inOut);
  }

  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override {
    return guarded("configurePlugin", [&] {
      if (!expectIo(in != nullptr && out != nullptr, nbInputs, nbOutputs, "configurePlugin")) return -1;
      nvinfer1::PluginTensorDesc inDescs[Plugin::kNbInputs];
      nvinfer1::PluginTensorDesc outDescs[Plugin::kNbOutputs];
      for (int32_t i = 0; i < Plugin::kNbInputs; ++i) inDescs[i] = in[i].desc;
      for (int32_t i = 0; i < Plugin::kNbOutputs; ++i) outDescs[i] = out[i].desc;
      return self().checkDescs(inDescs, nbInputs, outDescs, nbOutputs, "configurePlugin") ? 0 : -1;
    });
  }

  // The fields as "name=value" pairs.
  char const* getMetadataString() noexcept override {
    try {
      std::ostringstream s;
      char const* separator = "";
      config_.forEachField([&](char const* name, bool, auto const& member) {
        s << separator << name << "=" << member;
        separator = " ";
      });
      metadata_ = s.str();
      return metadata_.c_str();
    } catch (...) {
      return nullptr;
    }
  }

  // IPluginV3OneRuntime
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept override {
    return clone();  // no per-context resources
  }

  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override {
    try {
      serialized_.clear();
      config_.forEachField([&](char const* name, bool, auto const& member) { serialized_.add(name, member); });
      return serialized_.collection();
    } catch (...) {
      error("getFieldsToSerialize failed");
      return nullptr;
    }
  }

 protected:
  // Logs an error naming the plugin and its layer.
  void error(std::string const& message) const {
    logError(std::string(Plugin::kName) + " '" + layerName_ + "': " + message);
  }

  // True when the pointers are set and the I/O counts are the plugin's; else logs
  // "<where>: expected <kIo>" and returns false.
  bool expectIo(bool pointersSet, int32_t nbInputs, int32_t nbOutputs, char const* where) const {
    if (pointersSet && nbInputs == Plugin::kNbInputs && nbOutputs == Plugin::kNbOutputs) return true;
    error(std::string(where) + ": expected " + Plugin::kIo);
    return false;
  }

  // body() (0 or -1) for a noexcept interface method: an exception is logged as "<what> failed"
  // and returns -1.
  template <typename Body>
  int32_t guarded(char const* what, Body&& body) const noexcept {
    try {
      return body();
    } catch (...) {
      error(std::string(what) + " failed");
      return -1;
    }
  }

 private:
  Plugin const& self() const { return static_cast<Plugin const&>(*this); }

  std::string layerName_;
  Config config_;
  FieldWriter serialized_;
  std::string metadata_;
};

// The creator of Plugin: lists the config's fields and builds plugins from them.
template <typename Plugin>
class PluginCreator : public nvinfer1::IPluginCreatorV3One {
 public:
  using Config = typename Plugin::Config;

  PluginCreator() : specs_(fieldSpecs<Config>()) {
    for (FieldSpec const& spec : specs_) fieldNames_.addSpec(spec);
  }
  ~PluginCreator() override = default;

  char const* getPluginName() const noexcept override { return Plugin::kName; }
  char const* getPluginVersion() const noexcept override { return kPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return fieldNames_.collection(); }

  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override {
    try {
      const std::string layer = name != nullptr ? name : "";
      const std::string prefix = std::string(Plugin::kName) + " '" + layer + "': ";
      Config config;
      const FieldReader reader = parse(fc, config);
      if (!reader.ok()) {
        logError(prefix + "invalid plugin fields: " + reader.error());
        return nullptr;
      }
      for (std::string const& field : reader.unknownFields()) {
        logWarning(prefix + "ignoring unknown field '" + field + "'");
      }
      logVerbose(prefix + "created for the " + (phase == nvinfer1::TensorRTPhase::kBUILD ? "build" : "runtime") +
                 " phase");
      return new Plugin(layer, config);
    } catch (std::exception const& e) {
      logError(std::string(Plugin::kName) + ": createPlugin failed: " + e.what());
    } catch (...) {
      logError(std::string(Plugin::kName) + ": createPlugin failed");
    }
    return nullptr;
  }

 private:
  // Reads the fields into `config` and checks the values; the reader holds the outcome.
  FieldReader parse(nvinfer1::PluginFieldCollection const* fc, Config& config) const {
    FieldReader reader(fc, specs_);
    config.forEachField([&](char const* name, bool, auto&& member) { reader.get(name, member); });
    if (reader.ok()) {
      const std::string problem = config.problem();
      if (!problem.empty()) reader.fail(problem);
    }
    return reader;
  }

  std::vector<FieldSpec> specs_;
  FieldWriter fieldNames_;
};

}  // namespace trt
}  // namespace asl_edge
