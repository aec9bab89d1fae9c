#include "operator/manager/metrics.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace parallelrun::op::manager {
namespace {

enum Type { kCounter, kGauge, kHistogram };
const char* TypeName(int t) {
  switch (t) {
    case kCounter:
      return "counter";
    case kGauge:
      return "gauge";
    default:
      return "histogram";
  }
}

[[noreturn]] void Misuse(const std::string& what) {
  spdlog::critical("metrics registry misuse: {}", what);
  std::fprintf(stderr, "metrics registry misuse: %s\n", what.c_str());
  std::abort();
}

bool ValidName(const std::string& s, bool allow_colon) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Sorted by label name; names validated (`le` is reserved for histogram buckets).
Labels Canonical(const std::string& metric, Labels labels) {
  for (const auto& [k, v] : labels) {
    if (!ValidName(k, false) || k.rfind("__", 0) == 0 || k == "le") {
      Misuse("invalid label name \"" + k + "\" on " + metric);
    }
  }
  std::sort(labels.begin(), labels.end());
  for (size_t i = 1; i < labels.size(); ++i) {
    if (labels[i].first == labels[i - 1].first) {
      Misuse("duplicate label \"" + labels[i].first + "\" on " + metric);
    }
  }
  return labels;
}

std::string RenderLabels(const Labels& labels, const std::string& le = "") {
  if (labels.empty() && le.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ",";
    first = false;
    out += k + "=\"" + EscapeLabelValue(v) + "\"";
  }
  if (!le.empty()) out += std::string(first ? "" : ",") + "le=\"" + le + "\"";
  return out + "}";
}

void AtomicAdd(std::atomic<double>& a, double v) {
  double cur = a.load();
  while (!a.compare_exchange_weak(cur, cur + v)) {
  }
}

}  // namespace

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Counter::Inc(double v) {
  if (v < 0 || std::isnan(v)) return;
  AtomicAdd(value_, v);
}

void Gauge::Inc(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  if (!bounds_.empty() && std::isinf(bounds_.back())) bounds_.pop_back();
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::Observe(double v) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::Get() const {
  Snapshot s;
  std::lock_guard<std::mutex> lock(mu_);
  s.bounds = bounds_;
  uint64_t acc = 0;
  for (uint64_t c : counts_) {
    acc += c;
    s.cumulative.push_back(acc);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

struct Registry::Family {
  int type;
  std::string help;
  std::vector<double> buckets;  // histograms
  std::map<Labels, std::unique_ptr<Counter>> counters;
  std::map<Labels, std::unique_ptr<Gauge>> gauges;
  std::map<Labels, std::function<double()>> gauge_fns;
  std::function<Registry::Series()> family_fn;
  std::map<Labels, std::unique_ptr<Histogram>> histograms;
};

Registry::Registry() = default;
Registry::~Registry() = default;

std::vector<double> Registry::DefaultBuckets() {
  return {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
}

Registry::Family& Registry::FamilyFor(const std::string& name, const std::string& help, int type) {
  if (!ValidName(name, true)) Misuse("invalid metric name \"" + name + "\"");
  auto& slot = families_[name];
  if (!slot) {
    slot = std::make_unique<Family>();
    slot->type = type;
    slot->help = help;
  } else if (slot->type != type) {
    Misuse(name + " registered as " + TypeName(slot->type) + " and " + TypeName(type));
  }
  return *slot;
}

Counter& Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = FamilyFor(name, help, kCounter).counters[Canonical(name, labels)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Registry::GetGauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Labels key = Canonical(name, labels);
  Family& f = FamilyFor(name, help, kGauge);
  if (f.gauge_fns.count(key)) Misuse(name + " series is already a gauge function");
  auto& slot = f.gauges[key];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

void Registry::SetGaugeFunction(const std::string& name, const std::string& help,
                                const Labels& labels, std::function<double()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  Labels key = Canonical(name, labels);
  Family& f = FamilyFor(name, help, kGauge);
  if (f.gauges.count(key)) Misuse(name + " series is already a plain gauge");
  f.gauge_fns[key] = std::move(fn);
}

void Registry::SetGaugeFamilyFunction(const std::string& name, const std::string& help,
                                      std::function<Series()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  FamilyFor(name, help, kGauge).family_fn = std::move(fn);
}

Histogram& Registry::GetHistogram(const std::string& name, const std::string& help,
                                  const Labels& labels, const std::vector<double>& buckets) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = FamilyFor(name, help, kHistogram);
  Histogram probe(buckets);  // normalises the layout for comparison
  std::vector<double> layout = probe.Get().bounds;
  if (f.histograms.empty()) {
    f.buckets = layout;
  } else if (f.buckets != layout) {
    Misuse(name + " registered with two bucket layouts");
  }
  auto& slot = f.histograms[Canonical(name, labels)];
  if (!slot) slot = std::make_unique<Histogram>(layout);
  return *slot;
}

std::string Registry::Expose() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + EscapeHelp(f->help) + "\n";
    out += "# TYPE " + name + " " + TypeName(f->type) + "\n";
    for (const auto& [labels, c] : f->counters) {
      out += name + RenderLabels(labels) + " " + FormatMetricValue(c->Value()) + "\n";
    }
    // Plain gauges and gauge functions together, in label order.
    std::map<Labels, double> gauges;
    for (const auto& [labels, g] : f->gauges) gauges[labels] = g->Value();
    for (const auto& [labels, fn] : f->gauge_fns) gauges[labels] = fn();
    if (f->family_fn) {
      for (auto& [labels, v] : f->family_fn()) gauges[Canonical(name, labels)] = v;
    }
    for (const auto& [labels, v] : gauges) {
      out += name + RenderLabels(labels) + " " + FormatMetricValue(v) + "\n";
    }
    for (const auto& [labels, h] : f->histograms) {
      Histogram::Snapshot s = h->Get();
      for (size_t i = 0; i < s.bounds.size(); ++i) {
        out += name + "_bucket" + RenderLabels(labels, FormatMetricValue(s.bounds[i])) + " " +
               std::to_string(s.cumulative[i]) + "\n";
      }
      out += name + "_bucket" + RenderLabels(labels, "+Inf") + " " + std::to_string(s.count) + "\n";
      out += name + "_sum" + RenderLabels(labels) + " " + FormatMetricValue(s.sum) + "\n";
      out += name + "_count" + RenderLabels(labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace parallelrun::op::manager
