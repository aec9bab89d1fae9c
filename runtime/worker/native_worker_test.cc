// The native host driven by the agent's worker: the ABI of
// runtime/hosts/native/parallelrun_native.h end to end, with the entry points of
// runtime/hosts/native/testdata/ (built into <build>/tests/native/).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/worker/worker.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::rt {
namespace {

using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Generous: a busy 2-core machine may be slow to start a process.
constexpr seconds kInitTimeout{120};
constexpr seconds kRunTimeout{120};
constexpr seconds kGrace{30};

const std::string kBinaryDir = PARALLELRUN_BINARY_DIR;
const std::string kNativeHost = kBinaryDir + "/bin/parallelrun-native-host";

std::string TestLibrary(const std::string& name) {
  return kBinaryDir + "/tests/native/lib" + name + ".so";
}

std::string Slurp(const std::string& path) {
  StatusOr<std::string> s = ReadFile(path);
  return s.ok() ? *s : std::string("<missing " + path + ">");
}

class NativeWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    code_ = dir_ + "/code";
    output_ = dir_ + "/out";
    ASSERT_TRUE(MakeDirs(code_).ok());
    ASSERT_TRUE(MakeDirs(output_).ok());
    // The test binary is not beside the host (build/tests vs build/bin).
    ::setenv("PARALLELRUN_NATIVE_HOST", kNativeHost.c_str(), 1);
  }
  void TearDown() override { worker_.reset(); }

  WorkerConfig Config(const std::string& library = TestLibrary("prn_test_entry"),
                      const std::string& process = "process000") {
    WorkerConfig c;
    c.node = "127.0.0.1";
    c.process = process;
    c.entry_script = library;
    c.code_dir = code_;
    c.output_dir = output_;
    c.log_dir = output_ + "/logs";
    return c;
  }

  InitOutcome Start(const WorkerConfig& c, seconds init_timeout = kInitTimeout) {
    worker_ = MakeNativeWorker(c);
    return worker_->Start(init_timeout);
  }

  Worker& StartReady(const WorkerConfig& c) {
    InitOutcome init = Start(c);
    EXPECT_TRUE(init.ready) << init.error << "\n" << init.detail;
    return *worker_;
  }
  Worker& StartReady() { return StartReady(Config()); }

  // A file mini-batch; the library picks its behaviour by the first file's name.
  protocol::Lease FileLease(int64_t id, std::vector<std::string> names, bool with_part = true) {
    protocol::Lease l;
    l.mini_batch_id = id;
    l.input_type = "file";
    for (const auto& n : names) l.files.push_back(dir_ + "/in/" + n);
    l.items = static_cast<int64_t>(names.size());
    if (with_part) l.part_file = PartFile(id);
    return l;
  }
  std::string PartFile(int64_t id) {
    return output_ + "/.parallelrun/parts/" + std::to_string(id) + ".1.part";
  }
  std::string UserLog(const std::string& kind, const std::string& suffix,
                      const std::string& process = "process000") {
    return output_ + "/logs/user/" + kind + "/127.0.0.1/" + process + suffix;
  }

  fakes::TempDir tmp_{"native_worker_test"};
  std::string dir_, code_, output_;
  std::unique_ptr<Worker> worker_;
};

TEST_F(NativeWorkerTest, EmittedRowsGoToThePartFileOneLineEach) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(7, {"a.txt", "b.txt", "c.txt"}), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(r.succeeded, 3);
  EXPECT_EQ(r.failed, 0);
  EXPECT_GE(r.run_s, 0);
  EXPECT_GE(r.cpu_s, 0);
  EXPECT_EQ(Slurp(PartFile(7)), "a.txt 1\nb.txt 1\nc.txt 1\n");
  RunOutcome r2 = w.Run(FileLease(8, {"d.txt"}), kRunTimeout);
  EXPECT_EQ(r2.status, AttemptStatus::kRunDone);
  EXPECT_EQ(Slurp(PartFile(8)), "d.txt 1\n");
  EXPECT_EQ(Slurp(output_ + "/init_count"), "init\n");  // prn_init() ran once
  EXPECT_TRUE(w.alive());
}

