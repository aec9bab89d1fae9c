#include "runtime/cmd/flags.h"

#include <gtest/gtest.h>

namespace parallelrun::rt::cmd {
namespace {

FlagSpec Spec() {
  FlagSpec s;
  s.with_value = {"nodes", "volume"};
  s.switches = {"restart"};
  return s;
}

TEST(FlagsTest, ParsesValuesRepeatsSwitchesAndPositionals) {
  auto f = ParseFlags(
      {"job.yaml", "--nodes", "3", "--volume=a=/x", "--volume", "b=/y", "--restart"}, Spec());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->positional, std::vector<std::string>{"job.yaml"});
  EXPECT_EQ(f->Get("nodes"), "3");
  EXPECT_EQ(f->GetAll("volume"), (std::vector<std::string>{"a=/x", "b=/y"}));
  EXPECT_TRUE(f->switches.count("restart"));
}

TEST(FlagsTest, UnknownFlagIsNamedWithTheKnownOnes) {
  auto f = ParseFlags({"--node", "3"}, Spec());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("unknown flag --node"), std::string::npos);
  EXPECT_NE(f.status().message().find("--nodes"), std::string::npos);
}

TEST(FlagsTest, MissingValueAndValueOnSwitchAreErrors) {
  EXPECT_FALSE(ParseFlags({"--nodes"}, Spec()).ok());
  EXPECT_FALSE(ParseFlags({"--restart=1"}, Spec()).ok());
}

TEST(FlagsTest, ParseIntFlagNamesTheFlag) {
  EXPECT_EQ(*ParseIntFlag("nodes", "4", 1), 4);
  auto bad = ParseIntFlag("nodes", "0", 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "flag --nodes: got \"0\", expected an integer >= 1");
  EXPECT_FALSE(ParseIntFlag("nodes", "3x", 1).ok());
}

}  // namespace
}  // namespace parallelrun::rt::cmd
