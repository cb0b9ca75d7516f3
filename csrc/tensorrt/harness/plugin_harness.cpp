// Interface harness of the asl_edge TensorRT plugins. It drives AslTcaAttention and AslNms1d the
// way TensorRT does, through their public interfaces only (IPluginCreatorV3One, IPluginV3 and its
// capabilities), without libnvinfer: a minimal IExprBuilder/IDimensionExpr of its own evaluates
// getOutputShapes, a logger finder captures what the plugins log, and, when the kernels were built
// with CUDA and a device is present, enqueue runs on device buffers and is compared with the CPU
// kernels.
//
//   asl_edge_trt_harness [--json FILE] [--require-gpu] [--verbose]
//
// Exit status 0 when every check passed (skipped device checks are not failures unless
// --require-gpu), 1 otherwise.
#include <NvInferRuntime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/plugin_common.h"
#include "nms1d.h"
#include "nms1d/nms1d_plugin.h"
#include "tca_attention.h"
#include "tca_attention/tca_attention_plugin.h"

#ifndef ASL_TENSORRT_HEADER_VERSION
#define ASL_TENSORRT_HEADER_VERSION "unknown"
#endif

namespace {

using nvinfer1::DataType;
using nvinfer1::DimensionOperation;
using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::IDimensionExpr;
using nvinfer1::ILogger;
using nvinfer1::IPluginCapability;
using nvinfer1::IPluginCreatorV3One;
using nvinfer1::IPluginV3;
using nvinfer1::IPluginV3OneBuild;
using nvinfer1::IPluginV3OneCore;
using nvinfer1::IPluginV3OneRuntime;
using nvinfer1::PluginCapabilityType;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;
using nvinfer1::TensorRTPhase;
using asl_edge::trt::halfBitsToFloat;

bool gVerbose = false;

// =============================================================================================
// Report
struct Check {
  std::string plugin;
  std::string name;
  bool passed;
  std::string detail;
};

struct Report {
  std::vector<Check> checks;
  std::vector<std::string> notes;
  std::string enqueueStatus = "not run";

  bool check(std::string const& plugin, std::string const& name, bool passed, std::string const& detail = "") {
    checks.push_back({plugin, name, passed, detail});
    if (!passed || gVerbose) {
      std::printf("  [%s] %s: %s%s%s\n", passed ? "ok" : "FAIL", plugin.c_str(), name.c_str(),
                  detail.empty() ? "" : " -- ", detail.c_str());
    }
    return passed;
  }
  int failures() const {
    int n = 0;
    for (Check const& c : checks) n += c.passed ? 0 : 1;
    return n;
  }
};

Report gReport;

std::string jsonEscape(std::string const& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

// =============================================================================================
// Logger and logger finder (what TensorRT hands to setLoggerFinder).
class CapturingLogger final : public ILogger {
 public:
  void log(Severity severity, char const* msg) noexcept override {
    messages.emplace_back(severity, msg != nullptr ? msg : "");
    if (gVerbose) std::printf("    (log %d) %s\n", static_cast<int>(severity), msg);
  }
  size_t errorsSince(size_t start, std::string const& needle, std::string* last = nullptr) const {
    size_t n = 0;
    for (size_t i = start; i < messages.size(); ++i) {
      if (messages[i].first <= Severity::kERROR && messages[i].second.find(needle) != std::string::npos) {
        ++n;
        if (last != nullptr) *last = messages[i].second;
      }
    }
    return n;
  }
  size_t countSince(size_t start, Severity severity) const {
    size_t n = 0;
    for (size_t i = start; i < messages.size(); ++i) n += messages[i].first == severity ? 1 : 0;
    return n;
  }
  std::vector<std::pair<Severity, std::string>> messages;
};

class HarnessLoggerFinder final : public nvinfer1::ILoggerFinder {
 public:
  explicit HarnessLoggerFinder(ILogger* logger) : logger_(logger) {}
  ILogger* findLogger() override { return logger_; }

 private:
  ILogger* logger_;
};

CapturingLogger gLogger;

// =============================================================================================
// Minimal IExprBuilder / IDimensionExpr: constants, named symbols and operations; evaluable for
// concrete symbol values. (TensorRT's own implementation is internal; these sit behind the same
// non-virtual API through the apiv::V* implementation classes the public headers declare.)
class Expr final : public IDimensionExpr {
 public:
  enum class Kind { kConstant, kSymbol, kOperation };

  Expr(Kind kind, int64_t value, std::string symbol, DimensionOperation op, Expr const* a, Expr const* b)
      : kind_(kind), value_(value), symbol_(std::move(symbol)), op_(op), a_(a), b_(b), impl_(this) {
    mImpl = &impl_;
  }
  ~Expr() noexcept override = default;

  Kind kind() const { return kind_; }

  // Value for the given symbol values; false when a symbol is unbound or an operation invalid.
  bool evaluate(std::map<std::string, int64_t> const& env, int64_t& out) const {
    switch (kind_) {
      case Kind::kConstant: out = value_; return true;
      case Kind::kSymbol: {
        auto it = env.find(symbol_);
        if (it == env.end()) return false;
        out = it->second;
        return true;
      }
      case Kind::kOperation: {
        int64_t x = 0, y = 0;
        if (!a_->evaluate(env, x) || !b_->evaluate(env, y)) return false;
        return apply(op_, x, y, out);
      }
    }
    return false;
  }

  static bool apply(DimensionOperation op, int64_t x, int64_t y, int64_t& out) {
    switch (op) {
      case DimensionOperation::kSUM: out = x + y; return true;
      case DimensionOperation::kPROD: out = x * y; return true;
      case DimensionOperation::kMAX: out = std::max(x, y); return true;
      case DimensionOperation::kMIN: out = std::min(x, y); return true;
      case DimensionOperation::kSUB: out = x - y; return true;
      case DimensionOperation::kEQUAL: out = x == y ? 1 : 0; return true;
      case DimensionOperation::kLESS: out = x < y ? 1 : 0; return true;
      case DimensionOperation::kFLOOR_DIV:
        if (y == 0) return false;
        out = x / y - ((x % y != 0 && ((x < 0) != (y < 0))) ? 1 : 0);
        return true;
      case DimensionOperation::kCEIL_DIV:
        if (y == 0) return false;
        out = x / y + ((x % y != 0 && ((x < 0) == (y < 0))) ? 1 : 0);
        return true;
    }
    return false;
  }

 private:
  struct Impl final : nvinfer1::apiv::VDimensionExpr {
    explicit Impl(Expr const* self) : self_(self) {}
    bool isConstant() const override { return self_->kind_ == Kind::kConstant; }
    int64_t getConstantValue() const override {
      return self_->kind_ == Kind::kConstant ? self_->value_ : std::numeric_limits<int64_t>::min();
    }
    bool isSizeTensor() const override { return false; }
    Expr const* self_;
  };

  Kind kind_;
  int64_t value_;
  std::string symbol_;
  DimensionOperation op_;
  Expr const* a_;
  Expr const* b_;
  Impl impl_;
};

class ExprBuilder final : public nvinfer1::IExprBuilder {
 public:
  ExprBuilder() : impl_(this) { mImpl = &impl_; }
  ~ExprBuilder() noexcept override = default;

  Expr const* makeConstant(int64_t value) {
    pool_.push_back(std::make_unique<Expr>(Expr::Kind::kConstant, value, "", DimensionOperation::kSUM, nullptr, nullptr));
    return pool_.back().get();
  }
  Expr const* makeSymbol(std::string const& name) {
    pool_.push_back(std::make_unique<Expr>(Expr::Kind::kSymbol, 0, name, DimensionOperation::kSUM, nullptr, nullptr));
    return pool_.back().get();
  }
  Expr const* makeOperation(DimensionOperation op, IDimensionExpr const& first, IDimensionExpr const& second) {
    Expr const* a = dynamic_cast<Expr const*>(&first);
    Expr const* b = dynamic_cast<Expr const*>(&second);
    if (a == nullptr || b == nullptr) {
      foreignExprs_++;
      return nullptr;
    }
    int64_t x = 0, y = 0, r = 0;
    const std::map<std::string, int64_t> none;
    if (a->evaluate(none, x) && b->evaluate(none, y) && Expr::apply(op, x, y, r)) return makeConstant(r);
    pool_.push_back(std::make_unique<Expr>(Expr::Kind::kOperation, 0, "", op, a, b));
    return pool_.back().get();
  }
  int sizeTensorCalls() const { return sizeTensorCalls_; }
  int foreignExprs() const { return foreignExprs_; }

 private:
  struct Impl final : nvinfer1::apiv::VExprBuilder {
    explicit Impl(ExprBuilder* self) : self_(self) {}
    IDimensionExpr const* constant(int64_t value) override { return self_->makeConstant(value); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& first,
                                    IDimensionExpr const& second) override {
      return self_->makeOperation(op, first, second);
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
      self_->sizeTensorCalls_++;
      return nullptr;
    }
    ExprBuilder* self_;
  };

  std::deque<std::unique_ptr<Expr>> pool_;
  int sizeTensorCalls_ = 0;
  int foreignExprs_ = 0;
  Impl impl_;
};

// =============================================================================================
// Plugin fields as an exporter (ONNX parser, Python API) would pass them.
class Fields {
 public:
  Fields& i32(char const* name, int32_t v) { return raw(name, store(v), PluginFieldType::kINT32, 1); }
  Fields& i64(char const* name, int64_t v) { return raw(name, store(v), PluginFieldType::kINT64, 1); }
  Fields& f32(char const* name, float v) { return raw(name, store(v), PluginFieldType::kFLOAT32, 1); }
  Fields& f64(char const* name, double v) { return raw(name, store(v), PluginFieldType::kFLOAT64, 1); }
  Fields& str(char const* name, std::string const& v, bool countNul = false) {
    bytes_.emplace_back(v.begin(), v.end());
    bytes_.back().push_back('\0');
    return raw(name, bytes_.back().data(), PluginFieldType::kCHAR, static_cast<int32_t>(v.size() + (countNul ? 1 : 0)));
  }
  Fields& raw(char const* name, void const* data, PluginFieldType type, int32_t length) {
    names_.emplace_back(name);
    fields_.emplace_back(nullptr, data, type, length);
    return *this;
  }
  Fields& remove(char const* name) {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) {
        names_.erase(names_.begin() + static_cast<std::ptrdiff_t>(i));
        fields_.erase(fields_.begin() + static_cast<std::ptrdiff_t>(i));
        --i;
      }
    }
    return *this;
  }
  PluginFieldCollection const* collection() {
    for (size_t i = 0; i < fields_.size(); ++i) fields_[i].name = names_[i].c_str();
    fc_.nbFields = static_cast<int32_t>(fields_.size());
    fc_.fields = fields_.data();
    return &fc_;
  }

