#include "tests/cluster/kubelet/hosts_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace parallelrun::rt::cluster {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Json ReadyPod(const std::string& name, const std::string& ns, const std::string& ip, Json labels,
              bool ready = true) {
  return {{"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}},
          {"spec", Json::object()},
          {"status",
           {{"phase", "Running"},
            {"podIP", ip},
            {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}}}};
}

Json Service(const std::string& name, const std::string& ns, Json selector) {
  return {{"metadata", {{"name", name}, {"namespace", ns}}},
          {"spec", {{"selector", selector}, {"clusterIP", "None"}}}};
}

TEST(BuildHostsFileTest, ServicesResolveToTheReadyPodsTheySelect) {
  HostsInputs in;
  in.api_host = "127.0.0.1";
  in.pods = {ReadyPod("a", "team", "127.0.1.2", {{"app", "db"}}),
             ReadyPod("b", "team", "127.0.1.3", {{"app", "db"}}, /*ready=*/false),
             ReadyPod("c", "other", "127.0.1.4", {{"app", "db"}})};
  in.services = {Service("db", "team", {{"app", "db"}})};
  Json self = ReadyPod("client", "team", "127.0.1.9", Json::object());
  std::string hosts = BuildHostsFile(self, "127.0.1.9", in);
  EXPECT_THAT(hosts, HasSubstr("127.0.0.1\tlocalhost\n"));
  EXPECT_THAT(hosts, HasSubstr("127.0.1.9\tclient\n"));
  EXPECT_THAT(hosts, HasSubstr("127.0.1.2\tdb.team.svc.cluster.local\tdb.team.svc\tdb.team\tdb\n"));
  EXPECT_THAT(hosts, Not(HasSubstr("127.0.1.3")));  // not ready
  EXPECT_THAT(hosts, Not(HasSubstr("127.0.1.4")));  // another namespace
  EXPECT_THAT(hosts, HasSubstr("127.0.0.1\tkubernetes.default.svc.cluster.local"));
}

TEST(BuildHostsFileTest, OtherNamespacesGetNoShortNameAndSubdomainPodsGetTheirOwn) {
  HostsInputs in;
  Json worker = ReadyPod("job-coordinator", "team", "127.0.1.2", {{"job", "j"}});
  worker["spec"] = {{"hostname", "coordinator"}, {"subdomain", "j"}};
  in.pods = {worker};
  in.services = {Service("j", "team", {{"job", "j"}})};
  Json self = ReadyPod("client", "default", "127.0.1.9", Json::object());
  std::string hosts = BuildHostsFile(self, "127.0.1.9", in);
  EXPECT_THAT(hosts, HasSubstr("\tj.team\t"));
  EXPECT_THAT(hosts, Not(HasSubstr("\tj\t")));
  EXPECT_THAT(hosts, HasSubstr("\tcoordinator.j.team.svc.cluster.local\t"));
}

TEST(BuildHostsFileTest, OwnHostnameAndSubdomain) {
  Json self = ReadyPod("w-0", "team", "127.0.1.7", Json::object());
  self["spec"] = {{"hostname", "w0"}, {"subdomain", "svc"}};
  std::string hosts = BuildHostsFile(self, "127.0.1.7", HostsInputs{});
  EXPECT_THAT(hosts, HasSubstr("127.0.1.7\tw0.svc.team.svc.cluster.local\tw0\n"));
}

TEST(BuildHostsFileTest, SelectorlessServicesUseTheirEndpoints) {
  HostsInputs in;
  in.services = {
      {{"metadata", {{"name", "ext"}, {"namespace", "team"}}}, {"spec", Json::object()}}};
  in.endpoints = {Json::parse(R"({"metadata":{"name":"ext","namespace":"team"},
      "subsets":[{"addresses":[{"ip":"127.0.2.1"}]}]})")};
  Json self = ReadyPod("client", "team", "127.0.1.9", Json::object());
  EXPECT_THAT(BuildHostsFile(self, "127.0.1.9", in),
              HasSubstr("127.0.2.1\text.team.svc.cluster.local"));
}

TEST(WriteInPlaceTest, KeepsTheInodeAndSkipsUnchangedContent) {
  std::string path =
      (std::filesystem::temp_directory_path() / ("hosts-inplace-test-" + std::to_string(getpid())))
          .string();
  std::ofstream(path) << "a much longer old content\n";
  struct stat before, after;
  stat(path.c_str(), &before);
  EXPECT_TRUE(WriteInPlace(path, "short\n"));
  EXPECT_FALSE(WriteInPlace(path, "short\n"));
  stat(path.c_str(), &after);
  EXPECT_EQ(before.st_ino, after.st_ino);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "short\n");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace parallelrun::rt::cluster
