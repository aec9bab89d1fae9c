#include "tests/cluster/kubelet/podman_args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace parallelrun::rt::cluster {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

ImageConfig Image(std::string user = "") {
  ImageConfig image;
  image.id = std::string(64, 'a');
  image.user = std::move(user);
  image.entrypoint = {"/usr/local/bin/tool"};
  image.cmd = {"--help"};
  return image;
}

Json Pod(Json pod_security = Json::object(), Json container_security = Json::object()) {
  return {{"metadata", {{"name", "p"}, {"namespace", "ns"}, {"uid", "u-1"}}},
          {"spec",
           {{"securityContext", pod_security},
            {"containers",
             {{{"name", "main"}, {"image", "tool:1"}, {"securityContext", container_security}}}}}}};
}

TEST(PodmanArgsTest, ParsesImageInspectOutput) {
  ImageConfig image;
  std::string error;
  ASSERT_TRUE(ParseImageInspect(R"([{"Id": "abc", "Config": {"User": "10001:10001",
      "WorkingDir": "/work", "Entrypoint": ["parallelrun"], "Cmd": ["run", "x"]}}])",
                                &image, &error))
      << error;
  EXPECT_EQ(image.id, "abc");
  EXPECT_EQ(image.user, "10001:10001");
  EXPECT_EQ(image.working_dir, "/work");
  EXPECT_EQ(image.entrypoint, std::vector<std::string>{"parallelrun"});
  EXPECT_EQ(image.cmd, (std::vector<std::string>{"run", "x"}));
  EXPECT_FALSE(ParseImageInspect("Error: image not known", &image, &error));
  EXPECT_THAT(error, HasSubstr("expected a JSON array"));
  EXPECT_FALSE(ParseImageInspect("[{}]", &image, &error));
  EXPECT_THAT(error, HasSubstr("no Id"));
}

TEST(PodmanArgsTest, NormalizesImageReferencesWithoutTag) {
  const std::pair<std::string, std::string> cases[] = {
      {"busybox", "busybox:latest"},
      {"parallelrun:0.1.0", "parallelrun:0.1.0"},
      {"localhost:5000/team/tool", "localhost:5000/team/tool:latest"},
      {"localhost:5000/team/tool:2", "localhost:5000/team/tool:2"},
      {"x@sha256:0123", "x@sha256:0123"}};
  for (const auto& [in, want] : cases) EXPECT_EQ(NormalizeImageRef(in), want) << in;
}

TEST(PodmanArgsTest, RunAsNonRootIsCheckedAgainstTheImageUser) {
  const std::string where = "(pod: \"p_ns(u-1)\", container: main)";
  Json non_root = {{"runAsNonRoot", true}};
  auto verify = [](const Json& pod, const ImageConfig& image) {
    return VerifyRunAsNonRoot(pod, pod["spec"]["containers"][0], image);
  };
  EXPECT_EQ(verify(Pod(), Image("")), "");  // not asked for
  EXPECT_EQ(verify(Pod(non_root), Image("")),
            "container has runAsNonRoot and image will run as root " + where);
  EXPECT_EQ(verify(Pod(non_root), Image("0:0")),
            "container has runAsNonRoot and image will run as root " + where);
  EXPECT_EQ(verify(Pod(non_root), Image("app")),
            "container has runAsNonRoot and image has non-numeric user (app), cannot verify user "
            "is non-root " +
                where);
  EXPECT_THAT(verify(Pod(non_root), Image("root")), HasSubstr("non-numeric user (root)"));
  EXPECT_EQ(verify(Pod(non_root), Image("10001:10001")), "");
  // runAsUser decides when set; the container's wins over the pod's.
  EXPECT_EQ(verify(Pod({{"runAsNonRoot", true}, {"runAsUser", 10001}}), Image("root")), "");
  EXPECT_EQ(verify(Pod({{"runAsNonRoot", true}, {"runAsUser", 10001}}, {{"runAsUser", 0}}),
                   Image("10001")),
            "container's runAsUser breaks non-root policy " + where);
  EXPECT_EQ(verify(Pod(non_root, {{"runAsNonRoot", false}}), Image("")), "");
}

