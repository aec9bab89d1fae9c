#include "operator/reconciler/children.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace parallelrun::op::reconciler {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Every pod field of SPEC.md §2.1 set, inputs with and without a volume.
json Manifest() {
  return json::parse(R"({
    "apiVersion": "parallelrun.io/v1alpha1",
    "kind": "ParallelRunJob",
    "metadata": {"name": "score"},
    "spec": {
      "entryScript": "score.py",
      "sourceDirectory": {"volume": "code", "path": "."},
      "volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "images"}},
        {"name": "code", "configMap": {"name": "scorer"}}
      ],
      "inputs": [
        {"name": "images", "type": "file", "source": {"volume": "data", "path": "incoming/"}},
        {"name": "baked", "type": "file", "source": {"path": "opt/samples"}}
      ],
      "sideInputs": [{"name": "model", "source": {"volume": "data", "path": "./models//resnet/"}}],
      "output": {"volume": "data", "path": "runs/score"},
      "nodeCount": 3,
      "image": "registry.example/scorer:1",
      "imagePullPolicy": "Always",
      "resources": {"limits": {"nvidia.com/gpu": 2}},
      "env": [{"name": "MODEL_FLAVOR", "value": "fast"}],
      "nodeSelector": {"pool": "gpu"},
      "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
      "affinity": {"nodeAffinity": {}},
      "serviceAccountName": "scorer",
      "priorityClassName": "batch-low",
      "podLabels": {"team": "vision", "parallelrun.io/job": "spoofed"},
      "podAnnotations": {"example.com/cost-center": "42"}
    }
  })");
}