 private:
  template <typename T>
  void const* store(T v) {
    bytes_.emplace_back(sizeof(T));
    std::memcpy(bytes_.back().data(), &v, sizeof(T));
    return bytes_.back().data();
  }
  std::deque<std::vector<char>> bytes_;
  std::deque<std::string> names_;
  std::vector<PluginField> fields_;
  PluginFieldCollection fc_{};
};

// A field collection as comparable values: name -> (type, bytes).
using FieldDump = std::map<std::string, std::pair<int32_t, std::string>>;

FieldDump dumpFields(PluginFieldCollection const* fc) {
  FieldDump dump;
  if (fc == nullptr) return dump;
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    PluginField const& f = fc->fields[i];
    size_t elem = 1;
    switch (f.type) {
      case PluginFieldType::kINT32:
      case PluginFieldType::kFLOAT32: elem = 4; break;
      case PluginFieldType::kINT64:
      case PluginFieldType::kFLOAT64: elem = 8; break;
      default: elem = 1;
    }
    std::string bytes;
    if (f.data != nullptr && f.length > 0) bytes.assign(static_cast<char const*>(f.data), elem * static_cast<size_t>(f.length));
    dump[f.name != nullptr ? f.name : "?"] = {static_cast<int32_t>(f.type), bytes};
  }
  return dump;
}

std::string describeFields(FieldDump const& dump) {
  std::ostringstream s;
  for (auto const& [name, value] : dump) {
    s << name << ":";
    if (value.first == static_cast<int32_t>(PluginFieldType::kINT32) && value.second.size() == 4) {
      int32_t v;
      std::memcpy(&v, value.second.data(), 4);
      s << v;
    } else if (value.first == static_cast<int32_t>(PluginFieldType::kFLOAT32) && value.second.size() == 4) {
      float v;
      std::memcpy(&v, value.second.data(), 4);
      s << v;
    } else if (value.first == static_cast<int32_t>(PluginFieldType::kCHAR)) {
      s << '"' << value.second << '"';
    } else {
      s << "(type " << value.first << ")";
    }
    s << " ";
  }
  return s.str();
}

// =============================================================================================
// Helpers around the interfaces.
Dims makeDims(std::vector<int64_t> const& v) {
  Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
  return d;
}

PluginTensorDesc makeDesc(std::vector<int64_t> const& dims, DataType type) {
  PluginTensorDesc d{};
  d.dims = makeDims(dims);
  d.type = type;
  d.format = TensorFormat::kLINEAR;
  d.scale = 1.0f;
  return d;
}

// A build-time description: desc.dims holds -1 where min != max.
DynamicPluginTensorDesc makeDynamic(std::vector<int64_t> const& mn, std::vector<int64_t> const& opt,
                                    std::vector<int64_t> const& mx, DataType type) {
  DynamicPluginTensorDesc d{};
  std::vector<int64_t> build(mx.size());
  for (size_t i = 0; i < mx.size(); ++i) build[i] = mn[i] == mx[i] ? mx[i] : -1;
  d.desc = makeDesc(build, type);
  d.min = makeDims(mn);
  d.opt = makeDims(opt);
  d.max = makeDims(mx);
  return d;
}

struct Caps {
  IPluginV3* plugin = nullptr;
  IPluginV3OneCore* core = nullptr;
  IPluginV3OneBuild* build = nullptr;
  IPluginV3OneRuntime* runtime = nullptr;
};

bool kindIs(nvinfer1::InterfaceInfo const& info, char const* kind, int32_t major) {
  return info.kind != nullptr && std::strcmp(info.kind, kind) == 0 && info.major == major;
}

// getCapabilityInterface for every PluginCapabilityType, checked the way TensorRT checks them
// (interface kind and major version), then down-cast as TensorRT does.
Caps capabilities(std::string const& plugin, IPluginV3* p, std::string const& tag) {
  Caps caps;
  caps.plugin = p;
  if (p == nullptr) return caps;
  gReport.check(plugin, tag + " IPluginV3 interface info", kindIs(p->getInterfaceInfo(), "PLUGIN", 1));
  IPluginCapability* core = p->getCapabilityInterface(PluginCapabilityType::kCORE);
  IPluginCapability* build = p->getCapabilityInterface(PluginCapabilityType::kBUILD);
  IPluginCapability* runtime = p->getCapabilityInterface(PluginCapabilityType::kRUNTIME);
  gReport.check(plugin, tag + " capability kCORE", core != nullptr && kindIs(core->getInterfaceInfo(), "PLUGIN_V3ONE_CORE", 1));
  gReport.check(plugin, tag + " capability kBUILD",
                build != nullptr && kindIs(build->getInterfaceInfo(), "PLUGIN_V3ONE_BUILD", 1));
  gReport.check(plugin, tag + " capability kRUNTIME",
                runtime != nullptr && kindIs(runtime->getInterfaceInfo(), "PLUGIN_V3ONE_RUNTIME", 1));
  caps.core = static_cast<IPluginV3OneCore*>(core);
  caps.build = static_cast<IPluginV3OneBuild*>(build);
  caps.runtime = static_cast<IPluginV3OneRuntime*>(runtime);
  return caps;
}

std::unique_ptr<IPluginV3> create(IPluginCreatorV3One& creator, char const* layer, PluginFieldCollection const* fc,
                                  TensorRTPhase phase) {
  return std::unique_ptr<IPluginV3>(creator.createPlugin(layer, fc, phase));
}

// createPlugin(kBUILD), its capabilities and its core name/version/namespace checked; null when
// the plugin or one of its capabilities is missing.
std::unique_ptr<IPluginV3> createForBuild(std::string const& plugin, IPluginCreatorV3One& creator, char const* layer,
                                          PluginFieldCollection const* fc, Caps& caps) {
  std::unique_ptr<IPluginV3> p = create(creator, layer, fc, TensorRTPhase::kBUILD);
  if (!gReport.check(plugin, "createPlugin(kBUILD)", p != nullptr)) return nullptr;
  caps = capabilities(plugin, p.get(), "build-phase");
  if (!caps.core || !caps.build || !caps.runtime) return nullptr;
  gReport.check(plugin, "core name/version/namespace",
                plugin == caps.core->getPluginName() && std::strcmp(caps.core->getPluginVersion(), "1") == 0 &&
                    std::strcmp(caps.core->getPluginNamespace(), "asl_edge") == 0);
  return p;
}

// Description of one plugin I/O position for the format matrix.
struct IoSpec {
  char const* name;
  std::vector<DataType> types;  // accepted types (with a linear format) when sameAs < 0
  int sameAs;                   // else: accepted type = the type chosen for this earlier position
};

