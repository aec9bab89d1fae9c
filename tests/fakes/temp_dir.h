// A fresh folder per test under the test's temp root, removed when the object goes away (kept
// when PARALLELRUN_KEEP_TEST_DIRS is set, to look at after a failure).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace parallelrun::fakes {

class TempDir {
 public:
  // prefix: a word for the folder's name, e.g. the suite.
  explicit TempDir(const std::string& prefix = "pr") {
    std::string pattern = ::testing::TempDir() + prefix + "_XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp " << pattern << " failed";
    }
    path_ = pattern;
  }
  ~TempDir() {
    if (std::getenv("PARALLELRUN_KEEP_TEST_DIRS") != nullptr) return;
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace parallelrun::fakes
