#include "operator/manager/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>

namespace parallelrun::op::manager {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, FormatsValuesAsPrometheusDoes) {
  struct Case {
    double v;
    const char* text;
  };
  const Case cases[] = {
      {0, "0"},
      {1, "1"},
      {42, "42"},
      {0.005, "0.005"},
      {-2.5, "-2.5"},
      {1e21, "1e+21"},
      {std::numeric_limits<double>::infinity(), "+Inf"},
      {-std::numeric_limits<double>::infinity(), "-Inf"},
      {std::nan(""), "NaN"},
  };
  for (const auto& c : cases) EXPECT_EQ(FormatMetricValue(c.v), c.text) << c.v;
}

TEST(MetricsTest, Escaping) {
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeHelp("a\\b\"c\nd"), "a\\\\b\"c\\nd");
}

TEST(MetricsTest, CountersAndGaugesExposed) {
  Registry r;
  r.GetCounter("reconcile_total", "Reconciles.", {{"controller", "prj"}, {"result", "success"}})
      .Inc();
  r.GetCounter("reconcile_total", "Reconciles.", {{"result", "success"}, {"controller", "prj"}})
      .Inc(2);
  r.GetCounter("reconcile_total", "Reconciles.", {{"controller", "prj"}, {"result", "error"}})
      .Inc();
  Gauge& g = r.GetGauge("jobs", "Jobs by phase.", {{"phase", "Running"}});
  g.Set(5);
  g.Dec();
  r.GetGauge("jobs", "Jobs by phase.", {{"phase", "Pending"}}).Inc(2);
  r.GetGauge("up", "Help with \\ and\nnewline.").Set(1);
  EXPECT_EQ(r.Expose(),
            "# HELP jobs Jobs by phase.\n"
            "# TYPE jobs gauge\n"
            "jobs{phase=\"Pending\"} 2\n"
            "jobs{phase=\"Running\"} 4\n"
            "# HELP reconcile_total Reconciles.\n"
            "# TYPE reconcile_total counter\n"
            "reconcile_total{controller=\"prj\",result=\"error\"} 1\n"
            "reconcile_total{controller=\"prj\",result=\"success\"} 3\n"
            "# HELP up Help with \\\\ and\\nnewline.\n"
            "# TYPE up gauge\n"
            "up 1\n");
}

TEST(MetricsTest, CounterIgnoresNegativeIncrements) {
  Registry r;
  Counter& c = r.GetCounter("c_total", "c");
  c.Inc(3);
  c.Inc(-1);
  EXPECT_EQ(c.Value(), 3);
}

TEST(MetricsTest, SameSeriesIsTheSameObject) {
  Registry r;
  EXPECT_EQ(&r.GetCounter("c_total", "c", {{"a", "1"}, {"b", "2"}}),
            &r.GetCounter("c_total", "c", {{"b", "2"}, {"a", "1"}}));
  EXPECT_NE(&r.GetCounter("c_total", "c", {{"a", "1"}}), &r.GetCounter("c_total", "c", {}));
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Registry r;
  r.GetGauge("g", "g", {{"key", "ns/\"odd\"\\name\n"}}).Set(1);
  EXPECT_THAT(r.Expose(), HasSubstr("g{key=\"ns/\\\"odd\\\"\\\\name\\n\"} 1\n"));
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry r;
  Histogram& h = r.GetHistogram("latency_seconds", "Latency.", {{"c", "x"}}, {0.125, 1, 0.5});
  h.Observe(0.0625);
  h.Observe(0.125);  // bounds are inclusive (le)
  h.Observe(0.75);
  h.Observe(3);
  EXPECT_EQ(r.Expose(),
            "# HELP latency_seconds Latency.\n"
            "# TYPE latency_seconds histogram\n"
            "latency_seconds_bucket{c=\"x\",le=\"0.125\"} 2\n"
            "latency_seconds_bucket{c=\"x\",le=\"0.5\"} 2\n"
            "latency_seconds_bucket{c=\"x\",le=\"1\"} 3\n"
            "latency_seconds_bucket{c=\"x\",le=\"+Inf\"} 4\n"
            "latency_seconds_sum{c=\"x\"} 3.9375\n"
            "latency_seconds_count{c=\"x\"} 4\n");
}

TEST(MetricsTest, HistogramDefaultBuckets) {
  Registry r;
  r.GetHistogram("h", "h").Observe(0.2);
  std::string text = r.Expose();
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"0.005\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"0.25\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"10\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"+Inf\"} 1\n"));
}

TEST(MetricsTest, GaugeFunctionsAreEvaluatedOnScrape) {
  Registry r;
  int depth = 3;
  r.SetGaugeFunction("queue_depth", "Depth.", {{"name", "prj"}}, [&] { return depth; });
  EXPECT_THAT(r.Expose(), HasSubstr("queue_depth{name=\"prj\"} 3\n"));
  depth = 7;
  EXPECT_THAT(r.Expose(), HasSubstr("queue_depth{name=\"prj\"} 7\n"));
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  Counter& c = r.GetCounter("c_total", "c");
  Histogram& h = r.GetHistogram("h", "h");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Inc();
        h.Observe(0.01);
      }
    });
  }
  std::thread scraper([&] {
    for (int i = 0; i < 50; ++i) (void)r.Expose();
  });
  for (auto& t : threads) t.join();
  scraper.join();
  EXPECT_EQ(c.Value(), 40000);
  EXPECT_EQ(h.Get().count, 40000u);
}

using MetricsDeathTest = ::testing::Test;

TEST_F(MetricsDeathTest, MisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Registry r;
        r.GetCounter("x", "x");
        r.GetGauge("x", "x");
      },
      "registered as counter and gauge");
  EXPECT_DEATH(
      {
        Registry r;
        r.GetCounter("bad-name", "x");
      },
      "invalid metric name");
  EXPECT_DEATH(
      {
        Registry r;
        r.GetCounter("x", "x", {{"le", "1"}});
      },
      "invalid label name");
  EXPECT_DEATH(
      {
        Registry r;
        r.GetHistogram("h", "h", {{"a", "1"}}, {1, 2});
        r.GetHistogram("h", "h", {{"a", "2"}}, {1, 3});
      },
      "two bucket layouts");
}

TEST(RegistryTest, FamilyFunctionSeriesComeAndGoWithWhatItReturns) {
  Registry r;
  Registry::Series series = {{{{"namespace", "a"}, {"name", "j1"}}, 3}};
  r.SetGaugeFamilyFunction("parallelrun_job_items", "Items.", [&series] { return series; });
  EXPECT_NE(r.Expose().find("parallelrun_job_items{name=\"j1\",namespace=\"a\"} 3\n"),
            std::string::npos);
  series.clear();  // the job is gone
  const std::string out = r.Expose();
  EXPECT_EQ(out.find("j1"), std::string::npos);
  EXPECT_NE(out.find("# TYPE parallelrun_job_items gauge\n"), std::string::npos);
}

}  // namespace
}  // namespace parallelrun::op::manager
