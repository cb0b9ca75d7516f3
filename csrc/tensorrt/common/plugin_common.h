// Helpers shared by the asl_edge TensorRT plugins (DESIGN §4): logging through the ILogger
// that TensorRT hands out (ILoggerFinder), plugin-field parsing and serialisation, and small
// tensor-description checks. Nothing here calls into libnvinfer, so the plugin classes can be
// linked into the interface harness without TensorRT's libraries.
#pragma once

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <ostream>
#include <string>
#include <vector>

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10
#error "the asl_edge TensorRT plugins implement IPluginV3 and need TensorRT 10 or newer headers"
#endif

namespace asl_edge {
namespace trt {

constexpr char const* kPluginNamespace = "asl_edge";
constexpr char const* kPluginVersion = "1";

// "10.3.0" for the headers this file was compiled against.
char const* headerVersion() noexcept;

// ---------------------------------------------------------------------------------------------
// Logging. TensorRT passes an ILoggerFinder to plugin libraries loaded with
// IPluginRegistry::loadLibrary (the exported setLoggerFinder entry point). Libraries loaded
// statically get no finder; the library then falls back to a getter installed with
// setFallbackLogger (plugin_library.cpp installs TensorRT's global getLogger), and without
// either, warnings and errors go to stderr.
using LoggerGetter = nvinfer1::ILogger* (*)();
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;
void setFallbackLogger(LoggerGetter getter) noexcept;
void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;
void logError(std::string const& message) noexcept;
void logWarning(std::string const& message) noexcept;
void logVerbose(std::string const& message) noexcept;

// ---------------------------------------------------------------------------------------------
// Names for messages.
char const* dataTypeName(nvinfer1::DataType type) noexcept;
char const* tensorFormatName(nvinfer1::TensorFormat format) noexcept;
std::string dimsToString(nvinfer1::Dims const& dims);

// ---------------------------------------------------------------------------------------------
// Plugin fields. A plugin's config lists its fields once, in serialisation order, in
// `template <typename Visit> void forEachField(Visit&& visit)`, calling
// visit(name, kRequired or kOptional, member) for each; a member is an int32_t, a float, or an
// enum bound to its names with enumField().
constexpr bool kRequired = true;
constexpr bool kOptional = false;

struct FieldSpec {
  char const* name;
  nvinfer1::PluginFieldType type;  // kINT32, kFLOAT32 or kCHAR
  bool required;
};

// An enum config member held by name (kCHAR); names[i] names the value whose underlying value is i.
template <typename Enum, size_t N>
struct EnumField {
  Enum& value;
  std::array<char const*, N> names;

  char const* name() const { return names[static_cast<size_t>(value)]; }

  // Sets the value called `text`; false when no value has that name.
  bool assign(std::string const& text) const {
    for (size_t i = 0; i < N; ++i) {
      if (text == names[i]) {
        value = static_cast<Enum>(i);
        return true;
      }
    }
    return false;
  }

  // The names for a message: "a" or "b" (or "a", "b" or "c").
  std::string choices() const {
    std::string text;
    for (size_t i = 0; i < N; ++i) {
      text += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + "\"" + names[i] + "\"";
    }
    return text;
  }
};

template <typename Enum, size_t N>
EnumField<Enum, N> enumField(Enum& value, char const* const (&names)[N]) {
  EnumField<Enum, N> field{value, {}};
  for (size_t i = 0; i < N; ++i) field.names[i] = names[i];
  return field;
}

template <typename Enum, size_t N>
std::ostream& operator<<(std::ostream& out, EnumField<Enum, N> const& field) {
  return out << field.name();
}

inline nvinfer1::PluginFieldType fieldType(int32_t) { return nvinfer1::PluginFieldType::kINT32; }
inline nvinfer1::PluginFieldType fieldType(float) { return nvinfer1::PluginFieldType::kFLOAT32; }
template <typename Enum, size_t N>
nvinfer1::PluginFieldType fieldType(EnumField<Enum, N> const&) {
  return nvinfer1::PluginFieldType::kCHAR;
}

// The specs of a config's fields, in its forEachField order.
template <typename Config>
std::vector<FieldSpec> fieldSpecs() {
  Config config;
  std::vector<FieldSpec> specs;
  config.forEachField([&](char const* name, bool required, auto const& member) {
    specs.push_back({name, fieldType(member), required});
  });
  return specs;
}

// Reads a PluginFieldCollection against a list of specs. Integers are accepted as
// kINT8/16/32/64, floats as kFLOAT16/32/64 (the ONNX parser and the Python API may pass
// either width); strings as kCHAR (length counts characters; trailing NULs are ignored).
// Each getter leaves `value` unchanged when an optional field is absent and records an error
// (first one wins) when a field is malformed or a required one is missing. A well-formed enum
// field naming no value is reported only when no field is malformed.
class FieldReader {
 public:
  FieldReader(nvinfer1::PluginFieldCollection const* fc, std::vector<FieldSpec> const& specs);

