// The kubelet against the real in-process API server (no HTTPS): scheduling, pod lifecycle,
// graceful deletion, cordon, FailedMount, ImagePullBackOff, /etc/hosts for Services, PVC
// binding and the Deployment controller's pods.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "tests/cluster/api.h"
#include "tests/cluster/apiserver.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using ::testing::HasSubstr;

const ResourceRef kPods{"", "pods"};
const ResourceRef kEvents{"", "events"};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class KubeletTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    std::ofstream(dir_ / "ca.crt") << "CA\n";
    api_ = std::make_unique<ApiServer>(dir_.string());
    std::string error;
    ASSERT_TRUE(api_->Start(&error)) << error;
    api_->SetKubeletAttached(true);
    KubeletContext ctx;
    ctx.api = api_.get();
    ctx.state_dir = dir_.string();
    ctx.node_name = kNodeName;
    ctx.api_host = "127.0.0.1";
    ctx.api_port = 6443;
    ctx.ca_file = (dir_ / "ca.crt").string();
    ApiServer* api = api_.get();
    ctx.service_account_token = [api](const std::string& ns, const std::string& name) {
      return api->ServiceAccountToken(ns, name);
    };
    kubelet_ = StartKubelet(ctx);
  }

  void TearDown() override {
    if (kubelet_) kubelet_->Stop();
    kubelet_.reset();
    if (api_) api_->Stop();
    api_.reset();
  }

  Json ShellPod(const std::string& name, const std::string& script,
                const std::string& restart_policy = "Never") {
    return {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", name}, {"labels", {{"app", name}}}}},
            {"spec",
             {{"restartPolicy", restart_policy},
              {"terminationGracePeriodSeconds", 10},
              {"containers",
               {{{"name", "main"}, {"image", "busybox"}, {"command", {"sh", "-c", script}}}}}}}};
  }

  Json Create(const ResourceRef& ref, Json obj, const std::string& ns = "default") {
    ApiResult r = api_->Create(ref, ns, std::move(obj));
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.value();
  }

  // Polls `name` until `done(pod)` (nullopt: the pod is gone); returns the last state.
  std::optional<Json> WaitPod(const std::string& name,
                              const std::function<bool(const std::optional<Json>&)>& done,
                              const std::string& ns = "default") {
    std::optional<Json> pod;
    bool met = fakes::WaitFor([&] {
      ApiResult r = api_->Get(kPods, ns, name);
      pod = r.ok() ? std::optional<Json>(r.value()) : std::nullopt;
      return done(pod);
    });
    if (!met) {
      ADD_FAILURE() << "timed out waiting for pod " << name << ": "
                    << (pod ? pod->dump(2) : std::string("(gone)"));
    }
    return pod;
  }

  static bool PhaseIs(const std::optional<Json>& pod, const std::string& phase) {
    return pod && pod->contains("status") && (*pod)["status"].value("phase", "") == phase;
  }

  std::vector<Json> EventsFor(const std::string& uid) {
    ListOptions options;
    options.field_selector = "involvedObject.uid=" + uid;
    ApiResult r = api_->List(kEvents, "", options);
    if (!r.ok()) return {};
    return r.value()["items"].get<std::vector<Json>>();
  }

  bool WaitEvent(const std::string& uid, const std::string& reason,
                 std::string* message = nullptr) {
    return fakes::WaitFor([&] {
      for (const auto& e : EventsFor(uid)) {
        if (e.value("reason", "") == reason) {
          if (message) *message = e.value("message", "");
          return true;
        }
      }
      return false;
    });
  }

  fakes::TempDir tmp_{"kubelet-test"};
  fs::path dir_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<Kubelet> kubelet_;
};

