#include "plugin_common.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <utility>

namespace asl_edge {
namespace trt {

namespace {

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};
std::atomic<LoggerGetter> gFallbackLogger{nullptr};

#define ASL_TRT_STR2(x) #x
#define ASL_TRT_STR(x) ASL_TRT_STR2(x)

char const* fieldTypeName(nvinfer1::PluginFieldType type) {
  using T = nvinfer1::PluginFieldType;
  switch (type) {
    case T::kFLOAT16: return "FLOAT16";
    case T::kFLOAT32: return "FLOAT32";
    case T::kFLOAT64: return "FLOAT64";
    case T::kINT8: return "INT8";
    case T::kINT16: return "INT16";
    case T::kINT32: return "INT32";
    case T::kCHAR: return "CHAR";
    case T::kDIMS: return "DIMS";
    case T::kUNKNOWN: return "UNKNOWN";
    case T::kBF16: return "BF16";
    case T::kINT64: return "INT64";
    case T::kFP8: return "FP8";
    case T::kINT4: return "INT4";
    default: return "OTHER";
  }
}

// names[index], or "UNKNOWN" beyond the table (enum values newer than this code).
template <size_t N>
char const* nameAt(char const* const (&names)[N], int32_t index) noexcept {
  return index >= 0 && static_cast<size_t>(index) < N ? names[index] : "UNKNOWN";
}

bool isIntegerField(nvinfer1::PluginFieldType type) {
  using T = nvinfer1::PluginFieldType;
  return type == T::kINT8 || type == T::kINT16 || type == T::kINT32 || type == T::kINT64;
}

bool isFloatField(nvinfer1::PluginFieldType type) {
  using T = nvinfer1::PluginFieldType;
  return type == T::kFLOAT16 || type == T::kFLOAT32 || type == T::kFLOAT64;
}

}  // namespace

char const* headerVersion() noexcept {
  return ASL_TRT_STR(NV_TENSORRT_MAJOR) "." ASL_TRT_STR(NV_TENSORRT_MINOR) "." ASL_TRT_STR(NV_TENSORRT_PATCH);
}

// ---------------------------------------------------------------------------------------------
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept { gLoggerFinder.store(finder); }

void setFallbackLogger(LoggerGetter getter) noexcept { gFallbackLogger.store(getter); }

void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept {
  try {
    nvinfer1::ILogger* logger = nullptr;
    if (nvinfer1::ILoggerFinder* finder = gLoggerFinder.load()) logger = finder->findLogger();
    if (logger == nullptr) {
      if (LoggerGetter getter = gFallbackLogger.load()) logger = getter();
    }
    const std::string text = "[asl_edge] " + message;
    if (logger != nullptr) {
      logger->log(severity, text.c_str());
    } else if (severity <= nvinfer1::ILogger::Severity::kWARNING) {
      std::fprintf(stderr, "%s %s\n", severity <= nvinfer1::ILogger::Severity::kERROR ? "ERROR" : "WARNING",
                   text.c_str());
    }
  } catch (...) {
    // Logging must never throw through a noexcept TensorRT interface.
  }
}

void logError(std::string const& message) noexcept { log(nvinfer1::ILogger::Severity::kERROR, message); }
void logWarning(std::string const& message) noexcept { log(nvinfer1::ILogger::Severity::kWARNING, message); }
void logVerbose(std::string const& message) noexcept { log(nvinfer1::ILogger::Severity::kVERBOSE, message); }

// ---------------------------------------------------------------------------------------------
char const* dataTypeName(nvinfer1::DataType type) noexcept {
  static char const* const kNames[] = {"FLOAT", "HALF", "INT8",  "INT32", "BOOL", "UINT8",
                                       "FP8",   "BF16", "INT64", "INT4",  "FP4",  "E8M0"};
  return nameAt(kNames, static_cast<int32_t>(type));
}

char const* tensorFormatName(nvinfer1::TensorFormat format) noexcept {
  static char const* const kNames[] = {"LINEAR", "CHW2", "HWC8",       "CHW4",     "CHW16", "CHW32", "DHWC8",
                                       "CDHW32", "HWC",  "DLA_LINEAR", "DLA_HWC4", "HWC16", "DHWC"};
  return nameAt(kNames, static_cast<int32_t>(format));
}

std::string dimsToString(nvinfer1::Dims const& dims) {
  std::ostringstream out;
  out << "(";
  for (int32_t i = 0; i < dims.nbDims && i < nvinfer1::Dims::MAX_DIMS; ++i) out << (i ? ", " : "") << dims.d[i];
  out << ")";
  return out.str();
}

float halfBitsToFloat(uint16_t bits) noexcept {
  const int sign = (bits >> 15) & 1;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  float value;
  if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    value = mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    value = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  }
  return sign ? -value : value;
}

// ---------------------------------------------------------------------------------------------
FieldReader::FieldReader(nvinfer1::PluginFieldCollection const* fc, std::vector<FieldSpec> const& specs)
    : fc_(fc), specs_(specs) {
  if (fc_ == nullptr) return;
  if (fc_->nbFields < 0 || (fc_->nbFields > 0 && fc_->fields == nullptr)) {
    fail("malformed PluginFieldCollection");
    return;
  }
  for (int32_t i = 0; i < fc_->nbFields; ++i) {
    char const* name = fc_->fields[i].name;
    if (name == nullptr) {
      fail("a plugin field has no name");
      return;
    }
    bool known = false;
    for (FieldSpec const& spec : specs_) known = known || std::strcmp(spec.name, name) == 0;
    if (!known) unknown_.emplace_back(name);
  }
}