rt::JobSpec Spec(const json& manifest = Manifest()) {
  auto spec = rt::ParseJobSpec(manifest.dump(), "job.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return spec.ok() ? *spec : rt::JobSpec{};
}

const JobMeta kJob{"score", "team-a", "0b5e-uid"};

ChildrenOptions Options() {
  ChildrenOptions o;
  o.default_image = "parallelrun:0.1";
  return o;
}

json Coordinator(const rt::JobSpec& spec, const ChildrenOptions& options = Options()) {
  auto pod = BuildCoordinatorPod(kJob, spec, options);
  EXPECT_TRUE(pod.ok()) << pod.status().ToString();
  return pod.ok() ? *pod : json();
}

json Worker(const rt::JobSpec& spec, int index = 1, const ChildrenOptions& options = Options()) {
  auto pod = BuildWorkerPod(kJob, spec, index, options);
  EXPECT_TRUE(pod.ok()) << pod.status().ToString();
  return pod.ok() ? *pod : json();
}

const json& Container(const json& pod) { return pod["spec"]["containers"][0]; }

// The mount at exactly `path`, or null.
json MountAt(const json& pod, const std::string& path) {
  for (const json& m : Container(pod)["volumeMounts"]) {
    if (m["mountPath"] == path) return m;
  }
  return nullptr;
}

std::set<std::string> VolumeNames(const json& pod) {
  std::set<std::string> names;
  for (const json& v : pod["spec"]["volumes"]) names.insert(v["name"].get<std::string>());
  return names;
}

int SecretFileMode(const json& pod) {
  for (const json& v : pod["spec"]["volumes"]) {
    if (v["name"] == kSecretVolumeName) return v["secret"]["defaultMode"].get<int>();
  }
  return -1;
}

// A path from rt::MountedPaths is reachable in the pod: a mount of a pod volume sits exactly
// there, or the DataRef has no volume and the path is inside the image (not under /mnt).
void ExpectCovered(const json& pod, const rt::DataRef& ref, const std::string& path,
                   bool read_only) {
  SCOPED_TRACE(path);
  json mount = MountAt(pod, path);
  if (ref.volume.empty()) {
    EXPECT_TRUE(mount.is_null());
    EXPECT_NE(path.rfind("/mnt/", 0), 0u);
    return;
  }
  ASSERT_FALSE(mount.is_null());
  EXPECT_EQ(mount["name"], ref.volume);
  EXPECT_TRUE(VolumeNames(pod).count(ref.volume));
  EXPECT_EQ(mount.value("readOnly", false), read_only);
}

TEST(ChildrenNamesTest, NamesFollowTheJob) {
  EXPECT_EQ(SecretName("score"), "score-parallelrun");
  EXPECT_EQ(SpecConfigMapName("score"), "score-spec");
  EXPECT_EQ(ServiceName("score"), "score-coordinator");
  EXPECT_EQ(CoordinatorPodName("score"), "score-coordinator");
  EXPECT_EQ(WorkerPodName("score", 3), "score-worker-3");
  EXPECT_EQ(CoordinatorServerName(kJob), "score-coordinator.team-a.svc");
  EXPECT_EQ(CoordinatorUrl(kJob), "https://score-coordinator.team-a.svc:8443");
  EXPECT_EQ(PodSelector("score"), "parallelrun.io/job=score");
  EXPECT_EQ(PodSelector("score", kWorkerRole),
            "parallelrun.io/job=score,parallelrun.io/role=worker");
}

TEST(ChildrenTest, EveryChildIsOwnedByTheJobAndLabelled) {
  const rt::JobSpec spec = Spec();
  const json expected_owner = {{"apiVersion", "parallelrun.io/v1alpha1"},
                               {"kind", "ParallelRunJob"},
                               {"name", "score"},
                               {"uid", "0b5e-uid"},
                               {"controller", true},
                               {"blockOwnerDeletion", true}};
  JobCredentials creds{"tok", "ca", "crt", "key"};
  for (const json& obj : {BuildSecret(kJob, creds), BuildSpecConfigMap(kJob, spec),
                          BuildService(kJob), Coordinator(spec), Worker(spec)}) {
    SCOPED_TRACE(obj["kind"].dump());
    EXPECT_EQ(obj["metadata"]["namespace"], "team-a");
    EXPECT_EQ(obj["metadata"]["ownerReferences"], json::array({expected_owner}));
    EXPECT_EQ(obj["metadata"]["labels"]["parallelrun.io/job"], "score");
  }
}

TEST(ChildrenTest, SecretHoldsTheCredentialsBase64) {
  json secret = BuildSecret(kJob, {"hello", "ca!", "crt?", "k"});
  EXPECT_EQ(secret["metadata"]["name"], "score-parallelrun");
  EXPECT_EQ(secret["type"], "Opaque");
  EXPECT_EQ(secret["data"], json({{"token", "aGVsbG8="},
                                  {"ca.crt", "Y2Eh"},
                                  {"tls.crt", "Y3J0Pw=="},
                                  {"tls.key", "aw=="}}));
}

TEST(ChildrenTest, SpecConfigMapRoundTripsWithTheJobsIdentity) {
  json cm = BuildSpecConfigMap(kJob, Spec());
  EXPECT_EQ(cm["metadata"]["name"], "score-spec");
  auto back = rt::ParseJobSpec(cm["data"]["spec.json"].get<std::string>(), "spec.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->uid, "0b5e-uid");  // the coordinator's owner id for the output folder
  EXPECT_EQ(back->namespace_, "team-a");
  EXPECT_EQ(back->node_count, 3);
  EXPECT_EQ(back->pod["image"], "registry.example/scorer:1");
}

TEST(ChildrenTest, ServiceIsHeadlessAndSelectsTheCoordinator) {
  json svc = BuildService(kJob);
  EXPECT_EQ(svc["metadata"]["name"], "score-coordinator");
  EXPECT_EQ(svc["spec"]["clusterIP"], "None");
  EXPECT_EQ(svc["spec"]["selector"],
            json({{"parallelrun.io/job", "score"}, {"parallelrun.io/role", "coordinator"}}));
  EXPECT_EQ(svc["spec"]["ports"][0]["name"], "https");
  EXPECT_EQ(svc["spec"]["ports"][0]["port"], 8443);
  // The Service's labels select nothing but the coordinator pod.
  json pod = Coordinator(Spec());
  for (const auto& [key, value] : svc["spec"]["selector"].items()) {
    EXPECT_EQ(pod["metadata"]["labels"][key], value);
  }
  EXPECT_NE(Worker(Spec())["metadata"]["labels"]["parallelrun.io/role"], "coordinator");
}

TEST(ChildrenTest, CoordinatorRunsTheCoordinatorOnItsPodIp) {
  json pod = Coordinator(Spec());
  EXPECT_EQ(pod["metadata"]["name"], "score-coordinator");
  EXPECT_EQ(pod["metadata"]["labels"]["parallelrun.io/role"], "coordinator");
  const json& c = Container(pod);
  EXPECT_EQ(c["command"],
            json({"parallelrun", "coordinator", "--spec", "/etc/parallelrun/spec.json", "--listen",
                  "$(POD_IP):8443", "--token-file", "/etc/parallelrun/secret/token", "--tls-cert",
                  "/etc/parallelrun/secret/tls.crt", "--tls-key", "/etc/parallelrun/secret/tls.key",
                  "--paths", "mounted", "--termination-log", "/dev/termination-log"}));
  EXPECT_EQ(c["ports"][0]["containerPort"], 8443);
  EXPECT_EQ(c["terminationMessagePath"], "/dev/termination-log");
  EXPECT_EQ(c["terminationMessagePolicy"], "FallbackToLogsOnError");
  EXPECT_EQ(c["resources"], Options().coordinator_resources);  // not the workers' GPUs
  EXPECT_EQ(pod["spec"]["subdomain"], "score-coordinator");
  json spec_mount = MountAt(pod, "/etc/parallelrun/spec.json");
  EXPECT_EQ(spec_mount["subPath"], "spec.json");
  EXPECT_EQ(spec_mount["name"], kSpecVolumeName);
}

TEST(ChildrenTest, WorkerRunsAnAgentAgainstTheServiceName) {
  json pod = Worker(Spec(), 2);
  EXPECT_EQ(pod["metadata"]["name"], "score-worker-2");
  EXPECT_EQ(pod["metadata"]["labels"]["parallelrun.io/role"], "worker");
  EXPECT_EQ(pod["metadata"]["labels"]["parallelrun.io/worker-index"], "2");
  const json& c = Container(pod);
  EXPECT_EQ(
      c["command"],
      json({"parallelrun", "agent", "--coordinator", "https://score-coordinator.team-a.svc:8443",
            "--token-file", "/etc/parallelrun/secret/token", "--ca-file",
            "/etc/parallelrun/secret/ca.crt", "--node-name", "$(POD_IP)", "--echo-user-logs"}));
  EXPECT_EQ(c["resources"], json::parse(R"({"limits": {"nvidia.com/gpu": 2}})"));
  EXPECT_FALSE(c.contains("ports"));
  EXPECT_TRUE(MountAt(pod, "/etc/parallelrun/spec.json").is_null());  // agents get it by API
}

TEST(ChildrenTest, WorkersGetTheTokenAndCaButNotTheServerKey) {
  auto secret_items = [](const json& pod) {
    std::vector<std::string> keys;
    for (const json& v : pod["spec"]["volumes"]) {
      if (v["name"] != kSecretVolumeName) continue;
      EXPECT_EQ(v["secret"]["secretName"], "score-parallelrun");
      for (const json& item : v["secret"]["items"]) keys.push_back(item["key"]);
    }
    return keys;
  };
  EXPECT_THAT(secret_items(Worker(Spec())), ElementsAre("token", "ca.crt"));
  EXPECT_THAT(secret_items(Coordinator(Spec())), ElementsAre("token", "tls.crt", "tls.key"));
  json mount = MountAt(Worker(Spec()), "/etc/parallelrun/secret");
  EXPECT_EQ(mount["readOnly"], true);
}

TEST(ChildrenTest, EveryMountedPathOfTheWorkerIsCovered) {
  const rt::JobSpec spec = Spec();
  const rt::ResolvedPaths paths = rt::MountedPaths(spec);
  json pod = Worker(spec);
  ExpectCovered(pod, spec.source_directory, paths.code_dir, true);
  for (const rt::Input& in : spec.inputs)
    ExpectCovered(pod, in.source, paths.inputs.at(in.name), true);
  for (const rt::SideInput& side : spec.side_inputs) {
    ExpectCovered(pod, side.source, paths.side_inputs.at(side.name), true);
  }
  ExpectCovered(pod, spec.output, paths.output_dir, false);
  EXPECT_EQ(paths.inputs.at("baked"), "/opt/samples");  // inside the image: no mount
}

TEST(ChildrenTest, CoordinatorMountsInputsAndOutputOnly) {
  const rt::JobSpec spec = Spec();
  const rt::ResolvedPaths paths = rt::MountedPaths(spec);
  json pod = Coordinator(spec);
  for (const rt::Input& in : spec.inputs)
    ExpectCovered(pod, in.source, paths.inputs.at(in.name), true);
  ExpectCovered(pod, spec.output, paths.output_dir, false);
  // It plans and assembles; the user's code and side inputs are the workers' business.
  EXPECT_TRUE(MountAt(pod, paths.code_dir).is_null());
  EXPECT_TRUE(MountAt(pod, paths.side_inputs.at("model")).is_null());
}

TEST(ChildrenTest, ModelsAreMountedReadOnlyOnWorkersWithTheirEnvironment) {
  json manifest = Manifest();
  manifest["spec"]["models"] = json::parse(R"([
      {"name": "iris-prs", "version": "3", "source": {"volume": "data", "path": "models/iris/"}},
      {"name": "vocab_v2.1", "source": {"path": "opt/vocab"}}])");
  const rt::JobSpec spec = Spec(manifest);
  const rt::ResolvedPaths paths = rt::MountedPaths(spec);
  EXPECT_EQ(paths.models.at("iris-prs"), "/mnt/models/iris-prs");
  EXPECT_EQ(paths.models.at("vocab_v2.1"), "/opt/vocab");  // inside the image: no mount
  json pod = Worker(spec);
  for (const rt::Model& model : spec.models) {
    ExpectCovered(pod, model.source, paths.models.at(model.name), true);
  }
  EXPECT_EQ(MountAt(pod, "/mnt/models/iris-prs")["subPath"], "models/iris");
  json env = json::object();
  for (const json& e : Container(pod)["env"]) {
    env[e["name"].get<std::string>()] = e.value("value", json());
  }
  EXPECT_EQ(env["AZUREML_MODEL_DIR"], "/mnt/models");
  EXPECT_EQ(json::parse(env["PARALLELRUN_MODELS"].get<std::string>()), json::parse(R"({
      "iris-prs": {"version": "3", "path": "/mnt/models/iris-prs"},
      "vocab_v2.1": {"version": null, "path": "/opt/vocab"}})"));
  EXPECT_EQ(env["MODEL_FLAVOR"], "fast");
  // The coordinator plans and assembles: no models there.
  json coordinator = Coordinator(spec);
  EXPECT_TRUE(MountAt(coordinator, "/mnt/models/iris-prs").is_null());
  for (const json& e : Container(coordinator)["env"]) {
    EXPECT_NE(e["name"].get<std::string>(), "PARALLELRUN_MODELS");
  }
}

TEST(ChildrenTest, SubPathIsTheDataRefPathNormalized) {
  json pod = Worker(Spec());
  EXPECT_EQ(MountAt(pod, "/mnt/inputs/images")["subPath"], "incoming");
  EXPECT_EQ(MountAt(pod, "/mnt/side-inputs/model")["subPath"], "models/resnet");
  EXPECT_EQ(MountAt(pod, "/mnt/output")["subPath"], "runs/score");
  EXPECT_FALSE(MountAt(pod, "/mnt/code").contains("subPath"));  // "." is the whole volume
}

TEST(ChildrenTest, PodFieldsOfTheSpecReachBothPods) {
  for (const json& pod : {Coordinator(Spec()), Worker(Spec())}) {
    SCOPED_TRACE(pod["metadata"]["name"].dump());
    const json& s = pod["spec"];
    EXPECT_EQ(Container(pod)["image"], "registry.example/scorer:1");
    EXPECT_EQ(Container(pod)["imagePullPolicy"], "Always");
    EXPECT_EQ(s["nodeSelector"], json({{"pool", "gpu"}}));
    EXPECT_EQ(s["tolerations"][0]["key"], "gpu");
    EXPECT_EQ(s["affinity"], json::parse(R"({"nodeAffinity": {}})"));
    EXPECT_EQ(s["serviceAccountName"], "scorer");
    EXPECT_EQ(s["priorityClassName"], "batch-low");
    EXPECT_EQ(s["restartPolicy"], "Never");
    EXPECT_EQ(s["enableServiceLinks"], false);
    EXPECT_EQ(pod["metadata"]["annotations"], json({{"example.com/cost-center", "42"}}));
    EXPECT_EQ(pod["metadata"]["labels"]["team"], "vision");
    EXPECT_EQ(pod["metadata"]["labels"]["parallelrun.io/job"], "score");  // ours win
    // POD_IP first (the command line expands it), then the user's variables.
    const json& env = Container(pod)["env"];
    ASSERT_EQ(env.size(), 2u);
    EXPECT_EQ(env[0]["name"], "POD_IP");
    EXPECT_EQ(env[0]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    EXPECT_EQ(env[1], json({{"name", "MODEL_FLAVOR"}, {"value", "fast"}}));
    // The user's volumes and ours.
    EXPECT_TRUE(VolumeNames(pod).count("data"));
    EXPECT_TRUE(VolumeNames(pod).count("code"));
  }
}

TEST(ChildrenTest, RestrictedSecurityContextByDefault) {
  json pod = Worker(Spec());
  EXPECT_EQ(pod["spec"]["securityContext"], json::parse(R"({
    "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"}})"));
  EXPECT_EQ(Container(pod)["securityContext"], json::parse(R"({
    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": false})"));
  EXPECT_EQ(SecretFileMode(pod), 0440);
}

TEST(ChildrenTest, UserSecurityContextFieldsGoOverTheRestrictedDefault) {
  json m = Manifest();
  m["spec"]["securityContext"] = {{"runAsUser", 1000}, {"supplementalGroups", {5}}};
  json pod = Coordinator(Spec(m));
  // Regression (issue 12): a spec securityContext used to replace the default, so {fsGroup: 1}
  // alone ran the image's user, root for most images.
  EXPECT_EQ(pod["spec"]["securityContext"], json::parse(R"({
    "runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 10001, "fsGroup": 10001,
    "supplementalGroups": [5], "seccompProfile": {"type": "RuntimeDefault"}})"));
  EXPECT_EQ(Container(pod)["securityContext"]["allowPrivilegeEscalation"], false);
  EXPECT_EQ(SecretFileMode(pod), 0440);
}

TEST(ChildrenTest, NoServiceAccountTokenUnlessTheSpecNamesAnAccount) {
  json m = Manifest();
  EXPECT_EQ(Worker(Spec(m))["spec"]["automountServiceAccountToken"], true);  // "scorer"
  m["spec"].erase("serviceAccountName");
  for (const json& pod : {Worker(Spec(m)), Coordinator(Spec(m))}) {
    EXPECT_EQ(pod["spec"]["automountServiceAccountToken"], false);
    EXPECT_FALSE(pod["spec"].contains("serviceAccountName"));
  }
}

TEST(ChildrenTest, NetworkPolicyLetsOnlyTheJobAndTheOperatorReachTheCoordinator) {
  ChildrenOptions options = Options();
  options.operator_namespace = "parallelrun-system";
  options.operator_pod_labels = {{"app.kubernetes.io/name", "parallelrun"}};
  const json policy = BuildNetworkPolicy(kJob, options);
  EXPECT_EQ(policy["apiVersion"], "networking.k8s.io/v1");
  EXPECT_EQ(policy["metadata"]["name"], "score-coordinator");
  EXPECT_EQ(policy["metadata"]["namespace"], "team-a");
  EXPECT_EQ(policy["metadata"]["ownerReferences"][0]["uid"], "0b5e-uid");
  EXPECT_EQ(policy["spec"], json::parse(R"({
    "podSelector": {"matchLabels": {"parallelrun.io/job": "score",
                                    "parallelrun.io/role": "coordinator"}},
    "policyTypes": ["Ingress"],
    "ingress": [{
      "from": [
        {"podSelector": {"matchLabels": {"parallelrun.io/job": "score"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "parallelrun-system"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "parallelrun"}}}],
      "ports": [{"protocol": "TCP", "port": 8443}]}]})"));
  // Without the operator's identity, only the job's pods.
  EXPECT_EQ(BuildNetworkPolicy(kJob, Options())["spec"]["ingress"][0]["from"].size(), 1u);
}

TEST(ChildrenTest, ImageFallsBackToTheOperatorDefault) {
  json m = Manifest();
  m["spec"].erase("image");
  m["spec"].erase("imagePullPolicy");
  ChildrenOptions options = Options();
  options.default_image_pull_policy = "IfNotPresent";
  json pod = Worker(Spec(m), 0, options);
  EXPECT_EQ(Container(pod)["image"], "parallelrun:0.1");
  EXPECT_EQ(Container(pod)["imagePullPolicy"], "IfNotPresent");
  options.default_image_pull_policy.clear();
  EXPECT_FALSE(Container(Worker(Spec(m), 0, options)).contains("imagePullPolicy"));

  options.default_image.clear();
  auto none = BuildCoordinatorPod(kJob, Spec(m), options);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), rt::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("spec.image"));
}

