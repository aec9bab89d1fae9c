#include "runtime/coordinator/error_digest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace parallelrun::rt {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

const char* kTraceback =
    "Traceback (most recent call last):\n"
    "  File \"/job/code/score.py\", line 12, in run\n"
    "    out.append(model.predict(x))\n"
    "  File \"/job/code/lib/model.py\", line 40, in predict\n"
    "    return check(np.mean(v))\n"
    "  File \"/usr/lib/python3/dist-packages/numpy/core/fromnumeric.py\", line 3504, in mean\n"
    "    return _methods._mean(a)\n"
    "ValueError: model returned NaN\n";

TEST(DeepestUserFrame, TakesTheDeepestFrameUnderTheCodeFolder) {
  EXPECT_EQ(DeepestUserFrame(kTraceback, "/job/code"), "lib/model.py:40");
  EXPECT_EQ(DeepestUserFrame(kTraceback, "/job/code/"), "lib/model.py:40");
}

TEST(DeepestUserFrame, WithoutACodeFolderSkipsPythonsLibraries) {
  EXPECT_EQ(DeepestUserFrame(kTraceback, ""), "/job/code/lib/model.py:40");
  EXPECT_EQ(DeepestUserFrame(kTraceback, "/elsewhere"), "/job/code/lib/model.py:40");
}

TEST(DeepestUserFrame, ChainedExceptionsUseTheLastTraceback) {
  std::string text = std::string(kTraceback) +
                     "\nDuring handling of the above exception, another exception occurred:\n\n"
                     "Traceback (most recent call last):\n"
                     "  File \"/job/code/score.py\", line 15, in run\n"
                     "    raise RuntimeError('bad item') from e\n"
                     "RuntimeError: bad item\n";
  EXPECT_EQ(DeepestUserFrame(text, "/job/code"), "score.py:15");
}

TEST(DeepestUserFrame, EmptyWithoutAFrame) {
  EXPECT_EQ(DeepestUserFrame("", "/job/code"), "");
  EXPECT_EQ(DeepestUserFrame("the worker process (pid 7) was killed", "/job/code"), "");
  EXPECT_EQ(DeepestUserFrame("Traceback (most recent call last):\n  File \"<string>\", line 1, "
                             "in <module>\nSyntaxError: x\n",
                             "/job/code"),
            "");
  // A frame line cut short (a truncated detail) is not a frame.
  EXPECT_EQ(DeepestUserFrame("Traceback (most recent call last):\n  File \"/job/code/a.py\", li",
                             "/job/code"),
            "");
}

TEST(ErrorDigest, GroupsByErrorAndLocationAndCountsMiniBatchesOnce) {
  ErrorDigest d("/job/code");
  d.Add("ValueError: model returned NaN", kTraceback, 3, 4, "2026-12-07T10:00:00Z");
  d.Add("ValueError: model returned NaN", kTraceback, 3, 4, "2026-12-07T10:00:01Z");  // retry
  d.Add("ValueError: model returned NaN", kTraceback, 5, 2, "2026-12-07T10:00:02Z");
  // Same text raised elsewhere: its own group.
  d.Add("ValueError: model returned NaN",
        "Traceback (most recent call last):\n  File \"/job/code/score.py\", line 99, in run\n", 6,
        1, "2026-12-07T10:00:03Z");
  ErrorStat top = d.MostFrequent();
  EXPECT_EQ(top.error, "ValueError: model returned NaN");
  EXPECT_EQ(top.location, "lib/model.py:40");
  EXPECT_EQ(top.count, 3);
  EXPECT_EQ(top.mini_batches, 2);
  EXPECT_EQ(top.items, 6);
  EXPECT_EQ(top.last_seen, "2026-12-07T10:00:02Z");
  EXPECT_THAT(d.Recent(), ElementsAre(Field(&ErrorStat::location, "score.py:99"),
                                      Field(&ErrorStat::location, "lib/model.py:40")));
  EXPECT_EQ(DescribeErrorStat(top),
            "ValueError: model returned NaN at lib/model.py:40 (3 failed attempts, 2 "
            "mini-batches, 6 items)");
}