TEST_F(NativeWorkerTest, ShutdownCallsPrnShutdownAndEndsTheProcess) {
  Worker& w = StartReady();
  EXPECT_EQ(w.Run(FileLease(1, {"a.txt"}), kRunTimeout).status, AttemptStatus::kRunDone);
  w.Shutdown(kGrace);
  EXPECT_FALSE(w.alive());
  EXPECT_EQ(Slurp(output_ + "/shutdown_marker"), "bye");
}

TEST_F(NativeWorkerTest, SucceededSetByTheLibraryCountsTheRestAsFailed) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(1, {"few.txt", "b.txt", "c.txt"}), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone);
  EXPECT_EQ(r.succeeded, 1);
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(Slurp(PartFile(1)), "few.txt\nb.txt\nc.txt\n");
}

TEST_F(NativeWorkerTest, RowsFromManyThreadsAreAllWrittenAndSucceededIsCappedAtItems) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(1, {"threads.txt", "b.txt"}), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error;
  EXPECT_EQ(r.succeeded, 2);
  EXPECT_EQ(r.failed, 0);
  std::string part = Slurp(PartFile(1));
  for (const char* row : {"t0\n", "t1\n", "t2\n", "t3\n"}) {
    size_t count = 0;
    for (size_t at = part.find(row); at != std::string::npos; at = part.find(row, at + 1)) {
      ++count;
    }
    EXPECT_EQ(count, 250u) << row;
  }
  EXPECT_EQ(part.size(), 1000u * 3);
}

TEST_F(NativeWorkerTest, NoPartFileWritesNothingAndCountsEveryRow) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(1, {"a.txt", "b.txt"}, /*with_part=*/false), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone);
  EXPECT_EQ(r.succeeded, 2);
  EXPECT_FALSE(PathExists(output_ + "/.parallelrun/parts"));
}

TEST_F(NativeWorkerTest, ErrorReturnIsRunExceptionWithTheMessageAndTheWorkerGoesOn) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(4, {"error.txt", "b.txt"}), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunException);
  EXPECT_EQ(r.error, "bad item error.txt");
  EXPECT_THAT(r.detail,
              AllOf(HasSubstr("second line of the reason"), HasSubstr("prn_run() returned 3")));
  EXPECT_EQ(r.succeeded, 0);
  EXPECT_EQ(r.failed, 2);
  EXPECT_FALSE(PathExists(PartFile(4)));
  EXPECT_THAT(Slurp(UserLog("error", ".txt")),
              AllOf(HasSubstr("mini-batch 4 attempt 1: RUN_EXCEPTION in prn_run()"),
                    HasSubstr("bad item error.txt\nsecond line of the reason")));
  EXPECT_TRUE(w.alive());
  RunOutcome next = w.Run(FileLease(5, {"a.txt"}), kRunTimeout);
  EXPECT_EQ(next.status, AttemptStatus::kRunDone);
  EXPECT_EQ(Slurp(PartFile(5)), "a.txt 1\n");
}

TEST_F(NativeWorkerTest, EscapingExceptionIsRunExceptionWithItsMessage) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(1, {"throw.txt"}), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunException);
  EXPECT_THAT(r.error, HasSubstr("out of range: throw.txt"));
  EXPECT_TRUE(w.alive());
}

struct CrashCase {
  const char* file;       // picks the library's behaviour
  const char* expected;   // in the error
  const char* in_stderr;  // in the detail (the host's note in the stderr log), or ""
};

class NativeWorkerCrashTest : public NativeWorkerTest,
                              public ::testing::WithParamInterface<CrashCase> {};

