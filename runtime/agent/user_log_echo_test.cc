#include "runtime/agent/user_log_echo.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::rt {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class UserLogEchoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    std::filesystem::create_directories(dir_ + "/user/stdout/10.0.0.1");
    std::filesystem::create_directories(dir_ + "/user/stderr/10.0.0.1");
    out_ = ::open_memstream(&buf_, &len_);
  }
  void TearDown() override {
    std::fclose(out_);
    std::free(buf_);
  }
  void Append(const std::string& rel, const std::string& text) {
    std::ofstream(dir_ + "/" + rel, std::ios::app) << text;
  }
  std::string Seen() {
    std::fflush(out_);
    return std::string(buf_, len_);
  }
  fakes::TempDir tmp_{"user_log_echo_test"};
  std::string dir_;
  char* buf_ = nullptr;
  size_t len_ = 0;
  std::FILE* out_ = nullptr;
};

TEST_F(UserLogEchoTest, CopiesNewWholeLinesOfThisNodeOnly) {
  Append("user/stdout/10.0.0.1/process000.stdout.txt", "from an earlier agent\n");
  std::filesystem::create_directories(dir_ + "/user/stdout/10.0.0.2");
  Append("user/stdout/10.0.0.2/process000.stdout.txt", "another node\n");
  UserLogEcho echo(dir_, "10.0.0.1", out_, std::chrono::hours(1));
  echo.Start();
  Append("user/stdout/10.0.0.1/process000.stdout.txt", "scoring a.txt\nhalf");
  Append("user/stderr/10.0.0.1/process001.stderr.txt", "warning: slow\n");
  echo.Poll();
  EXPECT_EQ(Seen(), "[process000 stdout] scoring a.txt\n[process001 stderr] warning: slow\n");
  Append("user/stdout/10.0.0.1/process000.stdout.txt", " a line\nno newline at the end");
  echo.Poll();
  EXPECT_THAT(Seen(), HasSubstr("[process000 stdout] half a line\n"));
  EXPECT_THAT(Seen(), Not(HasSubstr("no newline")));
  echo.Stop();  // the rest is copied at the end
  EXPECT_THAT(Seen(), HasSubstr("[process000 stdout] no newline at the end\n"));
  EXPECT_THAT(Seen(), Not(HasSubstr("earlier agent")));
  EXPECT_THAT(Seen(), Not(HasSubstr("another node")));
}

TEST_F(UserLogEchoTest, TheThreadCopiesAsTheFilesGrow) {
  // A file as the pod log: the thread flushes after every poll, so it can be read meanwhile.
  const std::string log = dir_ + "/pod.log";
  std::FILE* pod_log = std::fopen(log.c_str(), "w");
  ASSERT_NE(pod_log, nullptr);
  UserLogEcho echo(dir_, "10.0.0.1", pod_log, std::chrono::milliseconds(20));
  echo.Start();
  Append("user/stdout/10.0.0.1/process000.stdout.txt", "hello\n");
  auto read = [&log] {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  fakes::WaitFor([&] { return !read().empty(); }, std::chrono::seconds(60),
                 std::chrono::milliseconds(20));
  EXPECT_EQ(read(), "[process000 stdout] hello\n");  // before Stop(): copied by the thread
  echo.Stop();
  std::fclose(pod_log);
}

TEST_F(UserLogEchoTest, OneLinePerFailedAttemptAndEachTracebackOnce) {
  UserLogEcho echo(dir_, "10.0.0.1", out_, std::chrono::hours(1));
  echo.Start();
  Append("user/stdout/10.0.0.1/process000.stdout.txt", "scoring b.txt\n");
  const std::string tb =
      "Traceback (most recent call last):\n  File \"/code/score.py\", line 7, in run\n"
      "ValueError: model returned NaN\n";
  echo.Failed(4, 1, "process000", "RUN_EXCEPTION", "ValueError: model returned NaN", tb);
  echo.Failed(4, 2, "process000", "RUN_EXCEPTION", "ValueError: model returned NaN", tb);
  echo.Failed(-1, 0, "process001", "INIT_FAILED", "OSError: no model", "");
  echo.Stop();
  EXPECT_EQ(Seen(),
            "[process000 stdout] scoring b.txt\n"
            "mini-batch 4 attempt 1 failed (process000): RUN_EXCEPTION: ValueError: model "
            "returned NaN (traceback: logs/user/error/10.0.0.1/process000.txt)\n"
            "    Traceback (most recent call last):\n"
            "      File \"/code/score.py\", line 7, in run\n"
            "    ValueError: model returned NaN\n"
            "mini-batch 4 attempt 2 failed (process000): RUN_EXCEPTION: ValueError: model "
            "returned NaN (traceback: logs/user/error/10.0.0.1/process000.txt)\n"
            "init() failed (process001): INIT_FAILED: OSError: no model (traceback: "
            "logs/user/error/10.0.0.1/process001.txt)\n");
}

}  // namespace
}  // namespace parallelrun::rt