TEST(PodmanArgsTest, CommandAndArgsOverrideEntrypointAndCmd) {
  ImageConfig image = Image();
  std::vector<std::string> env = {"NAME=world"};
  EXPECT_EQ(ContainerProcessArgv(Json::object(), image, env),
            (std::vector<std::string>{"/usr/local/bin/tool", "--help"}));
  EXPECT_EQ(ContainerProcessArgv({{"args", {"run", "$(NAME)"}}}, image, env),
            (std::vector<std::string>{"/usr/local/bin/tool", "run", "world"}));
  // A command drops the image's CMD too.
  EXPECT_EQ(ContainerProcessArgv({{"command", {"sh"}}}, image, env),
            (std::vector<std::string>{"sh"}));
  EXPECT_EQ(
      ContainerProcessArgv({{"command", {"sh", "-c"}}, {"args", {"echo $(NAME)"}}}, image, env),
      (std::vector<std::string>{"sh", "-c", "echo world"}));
}

std::vector<std::string> Args(const Json& pod, const ImageConfig& image, PodmanRunInputs in = {}) {
  if (in.name.empty()) in.name = "k8s_main_p_ns_u-1_0";
  if (in.argv.empty()) in.argv = {"sh", "-c", "echo hi"};
  in.cid_file = "/state/pods/ns/p/main.cid";
  in.state_dir = "/state";
  std::vector<std::string> args;
  std::string error;
  EXPECT_TRUE(PodmanRunArgs(pod, pod["spec"]["containers"][0], image, in, &args, &error)) << error;
  return args;
}

TEST(PodmanArgsTest, RunArgsCarryIdentityNetworkAndNoPull) {
  PodmanRunInputs in;
  in.hostname = "p";
  in.env = {"POD_IP=127.1.2.3", "EMPTY="};
  in.mounts = {{"/state/pods/ns/p/hosts", "/etc/hosts", false},
               {"/state/pods/ns/p/volumes/secret/s", "/etc/secret", true}};
  Json pod = Pod();
  pod["spec"]["containers"][0]["workingDir"] = "/work";
  auto args = Args(pod, Image(), in);
  ASSERT_FALSE(args.empty());
  EXPECT_EQ(args.front(), "run");
  EXPECT_EQ(args.back(), std::string(64, 'a'));  // by image id: nothing to resolve or pull
  for (const char* want :
       {"--name=k8s_main_p_ns_u-1_0", "--cidfile=/state/pods/ns/p/main.cid", "--pull=never",
        "--network=host", "--log-driver=passthrough", "--hostname=p",
        "--label=io.kubernetes.pod.uid=u-1", "--label=io.kubernetes.pod.name=p",
        "--label=io.kubernetes.pod.namespace=ns", "--label=io.kubernetes.container.name=main",
        "--label=io.testcluster.state=/state", "--env=POD_IP=127.1.2.3", "--env=EMPTY=",
        "--workdir=/work", "--mount=type=bind,source=/state/pods/ns/p/hosts,destination=/etc/hosts",
        "--mount=type=bind,source=/state/pods/ns/p/volumes/secret/s,destination=/etc/secret,"
        "ro=true",
        R"(--entrypoint=["sh","-c","echo hi"])", "--security-opt=seccomp=unconfined"}) {
    EXPECT_THAT(args, Contains(want));
  }
  // Without a securityContext the image's user stays, and nothing is restricted.
  for (const auto& a : args) {
    EXPECT_EQ(a.rfind("--user", 0), std::string::npos) << a;
    EXPECT_EQ(a.rfind("--read-only", 0), std::string::npos) << a;
    EXPECT_EQ(a.rfind("--cap-", 0), std::string::npos) << a;
  }
}

