#include "tests/cluster/kubelet/pod_ips.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;

class PodIpAllocatorTest : public ::testing::Test {
 protected:
  // A folder that does not exist yet: the allocator makes it.
  fakes::TempDir tmp_{"pod-ips-test"};
  fs::path dir_ = tmp_.Sub("ips");
};

TEST_F(PodIpAllocatorTest, AddressesAreUniqueLoopbackAndNever127_0_0) {
  PodIpAllocator ips(dir_.string());
  std::set<std::string> seen;
  for (int i = 0; i < 600; ++i) {
    std::string ip = ips.Allocate();
    ASSERT_EQ(ip.rfind("127.", 0), 0u) << ip;
    EXPECT_NE(ip.rfind("127.0.0.", 0), 0u) << ip;
    EXPECT_NE(ip.substr(ip.rfind('.') + 1), "0");
    EXPECT_NE(ip.substr(ip.rfind('.') + 1), "255");
    EXPECT_TRUE(seen.insert(ip).second) << ip;
  }
}

TEST_F(PodIpAllocatorTest, PrefixSurvivesARestartAndReservedAddressesAreNotReused) {
  std::string first;
  std::string prefix;
  {
    PodIpAllocator ips(dir_.string());
    prefix = ips.prefix();
    first = ips.Allocate();
  }
  PodIpAllocator again(dir_.string());
  EXPECT_EQ(again.prefix(), prefix);
  EXPECT_TRUE(again.Reserve(first));
  EXPECT_FALSE(again.Reserve(first));
  EXPECT_FALSE(again.Reserve("10.0.0.1"));
  EXPECT_NE(again.Allocate(), first);
}

TEST_F(PodIpAllocatorTest, ReleasedAddressesComeBackOnlyAfterTheOthers) {
  PodIpAllocator ips(dir_.string());
  std::string a = ips.Allocate();
  std::string b = ips.Allocate();
  ips.Release(a);
  std::string c = ips.Allocate();
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
}

}  // namespace
}  // namespace parallelrun::rt::cluster