TEST_P(NativeWorkerCrashTest, CrashInsideRunIsWorkerDiedAndAReplacementWorks) {
  const CrashCase& c = GetParam();
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(9, {c.file, "b.txt"}), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kWorkerDied);
  EXPECT_THAT(r.error, AllOf(HasSubstr("died during run()"), HasSubstr(c.expected)));
  EXPECT_THAT(r.detail, AllOf(HasSubstr(c.expected), HasSubstr(c.in_stderr)));
  EXPECT_FALSE(w.alive());
  EXPECT_FALSE(PathExists(PartFile(9)));
  EXPECT_EQ(w.Run(FileLease(10, {"a.txt"}), kRunTimeout).status, AttemptStatus::kWorkerDied);

  // A crash fails the attempt, not the node: the next worker runs the mini-batch.
  worker_.reset();
  Worker& next = StartReady(Config(TestLibrary("prn_test_entry"), "process001"));
  RunOutcome again = next.Run(FileLease(9, {"a.txt", "b.txt"}), kRunTimeout);
  EXPECT_EQ(again.status, AttemptStatus::kRunDone);
  EXPECT_EQ(Slurp(PartFile(9)), "a.txt 1\nb.txt 1\n");
}

INSTANTIATE_TEST_SUITE_P(
    Crashes, NativeWorkerCrashTest,
    ::testing::Values(
        CrashCase{"segv.txt", "signal 11", "SIGSEGV (segmentation fault) in prn_run() of "},
        CrashCase{"abort.txt", "signal 6", "SIGABRT (abort) in prn_run() of "},
        // Reported from the alternate signal stack.
        CrashCase{"overflow.txt", "signal 11", "SIGSEGV (segmentation fault) in prn_run() of "},
        CrashCase{"exit.txt", "exit code 3", ""}),
    [](const auto& info) {
      std::string file = info.param.file;
      return file.substr(0, file.find('.'));
    });

TEST_F(NativeWorkerTest, SegfaultDetailNamesTheLibraryAndTheMiniBatch) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(12, {"segv.txt"}), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kWorkerDied);
  EXPECT_THAT(r.detail, AllOf(HasSubstr(TestLibrary("prn_test_entry")),
                              HasSubstr("mini-batch 12 attempt 1"), HasSubstr("backtrace:")));
  EXPECT_THAT(Slurp(UserLog("stderr", ".stderr.txt")), HasSubstr("SIGSEGV"));
}

TEST_F(NativeWorkerTest, EndlessLoopIsRunTimeoutAndTheProcessIsKilled) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(1, {"loop.txt"}), seconds(1));  // intentionally short
  EXPECT_EQ(r.status, AttemptStatus::kRunTimeout);
  EXPECT_EQ(r.error, "run() did not return within 1 s");
  EXPECT_GE(r.run_s, 1.0);
  EXPECT_FALSE(w.alive());
  EXPECT_EQ(w.Run(FileLease(2, {"a.txt"}), kRunTimeout).status, AttemptStatus::kWorkerDied);
}

TEST_F(NativeWorkerTest, KillFromAnotherThreadCancelsTheRun) {
  Worker& w = StartReady();
  std::thread killer([&] {
    fakes::WaitFor([&] { return PathExists(output_ + "/running"); }, seconds(60),
                   std::chrono::milliseconds(10));
    w.Kill();
  });
  RunOutcome r = w.Run(FileLease(1, {"loop.txt"}), kRunTimeout);
  killer.join();
  EXPECT_EQ(r.status, AttemptStatus::kCancelled);
  EXPECT_FALSE(w.alive());
}

// ---- start-up ----

TEST_F(NativeWorkerTest, InitErrorIsInitFailedWithTheMessage) {
  WorkerConfig c = Config();
  c.arguments = {"--fail-init"};
  InitOutcome init = Start(c);
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_EQ(init.error, "model not found: /models/missing.bin");
  EXPECT_THAT(init.detail, AllOf(HasSubstr("searched /models"), HasSubstr("returned 7")));
  EXPECT_THAT(Slurp(UserLog("error", ".txt")),
              AllOf(HasSubstr("prn_init(): INIT_FAILED"), HasSubstr("searched /models")));
  EXPECT_FALSE(worker_->alive());
  EXPECT_EQ(worker_->Run(FileLease(1, {"a.txt"}), kRunTimeout).status, AttemptStatus::kWorkerDied);
}

