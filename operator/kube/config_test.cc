#include "operator/kube/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "tests/fakes/temp_dir.h"

namespace parallelrun::op::kube {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// "hello" and "world" in base64.
constexpr char kHelloB64[] = "aGVsbG8=";
constexpr char kWorldB64[] = "d29y\nbGQ=";

class ConfigTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& rel, const std::string& text) {
    fs::path p = fs::path(dir_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  // A kubeconfig with two contexts; `user` is the body of users[0].user.
  std::string Kubeconfig(const std::string& user, const std::string& cluster_extra = "") {
    return Write("cfg/config", R"(apiVersion: v1
kind: Config
current-context: main
clusters:
- name: other
  cluster:
    server: https://other:6443
- name: c
  cluster:
    server: https://127.0.0.1:6443/
)" + cluster_extra + R"(
contexts:
- name: main
  context: {cluster: c, user: u, namespace: team}
- name: plain
  context: {cluster: other, user: u}
users:
- name: u
  user:
)" + user);
  }

  fakes::TempDir tmp_{"kubeconfig-test"};
  std::string dir_ = tmp_.path();
};

TEST_F(ConfigTest, TokenAndRelativeCertificateAuthority) {
  Write("cfg/pki/ca.crt", "CA PEM");
  std::string path = Kubeconfig("    token: abc\n", "    certificate-authority: pki/ca.crt\n");
  auto c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->bearer_token, "abc");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->default_namespace, "team");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
  EXPECT_THAT(c->source, HasSubstr(path));
}

TEST_F(ConfigTest, ContextArgumentOverridesCurrentContext) {
  auto c = LoadKubeconfig(Kubeconfig("    token: abc\n"), "plain");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://other:6443");
  EXPECT_EQ(c->default_namespace, "default");
}

TEST_F(ConfigTest, DataFieldsAreBase64AndWinOverFiles) {
  std::string path = Kubeconfig(std::string("    client-certificate-data: ") + kHelloB64 +
                                    "\n    client-certificate: missing.crt\n" +
                                    "    client-key-data: \"" + kWorldB64 + "\"\n",
                                "    certificate-authority-data: " + std::string(kHelloB64) +
                                    "\n    insecure-skip-tls-verify: true\n");
  auto c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->client_cert_pem, "hello");
  EXPECT_EQ(c->client_key_pem, "world");
  EXPECT_EQ(c->ca_pem, "hello");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
}

TEST_F(ConfigTest, ClientCertificateFilesAreRelativeToTheKubeconfig) {
  Write("cfg/u.crt", "CERT");
  Write("cfg/u.key", "KEY");
  auto c = LoadKubeconfig(Kubeconfig("    client-certificate: u.crt\n    client-key: u.key\n"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "KEY");
  EXPECT_TRUE(c->bearer_token.empty());
}

TEST_F(ConfigTest, TokenFileIsKeptAsAnAbsolutePath) {
  std::string token = Write("cfg/tok", "t1\n");
  auto c = LoadKubeconfig(Kubeconfig("    tokenFile: ./tok\n"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->bearer_token_file, token);
}

// Each broken kubeconfig names the file and the field.
TEST_F(ConfigTest, ErrorsNameTheFileAndTheField) {
  struct Case {
    std::string user;
    std::string cluster_extra;
    std::string want;
  };
  const std::string key = (fs::path(dir_) / "cfg/nope.key").string();
  Write("cfg/u.crt", "CERT");
  const std::vector<Case> cases = {
      {"    client-certificate: u.crt\n    client-key: nope.key\n", "",
       "users[0].user.client-key: file " + key + " not found"},
      {"    tokenFile: /no/such/token\n", "",
       "users[0].user.tokenFile: file /no/such/token not found"},
      {"    client-key-data: '%%%'\n", "", "users[0].user.client-key-data: not valid base64"},
      {"    token: [a, b]\n", "", "users[0].user.token: expected a string"},
      {"    token: x\n", "    insecure-skip-tls-verify: maybe\n",
       "clusters[1].cluster.insecure-skip-tls-verify: expected true or false"},
      {"    token: x\n", "    certificate-authority: /no/ca.crt\n",
       "clusters[1].cluster.certificate-authority: file /no/ca.crt not found"},
      {"    client-certificate: u.crt\n", "",
       "users[0].user: client-certificate without client-key"},
      {"    exec: {command: aws}\n", "", "users[0].user.exec: credential plugins"},
  };
  for (const Case& c : cases) {
    std::string path = Kubeconfig(c.user, c.cluster_extra);
    auto r = LoadKubeconfig(path);
    ASSERT_FALSE(r.ok()) << c.want;
    EXPECT_EQ(r.status().code(), rt::StatusCode::kInvalidArgument) << c.want;
    EXPECT_THAT(r.status().message(), HasSubstr("kubeconfig " + path + ": " + c.want));
  }
}

TEST_F(ConfigTest, UnknownContextListsTheKnownOnes) {
  auto r = LoadKubeconfig(Kubeconfig("    token: x\n"), "nope");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("contexts: context \"nope\" not found (have: main, plain)"));
}

TEST_F(ConfigTest, MissingServerAndContextAreErrors) {
  std::string path = Write("k", R"(
clusters: [{name: c, cluster: {certificate-authority-data: aGVsbG8=}}]
contexts: [{name: x, context: {cluster: c}}]
)");
  auto r = LoadKubeconfig(path);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("kubeconfig " + path + ": current-context: not set"));
  r = LoadKubeconfig(path, "x");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("clusters[0].cluster.server: missing"));
}

