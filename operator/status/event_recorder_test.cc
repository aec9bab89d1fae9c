#include "operator/status/event_recorder.h"

#include <gtest/gtest.h>

#include "operator/kube/fake_client.h"

namespace parallelrun::op::status {
namespace {

using nlohmann::json;

const ObjectRef kJob{"parallelrun.io/v1alpha1", "ParallelRunJob", "team-a", "score", "u-1", "7"};

json Events(kube::FakeClient& client) {
  auto list = client.List(kube::resources::kEvents, "team-a", {});
  EXPECT_TRUE(list.ok());
  return list.ok() ? (*list)["items"] : json::array();
}

TEST(KubeEventRecorderTest, AnIdenticalEventIsCountedOnTheFirstNotWrittenAgain) {
  kube::FakeClient client({.namespaces = {"team-a"}});
  KubeEventRecorder recorder(client, rt::RealClock::Get());
  recorder.Record(kJob, "Normal", "Started", "coordinator score-coordinator is running");
  recorder.Record(kJob, "Normal", "Started", "coordinator score-coordinator is running");
  recorder.Record(kJob, "Warning", "Failed", "x");
  json events = Events(client);
  ASSERT_EQ(events.size(), 2u);
  for (const json& e : events) {
    EXPECT_EQ(e["count"], e["reason"] == "Started" ? 2 : 1) << e.dump();
    EXPECT_EQ(e["involvedObject"]["uid"], "u-1");
  }
  EXPECT_EQ(client.CallCount("create", "events"), 2);
  EXPECT_EQ(client.CallCount("patch", "events"), 1);
}

TEST(KubeEventRecorderTest, AGoneEventIsCreatedAgain) {
  kube::FakeClient client({.namespaces = {"team-a"}});
  KubeEventRecorder recorder(client, rt::RealClock::Get());
  recorder.Record(kJob, "Normal", "Resumed", "job resumed");
  const std::string name = Events(client)[0]["metadata"]["name"];
  ASSERT_TRUE(client.Delete(kube::resources::kEvents, "team-a", name).ok());
  recorder.Record(kJob, "Normal", "Resumed", "job resumed");
  json events = Events(client);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["count"], 1);
}

TEST(KubeEventRecorderTest, AnotherObjectOrMessageIsAnotherEvent) {
  kube::FakeClient client({.namespaces = {"team-a"}});
  KubeEventRecorder recorder(client, rt::RealClock::Get());
  ObjectRef other = kJob;
  other.uid = "u-2";
  recorder.Record(kJob, "Normal", "Started", "a");
  recorder.Record(other, "Normal", "Started", "a");
  recorder.Record(kJob, "Normal", "Started", "b");
  EXPECT_EQ(Events(client).size(), 3u);
}

}  // namespace
}  // namespace parallelrun::op::status