  void get(char const* name, int32_t& value);
  void get(char const* name, float& value);
  void get(char const* name, std::string& value);
  template <typename Enum, size_t N>
  void get(char const* name, EnumField<Enum, N> const& field) {
    std::string text = field.name();
    get(name, text);
    if (!field.assign(text) && valueError_.empty()) {
      valueError_ = std::string(name) + " must be " + field.choices() + ", got \"" + text + "\"";
    }
  }

  // Fields not named by any spec (reported as warnings: likely a typo in an exporter).
  std::vector<std::string> const& unknownFields() const { return unknown_; }
  bool ok() const { return error_.empty() && valueError_.empty(); }
  std::string const& error() const { return error_.empty() ? valueError_ : error_; }
  void fail(std::string message);

 private:
  nvinfer1::PluginField const* find(char const* name, nvinfer1::PluginFieldType expected);

  nvinfer1::PluginFieldCollection const* fc_;
  std::vector<FieldSpec> specs_;
  std::vector<std::string> unknown_;
  std::string error_;
  std::string valueError_;
};

// Owns the storage behind a PluginFieldCollection (getFieldsToSerialize, getFieldNames).
class FieldWriter {
 public:
  void clear();
  void add(char const* name, int32_t value);
  void add(char const* name, float value);
  void add(char const* name, std::string const& value);
  template <typename Enum, size_t N>
  void add(char const* name, EnumField<Enum, N> const& field) {
    add(name, std::string(field.name()));
  }
  // A description-only field (no data), for IPluginCreatorV3One::getFieldNames.
  void addSpec(FieldSpec const& spec);
  // Valid until the next clear() or add*() or the writer's destruction.
  nvinfer1::PluginFieldCollection const* collection();

 private:
  std::deque<int32_t> ints_;
  std::deque<float> floats_;
  std::deque<std::string> strings_;
  std::vector<nvinfer1::PluginField> fields_;
  nvinfer1::PluginFieldCollection collection_{};
};

// ---------------------------------------------------------------------------------------------
// Tensor checks.
inline bool isLinear(nvinfer1::PluginTensorDesc const& desc, nvinfer1::DataType type) noexcept {
  return desc.type == type && desc.format == nvinfer1::TensorFormat::kLINEAR;
}
inline bool isFloatingLinear(nvinfer1::PluginTensorDesc const& desc) noexcept {
  return isLinear(desc, nvinfer1::DataType::kFLOAT) || isLinear(desc, nvinfer1::DataType::kHALF);
}
// Two extents agree when either is unknown (-1, build time) or both are equal.
inline bool extentsAgree(int64_t a, int64_t b) noexcept { return a < 0 || b < 0 || a == b; }

// Bytes rounded up to a multiple of 256 (the CUDA allocation alignment), for workspace layouts.
inline size_t alignUp(size_t bytes) noexcept { return (bytes + 255u) & ~static_cast<size_t>(255u); }

// IEEE half (bit pattern) to float: kFLOAT16 fields, and the harness's FP16 results.
float halfBitsToFloat(uint16_t bits) noexcept;

}  // namespace trt
}  // namespace asl_edge
