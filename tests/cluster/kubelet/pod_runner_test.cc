#include "tests/cluster/kubelet/pod_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class PodRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    std::ofstream(dir_ / "ca.crt") << "CA PEM\n";
  }
  void TearDown() override { runner_.reset(); }

  RunnerConfig Config() {
    RunnerConfig config;
    config.state_dir = dir_.string();
    config.view.get = [this](const std::string& resource, const std::string& ns,
                             const std::string& name) -> std::optional<Json> {
      auto it = objects_.find(resource + "/" + ns + "/" + name);
      if (it == objects_.end()) return std::nullopt;
      return it->second;
    };
    config.view.service_account_token = [](const std::string& ns, const std::string& name) {
      return "token-of-" + ns + "-" + name;
    };
    config.view.ca_file = (dir_ / "ca.crt").string();
    config.view.api_host = "127.0.0.1";
    config.view.api_port = 6443;
    config.view.node_name = "node-1";
    config.base_env = {"PATH=/usr/bin:/bin"};
    config.search_path = "/usr/bin:/bin";
    config.backoff_initial = milliseconds(50);
    config.backoff_max = milliseconds(200);
    return config;
  }

  // A pod running `script` with sh in container "main".
  Json ShellPod(const std::string& script, const std::string& restart_policy = "Never") {
    Json pod = {
        {"metadata",
         {{"name", "p1"}, {"namespace", "team"}, {"uid", "uid-1"}, {"labels", {{"app", "demo"}}}}},
        {"spec",
         {{"restartPolicy", restart_policy},
          {"nodeName", "node-1"},
          {"containers",
           {{{"name", "main"}, {"image", "busybox:1.36"}, {"command", {"sh", "-c", script}}}}}}}};
    return pod;
  }

  void Start(const Json& pod, const std::string& ip = "127.0.1.5") {
    runner_ = std::make_unique<PodRunner>(Config(), pod, ip);
  }

  // Drives the runner until `done(status)` or a generous deadline; returns the last status.
  Json SyncUntil(const std::function<bool(const Json&)>& done,
                 std::chrono::seconds limit = std::chrono::seconds(30)) {
    auto deadline = steady_clock::now() + limit;
    Json status;
    while (true) {
      auto next = runner_->Sync();
      status = runner_->Status();
      auto events = runner_->TakeEvents();
      events_.insert(events_.end(), events.begin(), events.end());
      if (done(status)) return status;
      if (steady_clock::now() > deadline) {
        ADD_FAILURE() << "timed out; last status " << status.dump(2);
        return status;
      }
      std::this_thread::sleep_until(std::min(next, steady_clock::now() + milliseconds(20)));
    }
  }

  Json RunToEnd() {
    return SyncUntil([this](const Json&) { return runner_->Stopped(); });
  }

  bool HasEvent(const std::string& reason, const std::string& message_part = "") {
    for (const auto& e : events_) {
      if (e.reason == reason && e.message.find(message_part) != std::string::npos) return true;
    }
    return false;
  }

  static Json MainStatus(const Json& status) { return status["containerStatuses"][0]; }

  fakes::TempDir tmp_{"pod-runner-test"};
  fs::path dir_;
  std::map<std::string, Json> objects_;
  std::unique_ptr<PodRunner> runner_;
  std::vector<PodEvent> events_;
};

TEST_F(PodRunnerTest, ShellPodSucceedsWithLogsExitCodeAndTerminationMessage) {
  Start(ShellPod("echo hello; echo oops >&2; echo 'all done' > /dev/termination-log"));
  Json status = RunToEnd();
  EXPECT_EQ(status["phase"], "Succeeded");
  Json terminated = MainStatus(status)["state"]["terminated"];
  EXPECT_EQ(terminated["exitCode"], 0);
  EXPECT_EQ(terminated["reason"], "Completed");
  EXPECT_EQ(terminated["message"], "all done\n");
  EXPECT_TRUE(terminated.contains("startedAt"));
  EXPECT_TRUE(terminated.contains("finishedAt"));
  EXPECT_EQ(status["podIP"], "127.0.1.5");
  EXPECT_EQ(status["hostIP"], "127.0.0.1");
  EXPECT_EQ(ReadAll((dir_ / "logs/team/p1/main.log").string()), "hello\noops\n");
  EXPECT_TRUE(HasEvent("Started", "Started container main"));
  for (const auto& c : status["conditions"]) {
    if (c["type"] == "Ready") {
      EXPECT_EQ(c["status"], "False");
      EXPECT_EQ(c["reason"], "PodCompleted");
    }
  }
}

