#include "tests/cluster/kubelet/scheduling.h"

#include <gtest/gtest.h>

namespace parallelrun::rt::cluster {
namespace {

TEST(UnschedulableMessageTest, Table) {
  const Json node = Json::parse(R"({
    "metadata": {"name": "node-1", "labels": {"disk": "ssd", "zone": "a", "cores": "8"}},
    "spec": {}
  })");
  Json cordoned = node;
  cordoned["spec"]["unschedulable"] = true;
  Json tainted = node;
  tainted["spec"]["taints"] = {{{"key", "gpu"}, {"value", "yes"}, {"effect", "NoSchedule"}}};

  const std::string kCordoned = "0/1 nodes are available: 1 node(s) were unschedulable.";
  const std::string kSelector =
      "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";
  struct Case {
    const char* name;
    Json node;
    std::string pod_spec;
    std::string want;
  };
  const Case cases[] = {
      {"plain pod fits", node, "{}", ""},
      {"cordoned node", cordoned, "{}", kCordoned},
      {"cordon tolerated", cordoned,
       R"({"tolerations":[{"key":"node.kubernetes.io/unschedulable","operator":"Exists"}]})", ""},
      {"matching nodeSelector", node, R"({"nodeSelector":{"disk":"ssd"}})", ""},
      {"other nodeSelector value", node, R"({"nodeSelector":{"disk":"hdd"}})", kSelector},
      {"absent nodeSelector label", node, R"({"nodeSelector":{"gpu":"yes"}})", kSelector},
      {"affinity In", node,
       R"({"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":
           {"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a","b"]}]}]}}}})",
       ""},
      {"affinity NotIn", node,
       R"({"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":
           {"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"NotIn","values":["a"]}]}]}}}})",
       kSelector},
      {"affinity terms are ORed", node,
       R"({"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":
           {"nodeSelectorTerms":[{"matchExpressions":[{"key":"x","operator":"Exists"}]},
                                 {"matchExpressions":[{"key":"cores","operator":"Gt","values":["4"]}]}]}}}})",
       ""},
      {"affinity matchFields", node,
       R"({"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":
           {"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In","values":["node-2"]}]}]}}}})",
       kSelector},
      {"untolerated taint", tainted, "{}",
       "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: yes}."},
      {"tolerated taint", tainted,
       R"({"tolerations":[{"key":"gpu","operator":"Equal","value":"yes","effect":"NoSchedule"}]})",
       ""},
  };
  for (const auto& c : cases) {
    Json pod = {{"metadata", {{"name", "p"}}}, {"spec", Json::parse(c.pod_spec)}};
    EXPECT_EQ(UnschedulableMessage(pod, c.node), c.want) << c.name;
  }
}

}  // namespace
}  // namespace parallelrun::rt::cluster