// supportsFormatCombination over every DataType x TensorFormat at every position, with the
// earlier positions fixed to a valid choice (TensorRT's query order) and the later ones filled
// with garbage (the plugin must not look at them). Runs once per choice of the position-0 type.
void formatMatrix(std::string const& plugin, IPluginV3OneBuild* build, std::vector<IoSpec> const& specs,
                  int32_t nbInputs) {
  const int32_t nbIO = static_cast<int32_t>(specs.size());
  const int32_t nbOutputs = nbIO - nbInputs;
  const int32_t numTypes = nvinfer1::EnumMax<DataType>();
  const int32_t numFormats = nvinfer1::EnumMax<TensorFormat>();
  std::vector<std::string> summary(specs.size());
  for (DataType base : specs[0].types) {
    std::vector<DynamicPluginTensorDesc> inOut(specs.size());
    std::vector<DataType> chosen(specs.size());
    for (int32_t i = 0; i < nbIO; ++i) chosen[i] = specs[i].sameAs >= 0 ? base : (i == 0 ? base : specs[i].types[0]);
    int mismatches = 0;
    std::string firstMismatch;
    for (int32_t pos = 0; pos < nbIO; ++pos) {
      for (int32_t i = 0; i < nbIO; ++i) {
        inOut[i] = makeDynamic({1}, {1}, {1}, i < pos ? chosen[i] : DataType::kINT8);
        if (i > pos) inOut[i].desc.format = TensorFormat::kCHW32;
      }
      std::vector<std::string> accepted;
      for (int32_t t = 0; t < numTypes; ++t) {
        for (int32_t f = 0; f < numFormats; ++f) {
          inOut[pos].desc.type = static_cast<DataType>(t);
          inOut[pos].desc.format = static_cast<TensorFormat>(f);
          const bool got = build->supportsFormatCombination(pos, inOut.data(), nbInputs, nbOutputs);
          bool expected = f == static_cast<int32_t>(TensorFormat::kLINEAR);
          if (specs[pos].sameAs >= 0) {
            expected = expected && t == static_cast<int32_t>(chosen[specs[pos].sameAs]);
          } else {
            expected = expected && std::find(specs[pos].types.begin(), specs[pos].types.end(),
                                             static_cast<DataType>(t)) != specs[pos].types.end();
          }
          if (got) accepted.push_back(asl_edge::trt::dataTypeName(static_cast<DataType>(t)));
          if (got != expected) {
            ++mismatches;
            if (firstMismatch.empty()) {
              firstMismatch = std::string("pos ") + std::to_string(pos) + " (" + specs[pos].name + ") " +
                              asl_edge::trt::dataTypeName(static_cast<DataType>(t)) + "/" +
                              asl_edge::trt::tensorFormatName(static_cast<TensorFormat>(f)) + ": got " +
                              (got ? "accepted" : "rejected");
            }
          }
        }
      }
      for (auto const& a : accepted) {
        if (summary[pos].find(a) == std::string::npos) summary[pos] += (summary[pos].empty() ? "" : "|") + a;
      }
    }
    gReport.check(plugin,
                  std::string("supportsFormatCombination matrix with ") + specs[0].name + " " +
                      asl_edge::trt::dataTypeName(base),
                  mismatches == 0,
                  mismatches == 0 ? std::to_string(nbIO) + " positions x " + std::to_string(numTypes) + " types x " +
                                        std::to_string(numFormats) + " formats as expected"
                                  : std::to_string(mismatches) + " mismatches, first: " + firstMismatch);
  }
  std::string all;
  for (int32_t i = 0; i < nbIO; ++i) all += std::string(specs[i].name) + ":" + summary[i] + (specs[i].sameAs >= 0 ? "(=" + std::string(specs[specs[i].sameAs].name) + ")" : "") + " ";
  gReport.check(plugin, "accepted types (LINEAR only)", true, all);
  // Out-of-range positions and wrong I/O counts are rejected.
  std::vector<DynamicPluginTensorDesc> any(specs.size(), makeDynamic({1}, {1}, {1}, DataType::kFLOAT));
  gReport.check(plugin, "supportsFormatCombination rejects bad pos/counts",
                !build->supportsFormatCombination(nbIO, any.data(), nbInputs, nbOutputs) &&
                    !build->supportsFormatCombination(-1, any.data(), nbInputs, nbOutputs) &&
                    !build->supportsFormatCombination(0, any.data(), nbInputs + 1, nbOutputs - 1));
}

// getFieldsToSerialize -> createPlugin(kRUNTIME) -> same fields; clone and attachToContext keep them.
class ResourceContext final : public nvinfer1::IPluginResourceContext {
 public:
  nvinfer1::IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
  nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
};

std::unique_ptr<IPluginV3> roundTrip(std::string const& plugin, IPluginCreatorV3One& creator, Caps const& caps) {
  FieldDump before = dumpFields(caps.runtime->getFieldsToSerialize());
  PluginFieldCollection const* fc = caps.runtime->getFieldsToSerialize();
  gReport.check(plugin, "getFieldsToSerialize", fc != nullptr && fc->nbFields > 0, describeFields(before));
  // Every field the creator lists is serialized (nothing left to a default at runtime).
  std::string missing;
  PluginFieldCollection const* names = creator.getFieldNames();
  for (int32_t i = 0; names != nullptr && i < names->nbFields; ++i) {
    auto it = before.find(names->fields[i].name);
    if (it == before.end() || it->second.first != static_cast<int32_t>(names->fields[i].type)) {
      missing += std::string(names->fields[i].name) + " ";
    }
  }
  gReport.check(plugin, "getFieldsToSerialize covers getFieldNames (names and types)",
                names != nullptr && missing.empty() && before.size() == static_cast<size_t>(names->nbFields),
                missing.empty() ? "" : "missing or retyped: " + missing);
  std::unique_ptr<IPluginV3> runtimePlugin = create(creator, "layer_rt", fc, TensorRTPhase::kRUNTIME);
  gReport.check(plugin, "createPlugin(kRUNTIME) from serialized fields", runtimePlugin != nullptr);
  if (!runtimePlugin) return nullptr;
  Caps rt = capabilities(plugin, runtimePlugin.get(), "runtime-phase");
  if (rt.runtime == nullptr || rt.core == nullptr) return nullptr;
  FieldDump after = dumpFields(rt.runtime->getFieldsToSerialize());
  gReport.check(plugin, "runtime-phase plugin has the same attributes", before == after, describeFields(after));
  gReport.check(plugin, "runtime-phase plugin name/version/namespace",
                std::strcmp(rt.core->getPluginName(), caps.core->getPluginName()) == 0 &&
                    std::strcmp(rt.core->getPluginVersion(), "1") == 0 &&
                    std::strcmp(rt.core->getPluginNamespace(), "asl_edge") == 0);

  std::unique_ptr<IPluginV3> cloned(runtimePlugin->clone());
  gReport.check(plugin, "clone", cloned != nullptr && cloned.get() != runtimePlugin.get());
  if (cloned) {
    Caps cc = capabilities(plugin, cloned.get(), "clone");
    gReport.check(plugin, "clone has the same attributes",
                  cc.runtime != nullptr && dumpFields(cc.runtime->getFieldsToSerialize()) == before);
  }
  ResourceContext context;
  std::unique_ptr<IPluginV3> attached(rt.runtime->attachToContext(&context));
  gReport.check(plugin, "attachToContext returns a new plugin", attached != nullptr && attached.get() != runtimePlugin.get());
  if (!attached) return nullptr;
  Caps ac = capabilities(plugin, attached.get(), "attached");
  gReport.check(plugin, "attached plugin has the same attributes",
                ac.runtime != nullptr && dumpFields(ac.runtime->getFieldsToSerialize()) == before);
  return attached;
}

struct InvalidCase {
  std::string what;
  std::function<void(Fields&)> edit;
  std::string expectInError;
  TensorRTPhase phase = TensorRTPhase::kBUILD;
};

void rejectInvalid(std::string const& plugin, IPluginCreatorV3One& creator, std::function<Fields()> valid,
                   std::vector<InvalidCase> const& cases) {
  for (InvalidCase const& c : cases) {
    Fields f = valid();
    c.edit(f);
    const size_t mark = gLogger.messages.size();
    std::unique_ptr<IPluginV3> p = create(creator, "bad_layer", f.collection(), c.phase);
    std::string message;
    const size_t errors = gLogger.errorsSince(mark, c.expectInError, &message);
    gReport.check(plugin, "rejects " + c.what, p == nullptr && errors > 0,
                  p != nullptr ? "plugin was created" : (errors > 0 ? message : "no error logged naming '" + c.expectInError + "'"));
  }
}

void acceptVariant(std::string const& plugin, IPluginCreatorV3One& creator, std::string const& what, Fields f,
                   std::function<bool(IPluginV3*)> verify, bool expectWarning = false) {
  const size_t mark = gLogger.messages.size();
  std::unique_ptr<IPluginV3> p = create(creator, "variant", f.collection(), TensorRTPhase::kBUILD);
  bool ok = p != nullptr && (!verify || verify(p.get()));
  if (expectWarning) ok = ok && gLogger.countSince(mark, ILogger::Severity::kWARNING) > 0;
  gReport.check(plugin, "accepts " + what, ok);
}

void checkCreator(std::string const& plugin, IPluginCreatorV3One& creator,
                  std::vector<std::pair<std::string, PluginFieldType>> const& expectedFields) {
  gReport.check(plugin, "creator interface info", kindIs(creator.getInterfaceInfo(), "PLUGIN CREATOR_V3ONE", 1));
  gReport.check(plugin, "creator name/version/namespace",
                plugin == creator.getPluginName() && std::strcmp(creator.getPluginVersion(), "1") == 0 &&
                    std::strcmp(creator.getPluginNamespace(), "asl_edge") == 0,
                std::string(creator.getPluginNamespace()) + "::" + creator.getPluginName() + " v" +
                    creator.getPluginVersion());
  PluginFieldCollection const* names = creator.getFieldNames();
  bool ok = names != nullptr && names->nbFields == static_cast<int32_t>(expectedFields.size());
  std::string listed;
  for (int32_t i = 0; ok && i < names->nbFields; ++i) {
    ok = ok && names->fields[i].name != nullptr && expectedFields[i].first == names->fields[i].name &&
         names->fields[i].type == expectedFields[i].second;
    listed += std::string(names->fields[i].name ? names->fields[i].name : "?") + " ";
  }
  gReport.check(plugin, "getFieldNames", ok, listed);
}