TEST(PodmanArgsTest, SecurityContextBecomesUserGroupsAndRestrictions) {
  Json pod = Pod({{"runAsUser", 10001},
                  {"runAsGroup", 10001},
                  {"fsGroup", 2000},
                  {"supplementalGroups", {3000}},
                  {"seccompProfile", {{"type", "RuntimeDefault"}}}},
                 {{"readOnlyRootFilesystem", true},
                  {"allowPrivilegeEscalation", false},
                  {"capabilities", {{"drop", {"ALL"}}, {"add", {"NET_BIND_SERVICE"}}}}});
  auto args = Args(pod, Image("root"));
  for (const char* want :
       {"--user=10001:10001", "--group-add=2000", "--group-add=3000", "--read-only",
        "--read-only-tmpfs=false", "--security-opt=no-new-privileges", "--cap-drop=ALL",
        "--cap-add=NET_BIND_SERVICE"}) {
    EXPECT_THAT(args, Contains(want));
  }
  EXPECT_THAT(args, Not(Contains("--security-opt=seccomp=unconfined")));
  // Drops come before adds, so `drop: [ALL]` with an add keeps the added capability.
  auto drop = std::find(args.begin(), args.end(), "--cap-drop=ALL");
  auto add = std::find(args.begin(), args.end(), "--cap-add=NET_BIND_SERVICE");
  EXPECT_LT(drop, add);
}

TEST(PodmanArgsTest, RunAsGroupAloneKeepsTheImageUser) {
  EXPECT_THAT(Args(Pod({{"runAsGroup", 3000}}), Image("app:app")), Contains("--user=app:3000"));
  EXPECT_THAT(Args(Pod({}, {{"runAsGroup", 3000}}), Image("")), Contains("--user=0:3000"));
  EXPECT_THAT(Args(Pod({{"runAsUser", 5}}, {{"runAsUser", 7}}), Image("")), Contains("--user=7"));
}

TEST(PodmanArgsTest, ResourceLimitsWhereTheControllersAllow) {
  Json pod = Pod();
  pod["spec"]["containers"][0]["resources"] = {{"limits", {{"memory", "64Mi"}, {"cpu", "500m"}}},
                                               {"requests", {{"cpu", "250m"}}}};
  auto args = Args(pod, Image());
  for (const char* want :
       {"--memory=67108864", "--memory-swap=67108864", "--cpus=0.500", "--cpu-shares=256"}) {
    EXPECT_THAT(args, Contains(want));
  }
  PodmanRunInputs no_cgroups;
  no_cgroups.memory_controller = false;
  no_cgroups.cpu_controller = false;
  for (const auto& a : Args(pod, Image(), no_cgroups)) {
    EXPECT_EQ(a.rfind("--memory", 0), std::string::npos) << a;
    EXPECT_EQ(a.rfind("--cpu", 0), std::string::npos) << a;
  }
}

TEST(PodmanArgsTest, InputItCannotHonourIsAnErrorNamingTheField) {
  auto error_of = [](Json pod, PodmanRunInputs in) {
    if (in.argv.empty()) in.argv = {"true"};
    std::vector<std::string> args;
    std::string error;
    EXPECT_FALSE(PodmanRunArgs(pod, pod["spec"]["containers"][0], Image(), in, &args, &error));
    return error;
  };
  Json bad_quantity = Pod();
  bad_quantity["spec"]["containers"][0]["resources"] = {{"limits", {{"memory", "lots"}}}};
  EXPECT_EQ(error_of(bad_quantity, {}), "resources.limits.memory: \"lots\" is not a quantity");
  EXPECT_THAT(error_of(Pod({{"seccompProfile", {{"type", "Localhost"}}}}), {}),
              HasSubstr("securityContext.seccompProfile.type: \"Localhost\" is not supported"));
  PodmanRunInputs comma;
  comma.mounts = {{"/a,b", "/data", false}};
  EXPECT_THAT(error_of(Pod(), comma), HasSubstr("volume mount /data (from /a,b)"));
  std::vector<std::string> args;
  std::string error;
  Json pod = Pod();
  EXPECT_FALSE(PodmanRunArgs(pod, pod["spec"]["containers"][0], Image(), {}, &args, &error));
  EXPECT_THAT(error, HasSubstr("no command specified"));
}

TEST(PodmanArgsTest, FsGroupComesFromThePodOnly) {
  EXPECT_EQ(PodFsGroup(Pod({{"fsGroup", 10001}})), 10001);
  EXPECT_EQ(PodFsGroup(Pod({}, {{"fsGroup", 10001}})), std::nullopt);
}

}  // namespace
}  // namespace parallelrun::rt::cluster