struct InitCase {
  const char* argument;
  AttemptStatus failure;
  std::vector<std::string> in_error;
};

class NativeWorkerInitTest : public NativeWorkerTest,
                             public ::testing::WithParamInterface<InitCase> {};

TEST_P(NativeWorkerInitTest, FailingInitIsReportedWithAReason) {
  const InitCase& ic = GetParam();
  WorkerConfig c = Config();
  c.arguments = {ic.argument};
  InitOutcome init =
      Start(c, ic.failure == AttemptStatus::kInitTimeout ? seconds(1) : kInitTimeout);
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, ic.failure) << init.error;
  for (const std::string& s : ic.in_error) EXPECT_THAT(init.error, HasSubstr(s));
  EXPECT_FALSE(worker_->alive());
}

INSTANTIATE_TEST_SUITE_P(
    Init, NativeWorkerInitTest,
    ::testing::Values(
        InitCase{"--fail-init-silently",
                 AttemptStatus::kInitFailed,
                 {"prn_init() of ", "returned 2", "gave no reason"}},
        InitCase{"--throw-in-init",
                 AttemptStatus::kInitFailed,
                 {"a C++ exception escaped", "cannot parse the model"}},
        InitCase{"--crash-in-init",
                 AttemptStatus::kInitFailed,
                 {"exited before init() finished", "signal 11"}},
        InitCase{"--hang-in-init", AttemptStatus::kInitTimeout, {"within initTimeout (1 s)"}}),
    [](const auto& info) {
      std::string name;
      for (char ch : std::string(info.param.argument)) {
        if (std::isalnum(static_cast<unsigned char>(ch))) name += ch;
      }
      return name;
    });

struct LoadCase {
  const char* library;  // under <build>/tests/native, or a missing file
  std::vector<std::string> in_error;
};

class NativeWorkerLoadTest : public NativeWorkerTest,
                             public ::testing::WithParamInterface<LoadCase> {};

TEST_P(NativeWorkerLoadTest, UnusableLibraryIsInitFailedNamingIt) {
  const LoadCase& lc = GetParam();
  std::string library = TestLibrary(lc.library);
  InitOutcome init = Start(Config(library));
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_THAT(init.error, HasSubstr(library));
  for (const std::string& s : lc.in_error) EXPECT_THAT(init.error, HasSubstr(s));
  EXPECT_THAT(Slurp(UserLog("error", ".txt")), HasSubstr(library));
  EXPECT_FALSE(worker_->alive());
}

INSTANTIATE_TEST_SUITE_P(
    Load, NativeWorkerLoadTest,
    ::testing::Values(LoadCase{"missing", {"cannot load the native entry point", "No such file"}},
                      LoadCase{"prn_test_partial1", {"does not export prn_abi_version()"}},
                      LoadCase{"prn_test_partial2", {"does not export prn_run()"}},
                      LoadCase{
                          "prn_test_partial3",
                          {"built for native ABI version 99", "speaks version 1", "rebuild it"}},
                      LoadCase{"prn_test_partial4",
                               {"cannot load the native entry point", "undefined symbol",
                                "prn_test_undefined_function"}}),
    [](const auto& info) { return std::string(info.param.library); });

TEST_F(NativeWorkerTest, MissingHostIsInitFailedNamingThePath) {
  ::setenv("PARALLELRUN_NATIVE_HOST", (dir_ + "/nowhere/parallelrun-native-host").c_str(), 1);
  InitOutcome init = Start(Config());
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_THAT(init.error, AllOf(HasSubstr(dir_ + "/nowhere/parallelrun-native-host"),
                                HasSubstr("PARALLELRUN_NATIVE_HOST")));
}

// ---- what the library sees ----