// =============================================================================================
// Host FP16 conversion (round to nearest even), for the FP16 enqueue checks.
[[maybe_unused]] uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exponent = static_cast<int32_t>((x >> 23) & 0xffu) - 127 + 15;
  uint32_t mantissa = x & 0x7fffffu;
  if (((x >> 23) & 0xffu) == 0xffu) return static_cast<uint16_t>(sign | 0x7c00u | (mantissa ? 0x200u : 0u));
  if (exponent >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exponent <= 0) {
    if (exponent < -10) return static_cast<uint16_t>(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

[[maybe_unused]] float roundToHalf(float f) { return halfBitsToFloat(floatToHalf(f)); }

// =============================================================================================
// Device access (only with CUDA kernels).
#if ASL_EDGE_WITH_CUDA
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(n) {
    if (n > 0 && cudaMalloc(&ptr, n) != cudaSuccess) ptr = nullptr;
  }
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
  DeviceBuffer(DeviceBuffer const&) = delete;
  DeviceBuffer& operator=(DeviceBuffer const&) = delete;
  bool upload(void const* host) { return bytes == 0 || cudaMemcpy(ptr, host, bytes, cudaMemcpyHostToDevice) == cudaSuccess; }
  bool download(void* host) const {
    return bytes == 0 || cudaMemcpy(host, ptr, bytes, cudaMemcpyDeviceToHost) == cudaSuccess;
  }
};

// A plugin on the path an engine takes to enqueue: createPlugin(kBUILD), configurePlugin and
// getWorkspaceSize with `in`/`out`, createPlugin(kRUNTIME) from the serialized fields,
// attachToContext, and onShapeChange with `inD`/`outD`.
struct EnqueueReady {
  ResourceContext context;
  std::unique_ptr<IPluginV3> plugin;  // the attached one
  IPluginV3OneRuntime* runtime = nullptr;
  size_t workspace = 0;
};

bool prepareEnqueue(std::string const& plugin, IPluginCreatorV3One& creator, char const* layer,
                    PluginFieldCollection const* fields, std::vector<DynamicPluginTensorDesc> const& in,
                    std::vector<DynamicPluginTensorDesc> const& out, std::vector<PluginTensorDesc> const& inD,
                    std::vector<PluginTensorDesc> const& outD, EnqueueReady& ready, std::string& detail) {
  const int32_t nbIn = static_cast<int32_t>(in.size());
  const int32_t nbOut = static_cast<int32_t>(out.size());
  std::unique_ptr<IPluginV3> built = create(creator, layer, fields, TensorRTPhase::kBUILD);
  if (!built) return detail = "createPlugin failed", false;
  Caps bc = capabilities(plugin, built.get(), "enqueue-case");
  if (bc.build->configurePlugin(in.data(), nbIn, out.data(), nbOut) != 0) {
    return detail = "configurePlugin failed", false;
  }
  ready.workspace = bc.build->getWorkspaceSize(in.data(), nbIn, out.data(), nbOut);
  std::unique_ptr<IPluginV3> runtime =
      create(creator, layer, bc.runtime->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
  if (!runtime) return detail = "runtime createPlugin failed", false;
  Caps rc = capabilities(plugin, runtime.get(), "enqueue-case-rt");
  ready.plugin.reset(rc.runtime->attachToContext(&ready.context));
  if (!ready.plugin) return detail = "attachToContext failed", false;
  ready.runtime =
      static_cast<IPluginV3OneRuntime*>(ready.plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  if (ready.runtime->onShapeChange(inD.data(), nbIn, outD.data(), nbOut) != 0) {
    return detail = "onShapeChange failed", false;
  }
  return true;
}
#endif

std::string gpuState(bool& available) {
  available = false;
#if ASL_EDGE_WITH_CUDA
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return std::string("skipped: cudaGetDeviceCount failed (") + cudaGetErrorString(err) + ")";
  if (count <= 0) return "skipped: no CUDA device";
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  available = true;
  return std::string("run on ") + prop.name;
#else
  return "skipped: the kernels were built without CUDA (ASL_WITH_CUDA=OFF)";
#endif
}

// =============================================================================================
// AslTcaAttention
std::vector<std::pair<std::string, PluginFieldType>> tcaFieldSpec() {
  return {{"num_heads", PluginFieldType::kINT32},
          {"window", PluginFieldType::kINT32},
          {"theta", PluginFieldType::kFLOAT32},
          {"channel_scale", PluginFieldType::kCHAR}};
}

Fields tcaFields(int32_t heads = 4, int32_t window = 9, float theta = 0.2f, std::string const& scale = "time") {
  Fields f;
  f.i32("num_heads", heads).i32("window", window).f32("theta", theta).str("channel_scale", scale);
  return f;
}

struct TcaCase {
  int32_t batch, channels, length, heads, window;
  float theta;
  std::string scale;
  std::vector<int32_t> validLengths;  // per batch element (masked tails)
};

#if ASL_EDGE_WITH_CUDA
bool runTcaEnqueue(asl_edge::trt::TcaAttentionCreator& creator, TcaCase const& c, bool fp16, std::mt19937& rng,
                   std::string& detail) {
  Fields f = tcaFields(c.heads, c.window, c.theta, c.scale);
  const DataType dt = fp16 ? DataType::kHALF : DataType::kFLOAT;
  const std::vector<int64_t> qd = {c.batch, c.channels, c.length}, md = {c.batch, c.length};
  std::vector<DynamicPluginTensorDesc> in = {makeDynamic(qd, qd, qd, dt), makeDynamic(qd, qd, qd, dt),
                                             makeDynamic(qd, qd, qd, dt), makeDynamic(md, md, md, DataType::kBOOL)};
  std::vector<DynamicPluginTensorDesc> out = {makeDynamic(qd, qd, qd, dt)};
  std::vector<PluginTensorDesc> inD = {makeDesc(qd, dt), makeDesc(qd, dt), makeDesc(qd, dt), makeDesc(md, DataType::kBOOL)};
  std::vector<PluginTensorDesc> outD = {makeDesc(qd, dt)};
  EnqueueReady ready;
  if (!prepareEnqueue("AslTcaAttention", creator, "tca_enqueue", f.collection(), in, out, inD, outD, ready, detail)) {
    return false;
  }
  const size_t wsBytes = ready.workspace;

  const size_t n = static_cast<size_t>(c.batch) * c.channels * c.length;
  std::uniform_real_distribution<float> uni(-1.5f, 1.5f);
  std::vector<float> q(n), k(n), v(n);
  for (size_t i = 0; i < n; ++i) {
    q[i] = uni(rng);
    k[i] = uni(rng);
    v[i] = uni(rng);
    if (fp16) {
      q[i] = roundToHalf(q[i]);
      k[i] = roundToHalf(k[i]);
      v[i] = roundToHalf(v[i]);
    }
  }
  std::vector<uint8_t> mask(static_cast<size_t>(c.batch) * c.length, 0);
  for (int32_t b = 0; b < c.batch; ++b)
    for (int32_t t = 0; t < c.length; ++t) mask[static_cast<size_t>(b) * c.length + t] = t < c.validLengths[b] ? 1 : 0;

  asl_edge::kernels::TcaShape shape{c.batch, c.channels, c.length, c.heads, c.window, c.theta,
                                    c.scale == "head" ? asl_edge::kernels::ChannelScale::kHead
                                                      : asl_edge::kernels::ChannelScale::kTime};
  std::vector<float> ref(n, 0.0f);
  asl_edge::kernels::tca_attention_cpu(shape, q.data(), k.data(), v.data(), mask.data(), ref.data(), 0,
                                       static_cast<int64_t>(c.batch) * c.heads);

  const size_t elem = fp16 ? 2 : 4;
  DeviceBuffer dq(n * elem), dk(n * elem), dv(n * elem), dm(mask.size()), dout(n * elem), dws(wsBytes);
  if ((n && (!dq.ptr || !dk.ptr || !dv.ptr || !dout.ptr)) || (wsBytes && !dws.ptr)) return detail = "cudaMalloc failed", false;
  auto uploadData = [&](DeviceBuffer& d, std::vector<float> const& h) {
    if (!fp16) return d.upload(h.data());
    std::vector<uint16_t> hh(h.size());
    for (size_t i = 0; i < h.size(); ++i) hh[i] = floatToHalf(h[i]);
    return d.upload(hh.data());
  };
  if (!uploadData(dq, q) || !uploadData(dk, k) || !uploadData(dv, v) || !dm.upload(mask.data()))
    return detail = "upload failed", false;
  cudaMemset(dout.ptr, 0xff, n * elem);  // NaN pattern: every output element must be written
  cudaStream_t stream = nullptr;
  cudaStreamCreate(&stream);
  void const* inputs[4] = {dq.ptr, dk.ptr, dv.ptr, dm.ptr};
  void* outputs[1] = {dout.ptr};
  const int32_t rc0 = ready.runtime->enqueue(inD.data(), outD.data(), inputs, outputs, dws.ptr, stream);
  const cudaError_t sync = cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  if (rc0 != 0) return detail = "enqueue returned " + std::to_string(rc0), false;
  if (sync != cudaSuccess) return detail = std::string("stream error: ") + cudaGetErrorString(sync), false;
  std::vector<float> got(n);
  if (fp16) {
    std::vector<uint16_t> hh(n);
    if (!dout.download(hh.data())) return detail = "download failed", false;
    for (size_t i = 0; i < n; ++i) got[i] = halfBitsToFloat(hh[i]);
  } else if (!dout.download(got.data())) {
    return detail = "download failed", false;
  }
  double worst = 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double tol = fp16 ? 2e-2 * std::max(1.0, std::fabs(static_cast<double>(ref[i]))) : 1e-4;
    const double score = diff / tol;
    if (!(score <= 1.0)) ++bad;
    if (!(score <= worst)) worst = std::isnan(score) ? std::numeric_limits<double>::infinity() : score;
  }
  std::ostringstream s;
  s << "workspace " << wsBytes << " B, max |err|/tol " << worst << (bad ? ", " + std::to_string(bad) + " elements out of tolerance" : "");
  detail = s.str();
  return bad == 0;
}
#endif

void testTca(bool gpu) {
  const std::string P = "AslTcaAttention";
  std::printf("== %s\n", P.c_str());
  asl_edge::trt::TcaAttentionCreator creator;
  checkCreator(P, creator, tcaFieldSpec());

  Fields fields = tcaFields(4, 9, 0.2f, "head");  // non-default channel_scale: the round trip must keep it
  Caps caps;
  std::unique_ptr<IPluginV3> plugin = createForBuild(P, creator, "tca_layer", fields.collection(), caps);
  if (!plugin) return;
  char const* meta = caps.build->getMetadataString();
  gReport.check(P, "getMetadataString", meta != nullptr && std::strstr(meta, "num_heads=4") != nullptr, meta ? meta : "");

  // Outputs and types.
  IPluginV3OneBuild* b = caps.build;
  gReport.check(P, "getNbOutputs == 1", b->getNbOutputs() == 1);
  for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
    DataType inT[4] = {t, t, t, DataType::kBOOL};
    DataType outT[1] = {DataType::kINT8};
    gReport.check(P, std::string("getOutputDataTypes ") + asl_edge::trt::dataTypeName(t),
                  b->getOutputDataTypes(outT, 1, inT, 4) == 0 && outT[0] == t);
  }
  {
    DataType inT[4] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT, DataType::kBOOL};
    DataType outT[2];
    gReport.check(P, "getOutputDataTypes rejects wrong counts", b->getOutputDataTypes(outT, 2, inT, 4) != 0 &&
                                                                    b->getOutputDataTypes(outT, 1, inT, 3) != 0);
  }

  // Output shapes: q (B, 256, T) with B and T symbolic; and a fully symbolic variant.
  {
    ExprBuilder eb;
    DimsExprs in[4];
    Expr const* B = eb.makeSymbol("B");
    Expr const* T = eb.makeSymbol("T");
    Expr const* D = eb.makeConstant(256);
    for (int i = 0; i < 3; ++i) {
      in[i].nbDims = 3;
      in[i].d[0] = B;
      in[i].d[1] = D;
      in[i].d[2] = T;
    }
    in[3].nbDims = 2;
    in[3].d[0] = B;
    in[3].d[1] = T;
    DimsExprs out[1];
    bool ok = b->getOutputShapes(in, 4, nullptr, 0, out, 1, eb) == 0 && out[0].nbDims == 3;
    std::string detail;
    for (auto env : {std::map<std::string, int64_t>{{"B", 1}, {"T", 2304}}, std::map<std::string, int64_t>{{"B", 3}, {"T", 57}}}) {
      int64_t v[3] = {-1, -1, -1};
      for (int i = 0; ok && i < 3; ++i) {
        Expr const* e = dynamic_cast<Expr const*>(out[0].d[i]);
        ok = e != nullptr && e->evaluate(env, v[i]);
      }
      ok = ok && v[0] == env["B"] && v[1] == 256 && v[2] == env["T"];
      detail += "(" + std::to_string(v[0]) + "," + std::to_string(v[1]) + "," + std::to_string(v[2]) + ") ";
    }
    ok = ok && out[0].d[1]->isConstant() && out[0].d[1]->getConstantValue() == 256 && !out[0].d[2]->isConstant();
    gReport.check(P, "getOutputShapes (B, 256, T) evaluated", ok, detail);
    // Channels not divisible by num_heads, wrong ranks.
    in[0].d[1] = in[1].d[1] = in[2].d[1] = eb.makeConstant(250);
    const size_t mark = gLogger.messages.size();
    gReport.check(P, "getOutputShapes rejects channels % num_heads != 0",
                  b->getOutputShapes(in, 4, nullptr, 0, out, 1, eb) != 0 && gLogger.errorsSince(mark, "num_heads") > 0);
    in[0].d[1] = in[1].d[1] = in[2].d[1] = D;
    in[3].nbDims = 3;
    gReport.check(P, "getOutputShapes rejects a rank-3 mask", b->getOutputShapes(in, 4, nullptr, 0, out, 1, eb) != 0);
    gReport.check(P, "getOutputShapes used only the public IExprBuilder", eb.foreignExprs() == 0 && eb.sizeTensorCalls() == 0);
  }

  formatMatrix(P, b,
               {{"q", {DataType::kFLOAT, DataType::kHALF}, -1},
                {"k", {}, 0},
                {"v", {}, 0},
                {"mask", {DataType::kBOOL}, -1},
                {"f", {}, 0}},
               4);

  // configurePlugin over a dynamic profile, then the workspace for its max shape.
  for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
    const std::vector<int64_t> qmin = {1, 256, 16}, qopt = {1, 256, 2304}, qmax = {4, 256, 4608};
    std::vector<DynamicPluginTensorDesc> in = {makeDynamic(qmin, qopt, qmax, t), makeDynamic(qmin, qopt, qmax, t),
                                               makeDynamic(qmin, qopt, qmax, t),
                                               makeDynamic({1, 16}, {1, 2304}, {4, 4608}, DataType::kBOOL)};
    std::vector<DynamicPluginTensorDesc> out = {makeDynamic(qmin, qopt, qmax, t)};
    const std::string tn = asl_edge::trt::dataTypeName(t);
    gReport.check(P, "configurePlugin " + tn + " dynamic B,T", b->configurePlugin(in.data(), 4, out.data(), 1) == 0);
    const size_t ws = b->getWorkspaceSize(in.data(), 4, out.data(), 1);
    size_t expected = 0;
    for (auto const& d : {qmin, qopt, qmax}) {
      asl_edge::kernels::TcaShape s{static_cast<int32_t>(d[0]), static_cast<int32_t>(d[1]), static_cast<int32_t>(d[2]),
                                    4, 9, 0.2f, asl_edge::kernels::ChannelScale::kHead};
      expected = std::max(expected, asl_edge::kernels::tca_attention_cuda_workspace(s));
    }
    gReport.check(P, "getWorkspaceSize " + tn + " = kernel workspace at the profile max", ws == expected,
                  std::to_string(ws) + " B");
  }
  {
    const std::vector<int64_t> q = {2, 256, 100};
    auto good = [&](DataType t) {
      return std::vector<DynamicPluginTensorDesc>{makeDynamic(q, q, q, t), makeDynamic(q, q, q, t), makeDynamic(q, q, q, t),
                                                  makeDynamic({2, 100}, {2, 100}, {2, 100}, DataType::kBOOL)};
    };
    std::vector<DynamicPluginTensorDesc> out = {makeDynamic(q, q, q, DataType::kFLOAT)};
    auto in = good(DataType::kFLOAT);
    in[3] = makeDynamic({2, 101}, {2, 101}, {2, 101}, DataType::kBOOL);
    gReport.check(P, "configurePlugin rejects a mask of another length", b->configurePlugin(in.data(), 4, out.data(), 1) != 0);
    in = good(DataType::kFLOAT);
    in[1].desc.type = DataType::kHALF;
    gReport.check(P, "configurePlugin rejects mixed q/k types", b->configurePlugin(in.data(), 4, out.data(), 1) != 0);
    const std::vector<int64_t> q250 = {2, 250, 100};
    in = good(DataType::kFLOAT);
    for (int i = 0; i < 3; ++i) in[i] = makeDynamic(q250, q250, q250, DataType::kFLOAT);
    std::vector<DynamicPluginTensorDesc> out250 = {makeDynamic(q250, q250, q250, DataType::kFLOAT)};
    gReport.check(P, "configurePlugin rejects channels % num_heads != 0",
                  b->configurePlugin(in.data(), 4, out250.data(), 1) != 0);
  }

  // Serialization round trip, clone, attachToContext, onShapeChange.
  std::unique_ptr<IPluginV3> attached = roundTrip(P, creator, caps);
  if (attached) {
    auto* rt = static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    std::vector<PluginTensorDesc> in = {makeDesc({2, 256, 300}, DataType::kHALF), makeDesc({2, 256, 300}, DataType::kHALF),
                                        makeDesc({2, 256, 300}, DataType::kHALF), makeDesc({2, 300}, DataType::kBOOL)};
    std::vector<PluginTensorDesc> out = {makeDesc({2, 256, 300}, DataType::kHALF)};
    gReport.check(P, "onShapeChange (2, 256, 300) FP16", rt->onShapeChange(in.data(), 4, out.data(), 1) == 0);
    in[2] = makeDesc({2, 256, 299}, DataType::kHALF);
    gReport.check(P, "onShapeChange rejects v of another shape", rt->onShapeChange(in.data(), 4, out.data(), 1) != 0);
#if !ASL_EDGE_WITH_CUDA
    // Without CUDA kernels enqueue must fail cleanly (stubs report kNotCompiled) and say why.
    in[2] = makeDesc({2, 256, 300}, DataType::kHALF);
    std::vector<uint16_t> host(2 * 256 * 300);
    std::vector<uint8_t> mask(2 * 300, 1);
    void const* inputs[4] = {host.data(), host.data(), host.data(), mask.data()};
    void* outputs[1] = {host.data()};
    const size_t mark = gLogger.messages.size();
    const int32_t rc = rt->enqueue(in.data(), out.data(), inputs, outputs, nullptr, nullptr);
    gReport.check(P, "enqueue without CUDA kernels fails with a logged reason",
                  rc != 0 && gLogger.errorsSince(mark, "enqueue") > 0);
#endif
  }

  // Field variants that must be accepted, and invalid fields that must be rejected.
  auto configOf = [](IPluginV3* p) { return static_cast<asl_edge::trt::TcaAttentionPlugin*>(static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE)))->config(); };
  {
    Fields f;
    f.i64("num_heads", 8).i32("window", 19).f64("theta", 0.5).str("channel_scale", "head", true);
    acceptVariant(P, creator, "INT64/FLOAT64 fields and a NUL-counted string", f, [&](IPluginV3* p) {
      auto c = configOf(p);
      return c.num_heads == 8 && c.window == 19 && c.theta == 0.5f && c.channel_scale == asl_edge::kernels::ChannelScale::kHead;
    });
  }
  {
    Fields f = tcaFields();
    f.remove("channel_scale");
    acceptVariant(P, creator, "a missing channel_scale (default time)", f, [&](IPluginV3* p) {
      return configOf(p).channel_scale == asl_edge::kernels::ChannelScale::kTime;
    });
  }
  {
    Fields f = tcaFields();
    f.i32("plugin_extra", 1);
    acceptVariant(P, creator, "an unknown field (with a warning)", f, nullptr, true);
  }
  {
    Fields f = tcaFields(4, 1, 1.0f);
    acceptVariant(P, creator, "window 1 (global attention) and theta 1", f, nullptr);
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  rejectInvalid(P, creator, [] { return tcaFields(); },
                {{"channel_scale \"tokens\"", [](Fields& f) { f.remove("channel_scale").str("channel_scale", "tokens"); }, "channel_scale"},
                 {"num_heads 0", [](Fields& f) { f.remove("num_heads").i32("num_heads", 0); }, "num_heads"},
                 {"an even window", [](Fields& f) { f.remove("window").i32("window", 4); }, "window"},
                 {"theta 1.5", [](Fields& f) { f.remove("theta").f32("theta", 1.5f); }, "theta"},
                 {"theta NaN", [nan](Fields& f) { f.remove("theta").f32("theta", nan); }, "theta"},
                 {"a missing num_heads", [](Fields& f) { f.remove("num_heads"); }, "num_heads"},
                 {"num_heads given as CHAR", [](Fields& f) { f.remove("num_heads").str("num_heads", "4"); }, "num_heads"},
                 {"a duplicated window", [](Fields& f) { f.i32("window", 9); }, "window"},
                 {"bad channel_scale in kRUNTIME", [](Fields& f) { f.remove("channel_scale").str("channel_scale", "x"); },
                  "channel_scale", TensorRTPhase::kRUNTIME}});

#if ASL_EDGE_WITH_CUDA
  if (gpu) {
    std::mt19937 rng(1234);
    const std::vector<TcaCase> cases = {
        {2, 64, 45, 4, 9, 0.2f, "time", {45, 32}},
        {1, 32, 64, 2, 1, 1.0f, "head", {50}},
        {3, 48, 19, 3, 19, 0.0f, "time", {19, 7, 0}},
        {2, 512, 96, 4, 19, 0.2f, "time", {96, 70}},
    };
    for (TcaCase const& c : cases) {
      for (bool fp16 : {false, true}) {
        std::string detail;
        const bool ok = runTcaEnqueue(creator, c, fp16, rng, detail);
        std::ostringstream name;
        name << "enqueue vs CPU " << (fp16 ? "FP16" : "FP32") << " B=" << c.batch << " D=" << c.channels
             << " T=" << c.length << " heads=" << c.heads << " w=" << c.window << " theta=" << c.theta << " "
             << c.scale;
        gReport.check(P, name.str(), ok, detail);
      }
    }
  }
#else
  (void)gpu;
#endif
}