TEST_F(ConfigTest, MissingOrMalformedFile) {
  auto r = LoadKubeconfig(dir_ + "/absent");
  EXPECT_EQ(r.status().code(), rt::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(dir_ + "/absent"));
  r = LoadKubeconfig(Write("bad", "clusters: [unclosed\n"));
  EXPECT_EQ(r.status().code(), rt::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("not valid YAML"));
}

TEST_F(ConfigTest, InClusterReadsTheServiceAccountFolder) {
  Write("sa/token", "tok\n");
  Write("sa/ca.crt", "CA");
  Write("sa/namespace", "jobs\n");
  auto c = LoadInClusterConfigFrom(dir_ + "/sa", "10.0.0.1", "443");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.0.0.1:443");
  EXPECT_EQ(c->bearer_token_file, dir_ + "/sa/token");
  EXPECT_EQ(c->ca_pem, "CA");
  EXPECT_EQ(c->default_namespace, "jobs");
  EXPECT_EQ(c->source, "in-cluster");
}

TEST_F(ConfigTest, InClusterBracketsIpv6Hosts) {
  Write("sa/token", "tok");
  Write("sa/ca.crt", "CA");
  auto c = LoadInClusterConfigFrom(dir_ + "/sa", "fd00::1", "6443");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://[fd00::1]:6443");
  EXPECT_EQ(c->default_namespace, "default");
}

TEST_F(ConfigTest, InClusterErrorsNameWhatIsMissing) {
  auto r = LoadInClusterConfigFrom(dir_ + "/sa", "", "");
  EXPECT_EQ(r.status().code(), rt::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("KUBERNETES_SERVICE_HOST"));
  r = LoadInClusterConfigFrom(dir_ + "/sa", "h", "1");
  EXPECT_THAT(r.status().message(), HasSubstr("token file " + dir_ + "/sa/token not found"));
  Write("sa/token", "tok");
  r = LoadInClusterConfigFrom(dir_ + "/sa", "h", "1");
  EXPECT_THAT(r.status().message(), HasSubstr("CA file " + dir_ + "/sa/ca.crt not found"));
}

// Sets or unsets environment variables for one test and puts them back.
class ScopedEnv {
 public:
  void Set(const char* name, const std::optional<std::string>& value) {
    const char* old = std::getenv(name);
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    Apply(name, value);
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) Apply(it->first, it->second);
  }

 private:
  static void Apply(const char* name, const std::optional<std::string>& value) {
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST_F(ConfigTest, LoadConfigPrefersFlagThenKubeconfigEnvThenHome) {
  std::string flag = Kubeconfig("    token: from-flag\n");
  std::string env = Write("env/config", R"(
current-context: e
clusters: [{name: c, cluster: {server: "https://env:1"}}]
contexts: [{name: e, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: from-env}}]
)");
  Write("home/.kube/config", R"(
current-context: h
clusters: [{name: c, cluster: {server: "https://home:1"}}]
contexts: [{name: h, context: {cluster: c}}]
)");
  ScopedEnv scoped;
  scoped.Set("KUBERNETES_SERVICE_HOST", std::nullopt);
  scoped.Set("HOME", dir_ + "/home");
  scoped.Set("KUBECONFIG", ":" + env + ":" + flag);

  auto c = LoadConfig(flag);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->bearer_token, "from-flag");

  c = LoadConfig("");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->bearer_token, "from-env");

  scoped.Set("KUBECONFIG", std::nullopt);
  c = LoadConfig("");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://home:1");

  scoped.Set("HOME", dir_ + "/nobody");
  c = LoadConfig("");
  EXPECT_EQ(c.status().code(), rt::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("--kubeconfig"));
}

}  // namespace
}  // namespace parallelrun::op::kube