TEST_F(PodRunnerTest, FailingContainerWithRestartNeverFailsThePod) {
  Start(ShellPod("echo 'bad input' > /dev/termination-log; exit 3"));
  Json status = RunToEnd();
  EXPECT_EQ(status["phase"], "Failed");
  Json terminated = MainStatus(status)["state"]["terminated"];
  EXPECT_EQ(terminated["exitCode"], 3);
  EXPECT_EQ(terminated["reason"], "Error");
  EXPECT_EQ(terminated["message"], "bad input\n");
  EXPECT_EQ(MainStatus(status)["restartCount"], 0);
}

TEST_F(PodRunnerTest, FallbackToLogsOnErrorUsesTheLogTail) {
  Json pod = ShellPod("echo first; echo last words; exit 1");
  pod["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError";
  pod["spec"]["containers"][0]["terminationMessagePath"] = "/opt/pr-kubelet-test/termination";
  Start(pod);
  Json status = RunToEnd();
  EXPECT_EQ(MainStatus(status)["state"]["terminated"]["message"], "first\nlast words\n");
}

TEST_F(PodRunnerTest, OnFailureRestartsWithBackOffUntilSuccess) {
  Json pod = ShellPod(
      "n=$(cat /work/n 2>/dev/null || echo 0); echo $((n+1)) > /work/n; echo run $n; "
      "[ $n -ge 2 ]",
      "OnFailure");
  pod["spec"]["volumes"] = {{{"name", "work"}, {"emptyDir", Json::object()}}};
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "work"}, {"mountPath", "/work"}}};
  Start(pod);
  Json status = RunToEnd();
  EXPECT_EQ(status["phase"], "Succeeded");
  EXPECT_EQ(MainStatus(status)["restartCount"], 2);
  EXPECT_EQ(MainStatus(status)["lastState"]["terminated"]["exitCode"], 1);
  EXPECT_EQ(ReadAll((dir_ / "logs/team/p1/main.log").string()), "run 2\n");
  EXPECT_EQ(ReadAll((dir_ / "logs/team/p1/main.previous.log").string()), "run 1\n");
  EXPECT_TRUE(HasEvent("BackOff", "Back-off restarting failed container main"));
}

TEST_F(PodRunnerTest, AlwaysRestartKeepsThePodRunning) {
  Start(ShellPod("exit 0", "Always"));
  Json status = SyncUntil(
      [](const Json& s) { return s["containerStatuses"][0]["restartCount"].get<int>() >= 2; });
  EXPECT_EQ(status["phase"], "Running");
}

TEST_F(PodRunnerTest, VolumesEnvAndServiceAccountAreVisibleInside) {
  objects_["configmaps/team/settings"] = {{"data", {{"mode", "fast"}, {"other", "x"}}}};
  objects_["secrets/team/creds"] = {{"data", {{"password", "czNjcjN0"}}}};
  objects_["persistentvolumeclaims/team/data"] = Json::object();
  fs::create_directories(dir_ / "host-code");
  std::ofstream(dir_ / "host-code" / "run.sh") << "echo code";
  std::string results = (dir_ / "results").string();
  fs::create_directories(results);
  Json pod = ShellPod(
      "set -e; R=/results; cat /etc/cfg/renamed > $R/cfg; cat /etc/secret/password > $R/secret; "
      "ls /etc/cfg > $R/cfg-list; cat /mnt/code/run.sh > $R/code; echo out > /mnt/output/o.txt; "
      "cat /var/run/secrets/kubernetes.io/serviceaccount/token > $R/token; "
      "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace > $R/ns; "
      "echo \"$POD_IP $POD_NAME $MODE $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT\" > "
      "$R/env; "
      "pwd > $R/pwd; hostname > $R/hostname; grep p1 /etc/hosts > $R/hosts");
  pod["spec"]["serviceAccountName"] = "runner";
  pod["spec"]["volumes"] = Json::parse(R"([
    {"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "renamed"}]}},
    {"name": "sec", "secret": {"secretName": "creds"}},
    {"name": "code", "hostPath": {"path": ")" +
                                       (dir_ / "host-code").string() + R"("}},
    {"name": "results", "hostPath": {"path": ")" +
                                       results + R"("}},
    {"name": "out", "persistentVolumeClaim": {"claimName": "data"}}
  ])");
  pod["spec"]["containers"][0]["workingDir"] = "/mnt/output";
  pod["spec"]["containers"][0]["volumeMounts"] = Json::parse(R"([
    {"name": "cfg", "mountPath": "/etc/cfg"},
    {"name": "sec", "mountPath": "/etc/secret"},
    {"name": "code", "mountPath": "/mnt/code", "readOnly": true},
    {"name": "results", "mountPath": "/results"},
    {"name": "out", "mountPath": "/mnt/output", "subPath": "job-1"}
  ])");
  pod["spec"]["containers"][0]["env"] = Json::parse(R"([
    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}
  ])");
  Start(pod);
  Json status = RunToEnd();
  ASSERT_EQ(status["phase"], "Succeeded") << ReadAll((dir_ / "logs/team/p1/main.log").string());
  EXPECT_EQ(ReadAll(results + "/cfg"), "fast");
  EXPECT_EQ(ReadAll(results + "/cfg-list"), "renamed\n");
  EXPECT_EQ(ReadAll(results + "/secret"), "s3cr3t");
  EXPECT_EQ(ReadAll(results + "/code"), "echo code");
  EXPECT_EQ(ReadAll(results + "/token"), "token-of-team-runner");
  EXPECT_EQ(ReadAll(results + "/ns"), "team");
  EXPECT_EQ(ReadAll(results + "/env"), "127.0.1.5 p1 fast 127.0.0.1:6443\n");
  EXPECT_EQ(ReadAll(results + "/pwd"), "/mnt/output\n");
  EXPECT_EQ(ReadAll(results + "/hostname"), "p1\n");
  EXPECT_EQ(ReadAll(results + "/hosts"), "127.0.1.5\tp1\n");
  EXPECT_EQ(ReadAll((dir_ / "volumes/team/data/job-1/o.txt").string()), "out\n");
}