// =============================================================================================
// AslNms1d
std::vector<std::pair<std::string, PluginFieldType>> nmsFieldSpec() {
  return {{"method", PluginFieldType::kCHAR},          {"iou_threshold", PluginFieldType::kFLOAT32},
          {"sigma", PluginFieldType::kFLOAT32},        {"min_score", PluginFieldType::kFLOAT32},
          {"max_out", PluginFieldType::kINT32},        {"multiclass", PluginFieldType::kINT32},
          {"voting_threshold", PluginFieldType::kFLOAT32}, {"num_classes", PluginFieldType::kINT32}};
}

struct NmsCase {
  std::string method;
  float iou, sigma, minScore;
  int32_t maxOut, multiclass;
  float voting;
  int32_t numClasses, n;
};

Fields nmsFields(NmsCase const& c) {
  Fields f;
  f.str("method", c.method)
      .f32("iou_threshold", c.iou)
      .f32("sigma", c.sigma)
      .f32("min_score", c.minScore)
      .i32("max_out", c.maxOut)
      .i32("multiclass", c.multiclass)
      .f32("voting_threshold", c.voting)
      .i32("num_classes", c.numClasses);
  return f;
}

#if ASL_EDGE_WITH_CUDA
bool runNmsEnqueue(asl_edge::trt::Nms1dCreator& creator, NmsCase const& c, bool fp16, std::mt19937& rng,
                   std::string& detail) {
  Fields f = nmsFields(c);
  const DataType dt = fp16 ? DataType::kHALF : DataType::kFLOAT;
  const int64_t n = c.n, m = c.maxOut;
  std::vector<DynamicPluginTensorDesc> in = {makeDynamic({0, 2}, {n, 2}, {n + 7, 2}, dt), makeDynamic({0}, {n}, {n + 7}, dt),
                                             makeDynamic({0}, {n}, {n + 7}, DataType::kINT32)};
  std::vector<DynamicPluginTensorDesc> out = {makeDynamic({m, 2}, {m, 2}, {m, 2}, dt), makeDynamic({m}, {m}, {m}, dt),
                                              makeDynamic({m}, {m}, {m}, DataType::kINT32),
                                              makeDynamic({1}, {1}, {1}, DataType::kINT32)};
  std::vector<PluginTensorDesc> inD = {makeDesc({n, 2}, dt), makeDesc({n}, dt), makeDesc({n}, DataType::kINT32)};
  std::vector<PluginTensorDesc> outD = {makeDesc({m, 2}, dt), makeDesc({m}, dt), makeDesc({m}, DataType::kINT32),
                                        makeDesc({1}, DataType::kINT32)};
  EnqueueReady ready;
  if (!prepareEnqueue("AslNms1d", creator, "nms_enqueue", f.collection(), in, out, inD, outD, ready, detail)) {
    return false;
  }
  const size_t wsBytes = ready.workspace;

  // Clustered segments so that suppression has work to do; a few exact duplicates for ties.
  std::uniform_real_distribution<float> centre(0.0f, 200.0f), len(1.0f, 25.0f), jitter(-3.0f, 3.0f), score(0.005f, 1.0f);
  std::uniform_int_distribution<int32_t> label(0, c.numClasses - 1), pick(0, 11);
  std::vector<float> centres(12);
  for (float& x : centres) x = centre(rng);
  std::vector<float> seg(2 * n), sc(n);
  std::vector<int32_t> lab(n);
  for (int64_t i = 0; i < n; ++i) {
    const float mid = centres[pick(rng)] + jitter(rng), half = 0.5f * len(rng);
    seg[2 * i] = mid - half;
    seg[2 * i + 1] = mid + half;
    sc[i] = score(rng);
    lab[i] = label(rng);
    if (i % 17 == 5 && i > 0) {  // duplicate an earlier candidate
      seg[2 * i] = seg[2 * (i - 1)];
      seg[2 * i + 1] = seg[2 * (i - 1) + 1];
      sc[i] = sc[i - 1];
    }
    if (fp16) {
      seg[2 * i] = roundToHalf(seg[2 * i]);
      seg[2 * i + 1] = roundToHalf(seg[2 * i + 1]);
      sc[i] = roundToHalf(sc[i]);
    }
  }
  asl_edge::kernels::NmsParams params{};
  params.num_candidates = static_cast<int32_t>(n);
  params.num_classes = c.numClasses;
  params.method = c.method == "hard" ? asl_edge::kernels::NmsMethod::kHard : asl_edge::kernels::NmsMethod::kSoft;
  params.iou_threshold = c.iou;
  params.sigma = c.sigma;
  params.min_score = c.minScore;
  params.max_out = c.maxOut;
  params.multiclass = c.multiclass != 0;
  params.voting_threshold = c.voting;
  std::vector<float> refSeg(2 * m), refSc(m);
  std::vector<int32_t> refLab(m);
  int32_t refCount = -1;
  asl_edge::kernels::nms1d_cpu(params, seg.data(), sc.data(), lab.data(), refSeg.data(), refSc.data(), refLab.data(),
                               &refCount);

  const size_t elem = fp16 ? 2 : 4;
  DeviceBuffer dSeg(2 * n * elem), dSc(n * elem), dLab(n * 4), oSeg(2 * m * elem), oSc(m * elem), oLab(m * 4), oCnt(4),
      dws(wsBytes);
  auto uploadData = [&](DeviceBuffer& d, std::vector<float> const& h) {
    if (!fp16) return d.upload(h.data());
    std::vector<uint16_t> hh(h.size());
    for (size_t i = 0; i < h.size(); ++i) hh[i] = floatToHalf(h[i]);
    return d.upload(hh.data());
  };
  if (!uploadData(dSeg, seg) || !uploadData(dSc, sc) || !dLab.upload(lab.data())) return detail = "upload failed", false;
  for (DeviceBuffer* o : {&oSeg, &oSc, &oLab, &oCnt}) cudaMemset(o->ptr, 0x7f, o->bytes);
  cudaStream_t stream = nullptr;
  cudaStreamCreate(&stream);
  void const* inputs[3] = {dSeg.ptr, dSc.ptr, dLab.ptr};
  void* outputs[4] = {oSeg.ptr, oSc.ptr, oLab.ptr, oCnt.ptr};
  const int32_t rc0 = ready.runtime->enqueue(inD.data(), outD.data(), inputs, outputs, dws.ptr, stream);
  const cudaError_t sync = cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  if (rc0 != 0) return detail = "enqueue returned " + std::to_string(rc0), false;
  if (sync != cudaSuccess) return detail = std::string("stream error: ") + cudaGetErrorString(sync), false;
  std::vector<float> gSeg(2 * m), gSc(m);
  std::vector<int32_t> gLab(m);
  int32_t gCount = -1;
  if (fp16) {
    std::vector<uint16_t> hs(2 * m), hc(m);
    oSeg.download(hs.data());
    oSc.download(hc.data());
    for (int64_t i = 0; i < 2 * m; ++i) gSeg[i] = halfBitsToFloat(hs[i]);
    for (int64_t i = 0; i < m; ++i) gSc[i] = halfBitsToFloat(hc[i]);
  } else {
    oSeg.download(gSeg.data());
    oSc.download(gSc.data());
  }
  oLab.download(gLab.data());
  oCnt.download(&gCount);

  std::ostringstream s;
  s << "N=" << n << " count " << gCount << " (cpu " << refCount << "), workspace " << wsBytes << " B";
  if (gCount != refCount) return detail = s.str() + ": count differs", false;
  double worstScore = 0.0, worstSeg = 0.0;
  for (int64_t i = 0; i < m; ++i) {
    const float rs = fp16 ? roundToHalf(refSc[i]) : refSc[i];
    const float r0 = fp16 ? roundToHalf(refSeg[2 * i]) : refSeg[2 * i];
    const float r1 = fp16 ? roundToHalf(refSeg[2 * i + 1]) : refSeg[2 * i + 1];
    if (gLab[i] != refLab[i]) return detail = s.str() + ": label/order differs at " + std::to_string(i), false;
    const double ds = std::fabs(static_cast<double>(gSc[i]) - rs) / (fp16 ? 1e-3 * std::max(1.0f, std::fabs(rs)) : 1e-5);
    const double dg = std::max(std::fabs(static_cast<double>(gSeg[2 * i]) - r0), std::fabs(static_cast<double>(gSeg[2 * i + 1]) - r1)) /
                      ((fp16 ? 1e-3 : 1e-5) * std::max({1.0f, std::fabs(r0), std::fabs(r1)}));
    worstScore = std::max(worstScore, std::isnan(ds) ? 1e30 : ds);
    worstSeg = std::max(worstSeg, std::isnan(dg) ? 1e30 : dg);
  }
  s << ", max score err/tol " << worstScore << ", max segment err/tol " << worstSeg;
  detail = s.str();
  return worstScore <= 1.0 && worstSeg <= 1.0;
}
#endif