void FieldReader::fail(std::string message) {
  if (error_.empty()) error_ = std::move(message);
}

nvinfer1::PluginField const* FieldReader::find(char const* name, nvinfer1::PluginFieldType expected) {
  bool required = false;
  for (FieldSpec const& spec : specs_) {
    if (std::strcmp(spec.name, name) == 0) required = spec.required;
  }
  nvinfer1::PluginField const* found = nullptr;
  if (fc_ != nullptr && error_.empty()) {
    for (int32_t i = 0; i < fc_->nbFields; ++i) {
      if (std::strcmp(fc_->fields[i].name, name) == 0) {
        if (found != nullptr) {
          fail(std::string("field '") + name + "' is given more than once");
          return nullptr;
        }
        found = &fc_->fields[i];
      }
    }
  }
  if (found == nullptr) {
    if (required) fail(std::string("required field '") + name + "' is missing");
    return nullptr;
  }
  const bool typeOk = expected == nvinfer1::PluginFieldType::kCHAR    ? found->type == expected
                      : expected == nvinfer1::PluginFieldType::kINT32 ? isIntegerField(found->type)
                                                                      : isFloatField(found->type);
  if (!typeOk) {
    fail(std::string("field '") + name + "' has type " + fieldTypeName(found->type) + ", expected " +
         fieldTypeName(expected));
    return nullptr;
  }
  if (found->data == nullptr) {
    fail(std::string("field '") + name + "' has no data");
    return nullptr;
  }
  if (expected != nvinfer1::PluginFieldType::kCHAR && found->length != 1) {
    fail(std::string("field '") + name + "' must hold exactly one value, got " + std::to_string(found->length));
    return nullptr;
  }
  if (expected == nvinfer1::PluginFieldType::kCHAR && found->length < 0) {
    fail(std::string("field '") + name + "' has a negative length");
    return nullptr;
  }
  return found;
}

void FieldReader::get(char const* name, int32_t& value) {
  nvinfer1::PluginField const* f = find(name, nvinfer1::PluginFieldType::kINT32);
  if (f == nullptr) return;
  int64_t v = 0;
  switch (f->type) {
    case nvinfer1::PluginFieldType::kINT8: v = *static_cast<int8_t const*>(f->data); break;
    case nvinfer1::PluginFieldType::kINT16: v = *static_cast<int16_t const*>(f->data); break;
    case nvinfer1::PluginFieldType::kINT32: v = *static_cast<int32_t const*>(f->data); break;
    default: v = *static_cast<int64_t const*>(f->data); break;
  }
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    fail(std::string("field '") + name + "' = " + std::to_string(v) + " does not fit in int32");
    return;
  }
  value = static_cast<int32_t>(v);
}

void FieldReader::get(char const* name, float& value) {
  nvinfer1::PluginField const* f = find(name, nvinfer1::PluginFieldType::kFLOAT32);
  if (f == nullptr) return;
  double v = 0.0;
  switch (f->type) {
    case nvinfer1::PluginFieldType::kFLOAT16: v = halfBitsToFloat(*static_cast<uint16_t const*>(f->data)); break;
    case nvinfer1::PluginFieldType::kFLOAT32: v = *static_cast<float const*>(f->data); break;
    default: v = *static_cast<double const*>(f->data); break;
  }
  if (!std::isfinite(v)) {
    fail(std::string("field '") + name + "' must be finite");
    return;
  }
  value = static_cast<float>(v);
}

void FieldReader::get(char const* name, std::string& value) {
  nvinfer1::PluginField const* f = find(name, nvinfer1::PluginFieldType::kCHAR);
  if (f == nullptr) return;
  std::string s(static_cast<char const*>(f->data), static_cast<size_t>(f->length));
  const size_t end = s.find('\0');
  if (end != std::string::npos) s.resize(end);
  value = s;
}

// ---------------------------------------------------------------------------------------------
void FieldWriter::clear() {
  ints_.clear();
  floats_.clear();
  strings_.clear();
  fields_.clear();
  collection_ = {};
}

void FieldWriter::add(char const* name, int32_t value) {
  ints_.push_back(value);
  fields_.emplace_back(name, &ints_.back(), nvinfer1::PluginFieldType::kINT32, 1);
}

void FieldWriter::add(char const* name, float value) {
  floats_.push_back(value);
  fields_.emplace_back(name, &floats_.back(), nvinfer1::PluginFieldType::kFLOAT32, 1);
}

void FieldWriter::add(char const* name, std::string const& value) {
  strings_.push_back(value);
  // data is NUL-terminated; length counts the characters only (as the ONNX parser passes them).
  fields_.emplace_back(name, strings_.back().c_str(), nvinfer1::PluginFieldType::kCHAR,
                       static_cast<int32_t>(strings_.back().size()));
}

void FieldWriter::addSpec(FieldSpec const& spec) { fields_.emplace_back(spec.name, nullptr, spec.type, 1); }

nvinfer1::PluginFieldCollection const* FieldWriter::collection() {
  collection_.nbFields = static_cast<int32_t>(fields_.size());
  collection_.fields = fields_.empty() ? nullptr : fields_.data();
  return &collection_;
}

}  // namespace trt
}  // namespace asl_edge
