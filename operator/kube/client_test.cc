#include "operator/kube/client.h"

#include <gtest/gtest.h>

namespace parallelrun::op::kube {
namespace {

TEST(ResourceTest, CorePathsHaveNoGroup) {
  EXPECT_EQ(resources::kPods.CollectionPath("ns"), "/api/v1/namespaces/ns/pods");
  EXPECT_EQ(resources::kPods.ObjectPath("ns", "p"), "/api/v1/namespaces/ns/pods/p");
  EXPECT_EQ(resources::kPods.ObjectPath("ns", "p", "status"),
            "/api/v1/namespaces/ns/pods/p/status");
  EXPECT_EQ(resources::kPods.api_version(), "v1");
}

TEST(ResourceTest, EmptyNamespaceMeansAllNamespaces) {
  EXPECT_EQ(resources::kConfigMaps.CollectionPath(""), "/api/v1/configmaps");
  EXPECT_EQ(resources::kParallelRunJobs.CollectionPath(""),
            "/apis/parallelrun.io/v1alpha1/parallelrunjobs");
}

TEST(ResourceTest, GroupPathsUseApis) {
  EXPECT_EQ(resources::kLeases.ObjectPath("kube-system", "op"),
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/op");
  EXPECT_EQ(resources::kParallelRunJobs.ObjectPath("ns", "j", "status"),
            "/apis/parallelrun.io/v1alpha1/namespaces/ns/parallelrunjobs/j/status");
  EXPECT_EQ(resources::kParallelRunJobs.api_version(), "parallelrun.io/v1alpha1");
}

TEST(ResourceTest, ClusterScopedResourcesIgnoreTheNamespace) {
  const Resource crds{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                      "CustomResourceDefinition", false};
  EXPECT_EQ(crds.ObjectPath("ignored", "a.b.c"),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/a.b.c");
}

TEST(ResourceTest, OperatorResourcesAreWhatRbacGrants) {
  struct Want {
    const Resource* r;
    const char* api_version;
    const char* resource;
    const char* kind;
  };
  for (const Want& w : {Want{&resources::kPods, "v1", "pods", "Pod"},
                        Want{&resources::kSecrets, "v1", "secrets", "Secret"},
                        Want{&resources::kConfigMaps, "v1", "configmaps", "ConfigMap"},
                        Want{&resources::kServices, "v1", "services", "Service"},
                        Want{&resources::kEvents, "v1", "events", "Event"},
                        Want{&resources::kLeases, "coordination.k8s.io/v1", "leases", "Lease"},
                        Want{&resources::kParallelRunJobs, "parallelrun.io/v1alpha1",
                             "parallelrunjobs", "ParallelRunJob"}}) {
    EXPECT_EQ(w.r->api_version(), w.api_version) << w.kind;
    EXPECT_EQ(w.r->resource, w.resource);
    EXPECT_EQ(w.r->kind, w.kind);
    EXPECT_TRUE(w.r->namespaced) << w.kind;
  }
}

TEST(StatusPredicatesTest, IsGoneIsTheGoneCode) {
  EXPECT_TRUE(IsGone(rt::GoneError("GET /x: 410 Gone (Expired): too old")));
  EXPECT_FALSE(IsGone(rt::FailedPreconditionError("GET /x: 410 Gone (Expired): too old")));
  EXPECT_FALSE(IsGone(rt::FailedPreconditionError("output owned by another job")));
  EXPECT_FALSE(IsGone(rt::NotFoundError("Gone")));
  EXPECT_FALSE(IsGone(Status::Ok()));
  EXPECT_TRUE(IsNotFound(rt::NotFoundError("x")));
  EXPECT_TRUE(IsAlreadyExists(rt::AlreadyExistsError("x")));
  EXPECT_TRUE(IsConflict(rt::AbortedError("x")));
  EXPECT_FALSE(IsConflict(rt::AlreadyExistsError("x")));
}

}  // namespace
}  // namespace parallelrun::op::kube