void testNms(bool gpu) {
  const std::string P = "AslNms1d";
  std::printf("== %s\n", P.c_str());
  asl_edge::trt::Nms1dCreator creator;
  checkCreator(P, creator, nmsFieldSpec());
  const NmsCase base{"soft", 0.3f, 0.75f, 0.01f, 200, 0, 0.7f, 20, 1000};  // no field at its default
  Fields fields = nmsFields(base);
  Caps caps;
  std::unique_ptr<IPluginV3> plugin = createForBuild(P, creator, "nms_layer", fields.collection(), caps);
  if (!plugin) return;
  IPluginV3OneBuild* b = caps.build;
  gReport.check(P, "getNbOutputs == 4", b->getNbOutputs() == 4);
  for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
    DataType inT[3] = {t, t, DataType::kINT32};
    DataType outT[4] = {DataType::kINT8, DataType::kINT8, DataType::kINT8, DataType::kINT8};
    gReport.check(P, std::string("getOutputDataTypes ") + asl_edge::trt::dataTypeName(t),
                  b->getOutputDataTypes(outT, 4, inT, 3) == 0 && outT[0] == t && outT[1] == t &&
                      outT[2] == DataType::kINT32 && outT[3] == DataType::kINT32);
  }
  {
    ExprBuilder eb;
    Expr const* N = eb.makeSymbol("N");
    DimsExprs in[3];
    in[0].nbDims = 2;
    in[0].d[0] = N;
    in[0].d[1] = eb.makeConstant(2);
    in[1].nbDims = 1;
    in[1].d[0] = N;
    in[2].nbDims = 1;
    in[2].d[0] = N;
    DimsExprs out[4];
    bool ok = b->getOutputShapes(in, 3, nullptr, 0, out, 4, eb) == 0;
    const std::vector<std::vector<int64_t>> expected = {{200, 2}, {200}, {200}, {1}};
    std::string detail;
    for (int o = 0; ok && o < 4; ++o) {
      ok = out[o].nbDims == static_cast<int32_t>(expected[o].size());
      detail += "(";
      for (int j = 0; ok && j < out[o].nbDims; ++j) {
        int64_t v = -1;
        Expr const* e = dynamic_cast<Expr const*>(out[o].d[j]);
        ok = e != nullptr && e->evaluate({{"N", 4536}}, v) && v == expected[o][j] && out[o].d[j]->isConstant();
        detail += std::to_string(v) + (j + 1 < out[o].nbDims ? "," : "");
      }
      detail += ") ";
    }
    gReport.check(P, "getOutputShapes (max_out, 2), (max_out), (max_out), (1) for symbolic N", ok, detail);
    in[0].d[1] = eb.makeConstant(3);
    gReport.check(P, "getOutputShapes rejects segments (N, 3)", b->getOutputShapes(in, 3, nullptr, 0, out, 4, eb) != 0);
    gReport.check(P, "getOutputShapes used only the public IExprBuilder", eb.foreignExprs() == 0 && eb.sizeTensorCalls() == 0);
  }

  formatMatrix(P, b,
               {{"segments", {DataType::kFLOAT, DataType::kHALF}, -1},
                {"scores", {}, 0},
                {"labels", {DataType::kINT32}, -1},
                {"out_segments", {}, 0},
                {"out_scores", {}, 0},
                {"out_labels", {DataType::kINT32}, -1},
                {"count", {DataType::kINT32}, -1}},
               3);

  auto outputsFor = [](DataType t) {
    return std::vector<DynamicPluginTensorDesc>{
        makeDynamic({200, 2}, {200, 2}, {200, 2}, t), makeDynamic({200}, {200}, {200}, t),
        makeDynamic({200}, {200}, {200}, DataType::kINT32), makeDynamic({1}, {1}, {1}, DataType::kINT32)};
  };
  size_t ws32 = 0, ws16 = 0;
  for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
    std::vector<DynamicPluginTensorDesc> in = {makeDynamic({1, 2}, {1000, 2}, {4536, 2}, t), makeDynamic({1}, {1000}, {4536}, t),
                                               makeDynamic({1}, {1000}, {4536}, DataType::kINT32)};
    auto out = outputsFor(t);
    const std::string tn = asl_edge::trt::dataTypeName(t);
    gReport.check(P, "configurePlugin " + tn + " dynamic N", b->configurePlugin(in.data(), 3, out.data(), 4) == 0);
    (t == DataType::kFLOAT ? ws32 : ws16) = b->getWorkspaceSize(in.data(), 3, out.data(), 4);
  }
  {
    asl_edge::kernels::NmsParams p{4536, 20, asl_edge::kernels::NmsMethod::kSoft, 0.3f, 0.75f, 0.01f, 200, false, 0.7f};
    const size_t kernelWs = asl_edge::kernels::nms1d_cuda_workspace(p);
    const size_t conv = sizeof(float) * (3 * 4536 + 3 * 200);
    gReport.check(P, "getWorkspaceSize FP32 >= kernel workspace at max N", ws32 >= kernelWs,
                  std::to_string(ws32) + " B (kernel " + std::to_string(kernelWs) + " B)");
    gReport.check(P, "getWorkspaceSize FP16 >= kernel workspace + FP32 copies at max N", ws16 >= kernelWs + conv,
                  std::to_string(ws16) + " B");
  }
  {
    auto out = outputsFor(DataType::kFLOAT);
    std::vector<DynamicPluginTensorDesc> in = {makeDynamic({10, 3}, {10, 3}, {10, 3}, DataType::kFLOAT),
                                               makeDynamic({10}, {10}, {10}, DataType::kFLOAT),
                                               makeDynamic({10}, {10}, {10}, DataType::kINT32)};
    gReport.check(P, "configurePlugin rejects segments (N, 3)", b->configurePlugin(in.data(), 3, out.data(), 4) != 0);
    in[0] = makeDynamic({10, 2}, {10, 2}, {10, 2}, DataType::kFLOAT);
    in[1] = makeDynamic({11}, {11}, {11}, DataType::kFLOAT);
    gReport.check(P, "configurePlugin rejects scores of another length", b->configurePlugin(in.data(), 3, out.data(), 4) != 0);
  }

  std::unique_ptr<IPluginV3> attached = roundTrip(P, creator, caps);
  if (attached) {
    auto* rt = static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    std::vector<PluginTensorDesc> in = {makeDesc({777, 2}, DataType::kFLOAT), makeDesc({777}, DataType::kFLOAT),
                                        makeDesc({777}, DataType::kINT32)};
    std::vector<PluginTensorDesc> out = {makeDesc({200, 2}, DataType::kFLOAT), makeDesc({200}, DataType::kFLOAT),
                                         makeDesc({200}, DataType::kINT32), makeDesc({1}, DataType::kINT32)};
    gReport.check(P, "onShapeChange N=777", rt->onShapeChange(in.data(), 3, out.data(), 4) == 0);
    in[2] = makeDesc({776}, DataType::kINT32);
    gReport.check(P, "onShapeChange rejects labels of another length", rt->onShapeChange(in.data(), 3, out.data(), 4) != 0);
#if !ASL_EDGE_WITH_CUDA
    in[2] = makeDesc({777}, DataType::kINT32);
    std::vector<float> host(2 * 777 + 400);
    std::vector<int32_t> ihost(777 + 200);
    void const* inputs[3] = {host.data(), host.data(), ihost.data()};
    void* outputs[4] = {host.data(), host.data(), ihost.data(), ihost.data()};
    const size_t mark = gLogger.messages.size();
    const int32_t rc = rt->enqueue(in.data(), out.data(), inputs, outputs, nullptr, nullptr);
    gReport.check(P, "enqueue without CUDA kernels fails with a logged reason",
                  rc != 0 && gLogger.errorsSince(mark, "enqueue") > 0);
#endif
  }

  auto configOf = [](IPluginV3* p) {
    return static_cast<asl_edge::trt::Nms1dPlugin*>(
               static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE)))
        ->config();
  };
  {
    Fields f;
    f.str("method", "hard", true).i64("max_out", 50).i64("num_classes", 3).f64("iou_threshold", 0.5);
    acceptVariant(P, creator, "only the required fields (+ INT64/FLOAT64 values)", f, [&](IPluginV3* p) {
      auto c = configOf(p);
      return c.method == asl_edge::kernels::NmsMethod::kHard && c.max_out == 50 && c.num_classes == 3 &&
             c.iou_threshold == 0.5f && c.multiclass == 1 && c.voting_threshold == 0.0f;
    });
  }
  {
    NmsCase hard0 = base;
    hard0.method = "hard";
    hard0.sigma = 0.0f;
    acceptVariant(P, creator, "hard NMS with sigma 0", nmsFields(hard0), nullptr);
  }
  rejectInvalid(P, creator, [&] { return nmsFields(base); },
                {{"max_out 0", [](Fields& f) { f.remove("max_out").i32("max_out", 0); }, "max_out"},
                 {"method \"medium\"", [](Fields& f) { f.remove("method").str("method", "medium"); }, "method"},
                 {"num_classes 0", [](Fields& f) { f.remove("num_classes").i32("num_classes", 0); }, "num_classes"},
                 {"multiclass 2", [](Fields& f) { f.remove("multiclass").i32("multiclass", 2); }, "multiclass"},
                 {"soft NMS with sigma 0", [](Fields& f) { f.remove("sigma").f32("sigma", 0.0f); }, "sigma"},
                 {"a missing method", [](Fields& f) { f.remove("method"); }, "method"},
                 {"max_out given as FLOAT32", [](Fields& f) { f.remove("max_out").f32("max_out", 5.0f); }, "max_out"},
                 {"max_out 0 in kRUNTIME", [](Fields& f) { f.remove("max_out").i32("max_out", 0); }, "max_out",
                  TensorRTPhase::kRUNTIME}});