TEST_F(KubeletTest, PodIsScheduledRunsAndReportsExitCodeLogsAndTerminationMessage) {
  Json pod = Create(kPods, ShellPod("p1", "echo hello; echo done > /dev/termination-log; exit 0"));
  auto done = WaitPod("p1", [](const auto& p) { return PhaseIs(p, "Succeeded"); });
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["spec"]["nodeName"], kNodeName);
  const Json& cs = (*done)["status"]["containerStatuses"][0];
  EXPECT_EQ(cs["state"]["terminated"]["exitCode"], 0);
  EXPECT_EQ(cs["state"]["terminated"]["message"], "done\n");
  std::string ip = (*done)["status"].value("podIP", "");
  EXPECT_EQ(ip.rfind("127.", 0), 0u);
  EXPECT_NE(ip.rfind("127.0.0.", 0), 0u);
  EXPECT_EQ(ReadAll((dir_ / "logs/default/p1/main.log").string()), "hello\n");
  std::string uid = pod["metadata"]["uid"];
  EXPECT_TRUE(WaitEvent(uid, "Scheduled"));
  EXPECT_TRUE(WaitEvent(uid, "Started"));
}

TEST_F(KubeletTest, DeleteSendsSigtermThenRemovesThePod) {
  std::string marker = (dir_ / "term").string();
  Create(
      kPods,
      ShellPod("p2", "trap 'echo term > " + marker + "; exit 0' TERM; while :; do sleep 0.05; done",
               "Always"));
  WaitPod("p2", [](const auto& p) { return PhaseIs(p, "Running"); });
  ApiResult r = api_->Delete(kPods, "default", "p2");
  ASSERT_TRUE(r.ok()) << r.error().message;
  WaitPod("p2", [](const auto& p) { return !p.has_value(); });
  EXPECT_EQ(ReadAll(marker), "term\n");
}