TEST(ChildrenTest, MinimalSpecHasNoOptionalPodFields) {
  json m = json::parse(R"({"apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
    "metadata": {"name": "mini"},
    "spec": {"entryScript": "score.py", "sourceDirectory": {"path": "app"},
             "inputs": [{"name": "in", "type": "file", "source": {"path": "data"}}],
             "output": {"path": "out"}}})");
  json pod = Worker(Spec(m), 0);
  for (const char* key :
       {"nodeSelector", "tolerations", "affinity", "serviceAccountName", "priorityClassName"}) {
    EXPECT_FALSE(pod["spec"].contains(key)) << key;
  }
  EXPECT_FALSE(Container(pod).contains("resources"));
  EXPECT_FALSE(pod["metadata"].contains("annotations"));
  EXPECT_EQ(Container(pod)["env"].size(), 1u);
  // No DataRef has a volume: the only mount is the secret.
  EXPECT_EQ(Container(pod)["volumeMounts"].size(), 1u);
  EXPECT_EQ(VolumeNames(pod), std::set<std::string>{kSecretVolumeName});
}

TEST(ChildrenTest, ReservedVolumeNameIsInvalid) {
  json m = Manifest();
  m["spec"]["volumes"].push_back({{"name", "parallelrun-secret"}, {"emptyDir", json::object()}});
  auto pod = BuildWorkerPod(kJob, Spec(m), 0, Options());
  ASSERT_FALSE(pod.ok());
  EXPECT_EQ(pod.status().code(), rt::StatusCode::kInvalidArgument);
  EXPECT_THAT(pod.status().message(), HasSubstr("spec.volumes[2].name"));
}

TEST(ChildrenTest, WorkerIndexOutsideNodeCountIsRejected) {
  EXPECT_FALSE(BuildWorkerPod(kJob, Spec(), 3, Options()).ok());
  EXPECT_FALSE(BuildWorkerPod(kJob, Spec(), -1, Options()).ok());
}

TEST(ChildrenTest, SameInputsGiveTheSameObjects) {
  EXPECT_EQ(Coordinator(Spec()), Coordinator(Spec()));
  EXPECT_EQ(Worker(Spec(), 1), Worker(Spec(), 1));
  EXPECT_NE(Worker(Spec(), 1), Worker(Spec(), 2));
}

}  // namespace
}  // namespace parallelrun::op::reconciler