#if ASL_EDGE_WITH_CUDA
  if (gpu) {
    std::mt19937 rng(4321);
    const std::vector<NmsCase> cases = {
        {"soft", 0.1f, 0.5f, 0.001f, 100, 1, 0.0f, 5, 300},  {"hard", 0.5f, 0.5f, 0.0f, 50, 1, 0.0f, 5, 300},
        {"soft", 0.1f, 0.5f, 0.001f, 200, 0, 0.7f, 4, 500},  {"hard", 0.3f, 0.5f, 0.3f, 40, 0, 0.0f, 3, 257},
        {"soft", 0.1f, 0.5f, 0.001f, 200, 1, 0.0f, 20, 2000}, {"soft", 0.1f, 0.9f, 0.001f, 16, 1, 0.0f, 2, 1},
        {"hard", 0.5f, 0.5f, 0.0f, 8, 0, 0.0f, 1, 0},
    };
    for (NmsCase const& c : cases) {
      for (bool fp16 : {false, true}) {
        std::string detail;
        const bool ok = runNmsEnqueue(creator, c, fp16, rng, detail);
        std::ostringstream name;
        name << "enqueue vs CPU " << (fp16 ? "FP16" : "FP32") << " " << c.method
             << (c.multiclass ? " multiclass" : " agnostic") << (c.voting > 0 ? " voting" : "") << " N=" << c.n
             << " max_out=" << c.maxOut;
        gReport.check(P, name.str(), ok, detail);
      }
    }
  }