TEST_F(PodRunnerTest, MissingConfigMapGivesFailedMountUntilItAppears) {
  Json pod = ShellPod("cat /etc/cfg/k");
  pod["spec"]["volumes"] = {{{"name", "cfg"}, {"configMap", {{"name", "later"}}}}};
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "cfg"}, {"mountPath", "/etc/cfg"}}};
  Start(pod);
  Json status = SyncUntil([this](const Json&) { return HasEvent("FailedMount"); });
  EXPECT_EQ(status["phase"], "Pending");
  EXPECT_TRUE(
      HasEvent("FailedMount",
               "MountVolume.SetUp failed for volume \"cfg\" : configmap \"later\" not found"));
  EXPECT_EQ(MainStatus(status)["state"]["waiting"]["reason"], "ContainerCreating");
  EXPECT_FALSE(status.contains("podIP"));
  objects_["configmaps/team/later"] = {{"data", {{"k", "v"}}}};
  status = RunToEnd();
  EXPECT_EQ(status["phase"], "Succeeded");
  EXPECT_EQ(ReadAll((dir_ / "logs/team/p1/main.log").string()), "v");
}

TEST_F(PodRunnerTest, OptionalMissingSecretAndConfigMapAreEmpty) {
  Json pod = ShellPod("ls -A /etc/s | wc -l");
  pod["spec"]["volumes"] =
      Json::parse(R"([{"name": "s", "secret": {"secretName": "nope", "optional": true}}])");
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "s"}, {"mountPath", "/etc/s"}}};
  Start(pod);
  EXPECT_EQ(RunToEnd()["phase"], "Succeeded");
}

TEST_F(PodRunnerTest, MissingPvcGivesFailedMount) {
  Json pod = ShellPod("true");
  pod["spec"]["volumes"] = {{{"name", "out"}, {"persistentVolumeClaim", {{"claimName", "nope"}}}}};
  Start(pod);
  SyncUntil([this](const Json&) { return HasEvent("FailedMount"); });
  EXPECT_TRUE(HasEvent("FailedMount", "persistentvolumeclaim \"nope\" not found"));
}

TEST_F(PodRunnerTest, ImageTagMissingGivesImagePullBackOffAndThePodStaysPending) {
  Json pod = ShellPod("true");
  pod["spec"]["containers"][0]["image"] = "example.com/tool:missing";
  Start(pod);
  Json status = SyncUntil([](const Json& s) {
    return s["containerStatuses"][0]["state"]["waiting"].value("reason", "") == "ImagePullBackOff";
  });
  EXPECT_EQ(status["phase"], "Pending");
  EXPECT_TRUE(HasEvent("Failed", "Error: ErrImagePull"));
  EXPECT_TRUE(HasEvent("BackOff", "Back-off pulling image \"example.com/tool:missing\""));
  EXPECT_FALSE(runner_->Stopped());
}