TEST_F(KubeletTest, CordonedNodeLeavesNewPodsUnschedulableUntilUncordoned) {
  ApiResult r = api_->Patch({"", "nodes"}, "", kNodeName, "application/merge-patch+json",
                            R"({"spec":{"unschedulable":true}})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  Json pod = Create(kPods, ShellPod("p3", "true"));
  auto pending = WaitPod("p3", [](const auto& p) {
    if (!p || !p->contains("status")) return false;
    for (const auto& c : (*p)["status"].value("conditions", Json::array())) {
      if (c.value("type", "") == "PodScheduled" && c.value("reason", "") == "Unschedulable")
        return true;
    }
    return false;
  });
  ASSERT_TRUE(pending);
  EXPECT_EQ((*pending)["status"]["phase"], "Pending");
  EXPECT_EQ((*pending)["status"]["conditions"][0]["message"],
            "0/1 nodes are available: 1 node(s) were unschedulable.");
  std::string message;
  EXPECT_TRUE(WaitEvent(pod["metadata"]["uid"], "FailedScheduling", &message));
  EXPECT_EQ(message, "0/1 nodes are available: 1 node(s) were unschedulable.");
  api_->Patch({"", "nodes"}, "", kNodeName, "application/merge-patch+json",
              R"({"spec":{"unschedulable":false}})");
  WaitPod("p3", [](const auto& p) { return PhaseIs(p, "Succeeded"); });
}

TEST_F(KubeletTest, MissingConfigMapGivesFailedMountEventOnThePod) {
  Json spec = ShellPod("p4", "cat /etc/cfg/k");
  spec["spec"]["volumes"] = {{{"name", "cfg"}, {"configMap", {{"name", "absent"}}}}};
  spec["spec"]["containers"][0]["volumeMounts"] = {{{"name", "cfg"}, {"mountPath", "/etc/cfg"}}};
  Json pod = Create(kPods, spec);
  std::string message;
  ASSERT_TRUE(WaitEvent(pod["metadata"]["uid"], "FailedMount", &message));
  EXPECT_EQ(message,
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found");
  auto now = WaitPod("p4", [](const auto& p) { return p && p->contains("status"); });
  EXPECT_EQ((*now)["status"]["phase"], "Pending");
  Create({"", "configmaps"}, {{"metadata", {{"name", "absent"}}}, {"data", {{"k", "v"}}}});
  WaitPod("p4", [](const auto& p) { return PhaseIs(p, "Succeeded"); });
}

TEST_F(KubeletTest, ImageTagMissingGivesImagePullBackOff) {
  Json spec = ShellPod("p5", "true");
  spec["spec"]["containers"][0]["image"] = "busybox:missing";
  Create(kPods, spec);
  auto pod = WaitPod("p5", [](const auto& p) {
    if (!p || !p->contains("status") || !(*p)["status"].contains("containerStatuses")) return false;
    return (*p)["status"]["containerStatuses"][0]["state"]["waiting"].value("reason", "") ==
           "ImagePullBackOff";
  });
  EXPECT_EQ((*pod)["status"]["phase"], "Pending");
}

TEST_F(KubeletTest, HeadlessServiceResolvesToItsReadyPodsInEtcHosts) {
  Json server = ShellPod("db-0", "while :; do sleep 0.05; done", "Always");
  server["metadata"]["labels"] = {{"app", "db"}};
  Create(kPods, server);
  Create({"", "services"},
         {{"metadata", {{"name", "db"}}},
          {"spec",
           {{"clusterIP", "None"}, {"selector", {{"app", "db"}}}, {"ports", {{{"port", 5432}}}}}}});
  auto running = WaitPod("db-0", [](const auto& p) { return PhaseIs(p, "Running"); });
  std::string db_ip = (*running)["status"]["podIP"];
  // The client waits until its hosts file knows the service (it is rewritten in place).
  Create(kPods,
         ShellPod("client",
                  "until grep -q ' *db.default.svc.cluster.local' /etc/hosts; do sleep 0.05; done; "
                  "getent hosts db.default.svc.cluster.local"));
  WaitPod("client", [](const auto& p) { return PhaseIs(p, "Succeeded"); });
  EXPECT_THAT(ReadAll((dir_ / "logs/default/client/main.log").string()), HasSubstr(db_ip));
}

TEST_F(KubeletTest, PersistentVolumeClaimsAreBoundAndBackedByAFolder) {
  Create({"", "persistentvolumeclaims"},
         Json::parse(R"({"metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],
                         "resources":{"requests":{"storage":"1Gi"}}}})"));
  Json spec = ShellPod("p6", "echo saved > /mnt/data/out.txt");
  spec["spec"]["volumes"] = {{{"name", "d"}, {"persistentVolumeClaim", {{"claimName", "data"}}}}};
  spec["spec"]["containers"][0]["volumeMounts"] = {{{"name", "d"}, {"mountPath", "/mnt/data"}}};
  Create(kPods, spec);
  WaitPod("p6", [](const auto& p) { return PhaseIs(p, "Succeeded"); });
  EXPECT_EQ(ReadAll((dir_ / "volumes/default/data/out.txt").string()), "saved\n");
  ApiResult claim = api_->Get({"", "persistentvolumeclaims"}, "default", "data");
  ASSERT_TRUE(claim.ok());
  EXPECT_EQ(claim.value()["status"]["phase"], "Bound");
}

TEST_F(KubeletTest, StopKillsEveryPodProcess) {
  std::string pid_file = (dir_ / "pid").string();
  // "$$$$": $$ is the escape of $ in commands, as on a real cluster.
  Create(kPods,
         ShellPod("p7", "echo $$$$ > " + pid_file + "; trap '' TERM; while :; do sleep 0.05; done",
                  "Always"));
  WaitPod("p7", [&](const auto&) { return !ReadAll(pid_file).empty(); });
  std::string text = ReadAll(pid_file);
  ASSERT_FALSE(text.empty()) << ReadAll((dir_ / "logs/default/p7/main.log").string())
                             << api_->Get(kPods, "default", "p7").value().dump(2);
  pid_t pid = std::stoi(text);
  kubelet_->Stop();
  EXPECT_NE(kill(pid, 0), 0);
  EXPECT_TRUE(fs::is_empty(dir_ / "kubelet/pids"));
}

}  // namespace
}  // namespace parallelrun::rt::cluster