#else
  (void)gpu;
#endif
}

bool writeJson(std::string const& path, bool gpu) {
  std::ofstream out(path);
  if (!out) return false;
  out << "{\n  \"tensorrt_header_version\": \"" << asl_edge::trt::headerVersion() << "\",\n";
  out << "  \"cmake_header_version\": \"" << ASL_TENSORRT_HEADER_VERSION << "\",\n";
#if ASL_EDGE_WITH_CUDA
  out << "  \"cuda_kernels\": true,\n";
#else
  out << "  \"cuda_kernels\": false,\n";
#endif
  out << "  \"gpu\": " << (gpu ? "true" : "false") << ",\n";
  out << "  \"enqueue\": \"" << jsonEscape(gReport.enqueueStatus) << "\",\n";
  out << "  \"passed\": " << gReport.checks.size() - static_cast<size_t>(gReport.failures()) << ",\n";
  out << "  \"failed\": " << gReport.failures() << ",\n";
  out << "  \"checks\": [\n";
  for (size_t i = 0; i < gReport.checks.size(); ++i) {
    Check const& c = gReport.checks[i];
    out << "    {\"plugin\": \"" << jsonEscape(c.plugin) << "\", \"name\": \"" << jsonEscape(c.name)
        << "\", \"passed\": " << (c.passed ? "true" : "false") << ", \"detail\": \"" << jsonEscape(c.detail) << "\"}"
        << (i + 1 < gReport.checks.size() ? "," : "") << "\n";
  }
  out << "  ]\n}\n";
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  std::string jsonPath;
  bool requireGpu = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) {
      jsonPath = argv[++i];
    } else if (arg == "--require-gpu") {
      requireGpu = true;
    } else if (arg == "--verbose") {
      gVerbose = true;
    } else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--require-gpu] [--verbose]\n", argv[0]);
      return 2;
    }
  }
  HarnessLoggerFinder finder(&gLogger);
  asl_edge::trt::setLoggerFinder(&finder);

  std::printf("asl_edge TensorRT plugin harness: headers %s (NvInferVersion.h %s)\n", ASL_TENSORRT_HEADER_VERSION,
              asl_edge::trt::headerVersion());
  bool gpu = false;
  gReport.enqueueStatus = gpuState(gpu);
  std::printf("enqueue on device: %s\n", gReport.enqueueStatus.c_str());

  testTca(gpu);
  testNms(gpu);

  if (requireGpu && !gpu) gReport.check("harness", "--require-gpu: enqueue ran on a device", false, gReport.enqueueStatus);
  const int failures = gReport.failures();
  std::printf("summary: %zu checks, %zu passed, %d failed; enqueue %s\n", gReport.checks.size(),
              gReport.checks.size() - static_cast<size_t>(failures), failures, gReport.enqueueStatus.c_str());
  if (!jsonPath.empty()) {
    if (writeJson(jsonPath, gpu)) {
      std::printf("report: %s\n", jsonPath.c_str());
    } else {
      std::fprintf(stderr, "could not write %s\n", jsonPath.c_str());
      return 1;
    }
  }
  asl_edge::trt::setLoggerFinder(nullptr);
  return failures == 0 ? 0 : 1;
}
