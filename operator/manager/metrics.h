// A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4).
//
// Guarantees: metric objects live as long as the registry and are never moved, so callers keep the
// references Get*() returns; updates are lock-free (counters, gauges) or take a short per-metric
// lock (histograms); Expose() is consistent per series and safe to call concurrently with
// updates. Series are identified by name and label set, whatever order labels are given in.
// Output: families sorted by name, each with `# HELP` (backslash and newline escaped) and
// `# TYPE`, series sorted by labels, label values escaped (backslash, quote, newline), values as
// Go's strconv 'g' would print them (+Inf, -Inf, NaN).
// Caveats: a name used with two types, a histogram family with two bucket layouts, or an invalid
// metric/label name is a programming error and aborts with a message.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace parallelrun::op::manager {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Inc(double v = 1);  // v >= 0 (negative increments are ignored: counters only go up)
  double Value() const { return value_.load(); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v); }
  void Inc(double v = 1);
  void Dec(double v = 1) { Inc(-v); }
  double Value() const { return value_.load(); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // upper bounds, sorted; +Inf is implicit
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Get() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), last = above every bound
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Counter& GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const Labels& labels = {},
                          const std::vector<double>& buckets = DefaultBuckets());
  // A gauge computed when scraped (queue depth and the like); replaces an earlier function for
  // the same series. `fn` runs on the scraping thread under the registry's lock, so it must not
  // use the registry.
  void SetGaugeFunction(const std::string& name, const std::string& help, const Labels& labels,
                        std::function<double()> fn);

  // A whole gauge family computed when scraped, one series per returned label set: series
  // come and go with what `fn` returns (per-job gauges that vanish with the job). Replaces an
  // earlier family function of that name; `fn` runs under the registry's lock, like
  // SetGaugeFunction's.
  using Series = std::vector<std::pair<Labels, double>>;
  void SetGaugeFamilyFunction(const std::string& name, const std::string& help,
                              std::function<Series()> fn);

  std::string Expose() const;

  // Prometheus client_golang's DefBuckets: .005 … 10 seconds.
  static std::vector<double> DefaultBuckets();

 private:
  struct Family;
  Family& FamilyFor(const std::string& name, const std::string& help, int type);
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;
};

// Value formatting and escaping of the exposition format (exposed for tests).
std::string FormatMetricValue(double v);
std::string EscapeLabelValue(const std::string& v);
std::string EscapeHelp(const std::string& help);

}  // namespace parallelrun::op::manager