TEST_F(PodRunnerTest, UnknownCommandIsAStartError) {
  Json pod = ShellPod("true");
  pod["spec"]["containers"][0]["command"] = {"no-such-binary-xyz"};
  Start(pod);
  Json status = RunToEnd();
  EXPECT_EQ(status["phase"], "Failed");
  Json terminated = MainStatus(status)["state"]["terminated"];
  EXPECT_EQ(terminated["reason"], "StartError");
  EXPECT_EQ(terminated["exitCode"], 128);
  EXPECT_THAT(terminated["message"].get<std::string>(), HasSubstr("executable file not found"));
}

TEST_F(PodRunnerTest, TerminateSendsSigtermToTheProcessGroup) {
  std::string marker = (dir_ / "got-term").string();
  Json pod = ShellPod(
      "trap 'echo term > " + marker + "; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
      "Always");
  Start(pod);
  SyncUntil([this](const Json& s) {
    return s["phase"] == "Running" &&
           ReadAll((dir_ / "logs/team/p1/main.log").string()) == "ready\n";
  });
  runner_->Terminate(30);
  RunToEnd();
  EXPECT_EQ(ReadAll(marker), "term\n");
  EXPECT_TRUE(HasEvent("Killing", "Stopping container main"));
}

TEST_F(PodRunnerTest, TerminateEscalatesToSigkillAfterTheGracePeriod) {
  Json pod = ShellPod("trap '' TERM; echo ready; while :; do sleep 0.05; done", "Always");
  Start(pod);
  SyncUntil([this](const Json&) {
    return ReadAll((dir_ / "logs/team/p1/main.log").string()) == "ready\n";
  });
  auto start = steady_clock::now();
  runner_->Terminate(1);
  Json status = RunToEnd();
  EXPECT_GE(steady_clock::now() - start, milliseconds(900));
  Json terminated = MainStatus(status)["state"]["terminated"];
  EXPECT_EQ(terminated["exitCode"], 137);
  EXPECT_EQ(terminated["signal"], SIGKILL);
}

TEST_F(PodRunnerTest, InitContainersRunFirstInOrder) {
  Json pod = ShellPod("cat /work/order");
  pod["spec"]["volumes"] = {{{"name", "work"}, {"emptyDir", Json::object()}}};
  Json mounts = {{{"name", "work"}, {"mountPath", "/work"}}};
  pod["spec"]["containers"][0]["volumeMounts"] = mounts;
  pod["spec"]["initContainers"] = {{{"name", "one"},
                                    {"image", "busybox"},
                                    {"command", {"sh", "-c", "echo one >> /work/order"}},
                                    {"volumeMounts", mounts}},
                                   {{"name", "two"},
                                    {"image", "busybox"},
                                    {"command", {"sh", "-c", "echo two >> /work/order"}},
                                    {"volumeMounts", mounts}}};
  Start(pod);
  Json status = RunToEnd();
  EXPECT_EQ(status["phase"], "Succeeded");
  EXPECT_EQ(ReadAll((dir_ / "logs/team/p1/main.log").string()), "one\ntwo\n");
  EXPECT_EQ(status["initContainerStatuses"][1]["state"]["terminated"]["reason"], "Completed");
}

TEST_F(PodRunnerTest, FailedInitContainerWithRestartNeverFailsThePod) {
  Json pod = ShellPod("echo should-not-run");
  pod["spec"]["initContainers"] = {
      {{"name", "init"}, {"image", "busybox"}, {"command", {"sh", "-c", "exit 4"}}}};
  Start(pod);
  Json status = RunToEnd();
  EXPECT_EQ(status["phase"], "Failed");
  EXPECT_EQ(MainStatus(status)["state"]["waiting"]["reason"], "PodInitializing");
  EXPECT_FALSE(fs::exists(dir_ / "logs/team/p1/main.log"));
}

TEST_F(PodRunnerTest, AnotherPodOfTheSameNameStartsWithFreshFolders) {
  Start(ShellPod("echo first"));
  RunToEnd();
  Json pod = ShellPod("echo second");
  pod["metadata"]["uid"] = "uid-2";
  Start(pod);
  RunToEnd();
  EXPECT_EQ(ReadAll((dir_ / "logs/team/p1/main.log").string()), "second\n");
}

}  // namespace
}  // namespace parallelrun::rt::cluster