TEST_F(NativeWorkerTest, ContextNamesTheWorkerAndItsFolders) {
  Worker& w = StartReady();
  RunOutcome r = w.Run(FileLease(1, {"context.txt"}), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error;
  EXPECT_EQ(Slurp(PartFile(1)), "127.0.0.1\nprocess000\n" + output_ + "\n" + output_ +
                                    "/logs/user/entry_script_log/127.0.0.1\n" + output_ +
                                    "/.parallelrun/work/127.0.0.1/process000\nfile\n" + code_ +
                                    "\nlibprn_test_entry.so\n");
  EXPECT_TRUE(IsDirectory(output_ + "/.parallelrun/work/127.0.0.1/process000"));
  EXPECT_TRUE(IsDirectory(output_ + "/logs/user/entry_script_log/127.0.0.1"));
}

TEST_F(NativeWorkerTest, ArgumentsFollowTheLibraryInArgv) {
  WorkerConfig c = Config();
  c.arguments = {"--threshold", "0.7", "--model-dir", "/mnt/side inputs/model"};
  Worker& w = StartReady(c);
  EXPECT_EQ(w.Run(FileLease(1, {"args.txt"}), kRunTimeout).status, AttemptStatus::kRunDone);
  EXPECT_EQ(Slurp(PartFile(1)),
            "libprn_test_entry.so\n--threshold\n0.7\n--model-dir\n/mnt/side inputs/model\nNULL\n");
}

TEST_F(NativeWorkerTest, LogCallbackWritesTheEntryScriptLogAtTheJobsLevel) {
  Worker& w = StartReady();
  EXPECT_EQ(w.Run(FileLease(1, {"log.txt", "b.txt"}), kRunTimeout).status, AttemptStatus::kRunDone);
  std::string log = Slurp(UserLog("entry_script_log", ".log.txt"));
  EXPECT_THAT(log,
              AllOf(HasSubstr("|WARNING|"), HasSubstr("|scored 2 files\n"), HasSubstr("|ERROR|"),
                    HasSubstr("|from a thread\n"), Not(HasSubstr("hidden at INFO"))));
  EXPECT_THAT(log, ::testing::ContainsRegex(
                       "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}\\|INFO\\|"
                       "[0-9]+\\|[0-9]+\\|initialised\n"));
}

TEST_F(NativeWorkerTest, DebugLevelKeepsDebugLines) {
  WorkerConfig c = Config();
  c.logging_level = "DEBUG";
  Worker& w = StartReady(c);
  EXPECT_EQ(w.Run(FileLease(1, {"log.txt"}), kRunTimeout).status, AttemptStatus::kRunDone);
  EXPECT_THAT(Slurp(UserLog("entry_script_log", ".log.txt")), HasSubstr("|DEBUG|"));
}

TEST_F(NativeWorkerTest, PrintfAndStderrGoToTheUserLogs) {
  Worker& w = StartReady();
  EXPECT_EQ(w.Run(FileLease(1, {"print.txt", "b.txt"}), kRunTimeout).status,
            AttemptStatus::kRunDone);
  EXPECT_EQ(Slurp(UserLog("stdout", ".stdout.txt")), "scoring 2 files\n");
  EXPECT_EQ(Slurp(UserLog("stderr", ".stderr.txt")), "careful\n");
}

// ---- tabular ----

class NativeWorkerTabularTest : public NativeWorkerTest {
 protected:
  protocol::Lease TableLease(const std::string& file, const std::string& format, int64_t header_end,
                             int64_t begin, int64_t end, int64_t items) {
    protocol::Lease l;
    l.mini_batch_id = 3;
    l.input_type = "tabular";
    l.file = file;
    l.format = format;
    l.header = header_end > 0;
    l.header_end = header_end;
    l.begin = begin;
    l.end = end;
    l.items = items;
    l.part_file = PartFile(3);
    return l;
  }
  Worker& StartTabular() {
    WorkerConfig c = Config();
    c.input_type = "tabular";
    return StartReady(c);
  }
};

TEST_F(NativeWorkerTabularTest, CsvRangeArrivesWithItsHeaderBytes) {
  const std::string header = "id,text\n";
  const std::string row1 = "1,first\n";
  const std::string rows = "2,two\n3,\"a, b\"\n";
  std::string csv = dir_ + "/t.csv";
  ASSERT_TRUE(WriteFileAtomic(csv, header + row1 + rows + "4,last\n").ok());
  Worker& w = StartTabular();
  int64_t begin = static_cast<int64_t>(header.size() + row1.size());
  int64_t end = begin + static_cast<int64_t>(rows.size());
  RunOutcome r = w.Run(TableLease(csv, "csv", 8, begin, end, 2), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(r.succeeded, 2);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(Slurp(PartFile(3)),
            "format=csv has_header=1 range=16-31 items=2 file=t.csv\n"
            "header=id,text\n\n"
            "row=2,two\nrow=3,\"a, b\"\n");
}

TEST_F(NativeWorkerTabularTest, JsonLinesRangeHasNoHeader) {
  std::string jsonl = dir_ + "/t.jsonl";
  ASSERT_TRUE(WriteFileAtomic(jsonl, "{\"id\": 1}\n{\"id\": 2}\n").ok());
  Worker& w = StartTabular();
  RunOutcome r = w.Run(TableLease(jsonl, "jsonl", 0, 10, 20, 1), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(Slurp(PartFile(3)),
            "format=jsonl has_header=0 range=10-20 items=1 file=t.jsonl\n"
            "header=\nrow={\"id\": 2}\n");
}

TEST_F(NativeWorkerTabularTest, EmptyRangeIsDoneWithoutCallingTheLibrary) {
  std::string csv = dir_ + "/t.csv";
  ASSERT_TRUE(WriteFileAtomic(csv, "id\n").ok());
  Worker& w = StartTabular();
  RunOutcome r = w.Run(TableLease(csv, "csv", 3, 3, 3, 0), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone);
  EXPECT_EQ(r.succeeded, 0);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(Slurp(PartFile(3)), "");
}

TEST_F(NativeWorkerTabularTest, UnreadableTableIsRunExceptionNamingTheStageAndFile) {
  Worker& w = StartTabular();
  RunOutcome r = w.Run(TableLease(dir_ + "/missing.csv", "csv", 0, 0, 10, 1), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunException);
  EXPECT_THAT(r.error, AllOf(HasSubstr("reading the mini-batch"), HasSubstr("missing.csv"),
                             HasSubstr("No such file")));
  EXPECT_EQ(r.failed, 1);
  EXPECT_TRUE(w.alive());
}

TEST_F(NativeWorkerTabularTest, TruncatedTableIsRunException) {
  std::string csv = dir_ + "/t.csv";
  ASSERT_TRUE(WriteFileAtomic(csv, "1,a\n").ok());
  Worker& w = StartTabular();
  RunOutcome r = w.Run(TableLease(csv, "csv", 0, 0, 100, 3), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunException);
  EXPECT_THAT(r.error, AllOf(HasSubstr("reading the mini-batch"), HasSubstr("shorter than")));
}

// Per-mini-batch overhead of the agent <-> native host round trip. Run by hand:
//   native_worker_test --gtest_also_run_disabled_tests --gtest_filter='*Overhead*'
TEST_F(NativeWorkerTest, DISABLED_OverheadPerMiniBatch) {
  Worker& w = StartReady();
  constexpr int kCalls = 5000;
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) names.push_back("f" + std::to_string(i) + ".txt");
  for (bool with_part : {false, true}) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) {
      RunOutcome r = w.Run(FileLease(i, names, with_part), kRunTimeout);
      ASSERT_EQ(r.status, AttemptStatus::kRunDone);
    }
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s part file: %.3f ms per Run() (%d calls, 10 items each)\n",
                with_part ? "with" : "without", ms / kCalls, kCalls);
  }
}

}  // namespace
}  // namespace parallelrun::rt