TEST(ErrorDigest, RecentKeepsTheLatestFiveDistinctErrors) {
  ErrorDigest d("/job/code");
  for (int i = 0; i < 8; ++i) {
    d.Add("KeyError: 'k" + std::to_string(i) + "'", "", i, 1, "t" + std::to_string(i));
  }
  d.Add("KeyError: 'k2'", "", 20, 1, "t20");  // seen again: the latest now
  std::vector<ErrorStat> recent = d.Recent();
  ASSERT_EQ(recent.size(), 5u);
  EXPECT_THAT(recent, ElementsAre(Field(&ErrorStat::error, "KeyError: 'k2'"),
                                  Field(&ErrorStat::error, "KeyError: 'k7'"),
                                  Field(&ErrorStat::error, "KeyError: 'k6'"),
                                  Field(&ErrorStat::error, "KeyError: 'k5'"),
                                  Field(&ErrorStat::error, "KeyError: 'k4'")));
  // k2 is the only one seen twice.
  EXPECT_EQ(d.MostFrequent().error, "KeyError: 'k2'");
  EXPECT_EQ(d.MostFrequent().count, 2);
}

TEST(ErrorDigest, StaysBoundedAndKeepsTheFrequentGroups) {
  ErrorDigest d("");
  for (int i = 0; i < 10; ++i) d.Add("OSError: disk", "", i, 1, "t");
  for (size_t i = 0; i < ErrorDigest::kMaxGroups * 2; ++i) {
    d.Add("ValueError: row " + std::to_string(i), "", 100 + static_cast<int64_t>(i), 1, "t");
  }
  EXPECT_EQ(d.MostFrequent().error, "OSError: disk");
  EXPECT_EQ(d.MostFrequent().count, 10);
  EXPECT_EQ(d.Recent().front().error,
            "ValueError: row " + std::to_string(ErrorDigest::kMaxGroups * 2 - 1));
}

TEST(ErrorDigest, ClipsLongErrorsAndInitFailuresCountNoMiniBatch) {
  ErrorDigest d("/job/code");
  d.Add(std::string(2000, 'x'), "", -1, 0, "t");
  ErrorStat top = d.MostFrequent();
  EXPECT_EQ(top.error.size(), ErrorDigest::kMaxErrorChars + 3);
  EXPECT_EQ(top.count, 1);
  EXPECT_EQ(top.mini_batches, 0);
  EXPECT_EQ(DescribeErrorStat(top).substr(top.error.size()), " (1 failed attempt)");
  EXPECT_EQ(MostFrequentErrorSuffix(ErrorDigest("")), "");
}

TEST(ErrorDigest, PutsItsGroupsIntoTheResultAndTheProgress) {
  ErrorDigest d("/job/code");
  d.Add("ValueError: model returned NaN", kTraceback, 0, 3, "2026-12-07T10:00:00Z");
  JobResult r;
  PutErrors(d, &r);
  protocol::Progress p;
  PutErrors(JobResultFromJson(JobResultToJson(r)).value(), &p);
  ASSERT_EQ(p.recentErrors.size(), 1u);
  nlohmann::json j = p.recentErrors[0];
  EXPECT_EQ(j, (nlohmann::json{{"error", "ValueError: model returned NaN"},
                               {"location", "lib/model.py:40"},
                               {"count", 1},
                               {"miniBatches", 1},
                               {"items", 3},
                               {"lastSeen", "2026-12-07T10:00:00Z"}}));
  EXPECT_EQ(p.mostFrequentError.location, "lib/model.py:40");
  EXPECT_THAT(FormatJobResultText(r),
              ::testing::HasSubstr("most_frequent_error: ValueError: model returned NaN at "
                                   "lib/model.py:40 (1 failed attempt, 1 mini-batch, 3 items)\n"));
}

}  // namespace
}  // namespace parallelrun::rt
