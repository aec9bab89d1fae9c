#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
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

// Generous: a busy 2-core machine may take seconds to start Python and import pandas.
constexpr seconds kInitTimeout{120};
constexpr seconds kRunTimeout{120};
constexpr seconds kGrace{30};

std::string Slurp(const std::string& path) {
  StatusOr<std::string> s = ReadFile(path);
  return s.ok() ? *s : std::string("<missing " + path + ">");
}

class PythonWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    code_ = dir_ + "/code";
    output_ = dir_ + "/out";
    ASSERT_TRUE(MakeDirs(code_).ok());
    ASSERT_TRUE(MakeDirs(output_).ok());
  }
  void TearDown() override { worker_.reset(); }

  // Writes the entry script and returns a config for it.
  WorkerConfig Config(const std::string& script, const std::string& name = "score.py") {
    EXPECT_TRUE(WriteFileAtomic(code_ + "/" + name, script).ok());
    WorkerConfig c;
    c.node = "127.0.0.1";
    c.process = "process000";
    c.python = "/usr/bin/python3";
    c.host_dir = std::string(PARALLELRUN_BINARY_DIR) + "/share/parallelrun/python";
    c.entry_script = code_ + "/" + name;
    c.code_dir = code_;
    c.output_dir = output_;
    c.log_dir = output_ + "/logs";
    return c;
  }

  // Starts a worker on `script`; expects it to become ready.
  Worker& StartReady(const std::string& script, WorkerConfig* override_config = nullptr) {
    WorkerConfig c = override_config ? *override_config : Config(script);
    worker_ = MakePythonWorker(c);
    InitOutcome init = worker_->Start(kInitTimeout);
    EXPECT_TRUE(init.ready) << init.error << "\n" << init.detail;
    return *worker_;
  }

  protocol::Lease FileLease(int64_t id, int n, bool with_part = true) {
    protocol::Lease l;
    l.mini_batch_id = id;
    l.input_type = "file";
    for (int i = 0; i < n; ++i) l.files.push_back(dir_ + "/in/f" + std::to_string(i) + ".txt");
    l.items = n;
    if (with_part) l.part_file = PartFile(id);
    return l;
  }
  std::string PartFile(int64_t id) {
    return output_ + "/.parallelrun/parts/" + std::to_string(id) + ".1.part";
  }
  std::string UserLog(const std::string& kind, const std::string& suffix) {
    return output_ + "/logs/user/" + kind + "/127.0.0.1/process000" + suffix;
  }

  fakes::TempDir tmp_{"worker_test"};
  std::string dir_, code_, output_;
  std::unique_ptr<Worker> worker_;
};

TEST_F(PythonWorkerTest, ListResultIsDoneAndWritesOneLinePerElement) {
  Worker& w = StartReady(R"(
import os
calls = []
def init():
    calls.append("init")
    with open(os.path.join(os.environ["PARALLELRUN_OUTPUT_DIR"], "init_count"), "a") as f:
        f.write("init\n")
def run(mini_batch):
    return [os.path.basename(p) + " " + str(len(calls)) for p in mini_batch]
)");
  RunOutcome r = w.Run(FileLease(7, 3), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(r.succeeded, 3);
  EXPECT_EQ(r.failed, 0);
  EXPECT_GE(r.run_s, 0);
  EXPECT_EQ(Slurp(PartFile(7)), "f0.txt 1\nf1.txt 1\nf2.txt 1\n");
  RunOutcome r2 = w.Run(FileLease(8, 1), kRunTimeout);
  EXPECT_EQ(r2.status, AttemptStatus::kRunDone);
  EXPECT_EQ(Slurp(PartFile(8)), "f0.txt 1\n");
  EXPECT_EQ(Slurp(output_ + "/init_count"), "init\n");  // init() ran once
  EXPECT_TRUE(w.alive());
  w.Shutdown(kGrace);
  EXPECT_FALSE(w.alive());
}

TEST_F(PythonWorkerTest, ShorterResultCountsMissingItemsAsFailed) {
  Worker& w = StartReady("def run(mini_batch):\n    return tuple(mini_batch[:2])\n");
  RunOutcome r = w.Run(FileLease(1, 5), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone);
  EXPECT_EQ(r.succeeded, 2);
  EXPECT_EQ(r.failed, 3);
}

TEST_F(PythonWorkerTest, LongerResultIsCappedAtTheItemCount) {
  Worker& w = StartReady("def run(mini_batch):\n    return list(range(10))\n");
  RunOutcome r = w.Run(FileLease(1, 3), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone);
  EXPECT_EQ(r.succeeded, 3);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(Slurp(PartFile(1)), "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n");
}

TEST_F(PythonWorkerTest, EmptyResultWritesAnEmptyPartFile) {
  Worker& w = StartReady("def run(mini_batch):\n    return []\n");
  RunOutcome r = w.Run(FileLease(1, 2), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone);
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(Slurp(PartFile(1)), "");
}

TEST_F(PythonWorkerTest, NoPartFileWritesNothing) {
  Worker& w = StartReady("def run(mini_batch):\n    return mini_batch\n");
  RunOutcome r = w.Run(FileLease(1, 2, /*with_part=*/false), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone);
  EXPECT_EQ(r.succeeded, 2);
  EXPECT_FALSE(PathExists(output_ + "/.parallelrun/parts"));
}

TEST_F(PythonWorkerTest, NoneResultIsWrongTypeNamingNoneType) {
  Worker& w = StartReady("def run(mini_batch):\n    pass\n");
  RunOutcome r = w.Run(FileLease(1, 2), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunWrongType);
  EXPECT_THAT(r.error, HasSubstr("run() returned NoneType; expected a list, tuple or pandas"));
  EXPECT_EQ(r.succeeded, 0);
  EXPECT_EQ(r.failed, 2);
  EXPECT_FALSE(PathExists(PartFile(1)));
  EXPECT_TRUE(w.alive());
}

TEST_F(PythonWorkerTest, ExceptionIsRunExceptionWithTracebackInDetailAndErrorLog) {
  Worker& w = StartReady(R"(
def check(path):
    raise ValueError("bad item " + path.rsplit("/", 1)[-1])

def run(mini_batch):
    return [check(p) for p in mini_batch]
)");
  RunOutcome r = w.Run(FileLease(4, 2), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunException);
  EXPECT_EQ(r.error, "ValueError: bad item f0.txt");
  EXPECT_THAT(r.detail,
              AllOf(HasSubstr("Traceback (most recent call last)"),
                    HasSubstr("score.py\", line 3, in check"), Not(HasSubstr("parallelrun_host"))));
  EXPECT_EQ(r.failed, 2);
  std::string log = Slurp(UserLog("error", ".txt"));
  EXPECT_THAT(log, AllOf(HasSubstr("mini-batch 4 attempt 1: RUN_EXCEPTION"),
                         HasSubstr("ValueError: bad item f0.txt"), HasSubstr("line 3, in check")));
  // The worker survives a failed attempt.
  EXPECT_TRUE(w.alive());
  EXPECT_EQ(w.Run(FileLease(5, 1), kRunTimeout).status, AttemptStatus::kRunException);
}

TEST_F(PythonWorkerTest, InitExceptionIsInitFailedWithTraceback) {
  worker_ = MakePythonWorker(Config(R"(
def init():
    raise RuntimeError("model not found")
def run(mini_batch):
    return mini_batch
)"));
  InitOutcome init = worker_->Start(kInitTimeout);
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_EQ(init.error, "RuntimeError: model not found");
  EXPECT_THAT(init.detail, AllOf(HasSubstr("Traceback"), HasSubstr("line 3, in init"),
                                 Not(HasSubstr("parallelrun_host"))));
  EXPECT_THAT(Slurp(UserLog("error", ".txt")),
              AllOf(HasSubstr("INIT_FAILED"), HasSubstr("RuntimeError: model not found")));
  EXPECT_FALSE(worker_->alive());
  EXPECT_EQ(worker_->Run(FileLease(1, 1), kRunTimeout).status, AttemptStatus::kWorkerDied);
}

TEST_F(PythonWorkerTest, SyntaxErrorIsInitFailedNamingFileAndLine) {
  worker_ = MakePythonWorker(Config("def run(mini_batch):\n    return [\n\ndef init(:\n"));
  InitOutcome init = worker_->Start(kInitTimeout);
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_THAT(init.error, AllOf(HasSubstr("SyntaxError"), HasSubstr("score.py")));
  EXPECT_THAT(init.detail, HasSubstr(code_ + "/score.py\", line"));
  EXPECT_THAT(Slurp(UserLog("error", ".txt")), HasSubstr("SyntaxError"));
}

TEST_F(PythonWorkerTest, ScriptWithoutRunIsInitFailed) {
  worker_ = MakePythonWorker(Config("def init():\n    pass\n"));
  InitOutcome init = worker_->Start(kInitTimeout);
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_THAT(init.error, HasSubstr("defines no run(mini_batch) function"));
}

TEST_F(PythonWorkerTest, UncallableSignatureIsAPermanentInitFailure) {
  worker_ = MakePythonWorker(Config("def run(a, b, c):\n    return a\n"));
  InitOutcome init = worker_->Start(kInitTimeout);
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_TRUE(init.permanent);
  EXPECT_THAT(init.error, HasSubstr("run(mini_batch) or run(mini_batch, mini_batch_context)"));
  // An exception in init() may pass on another try: not permanent.
  worker_ =
      MakePythonWorker(Config("def init():\n    raise OSError('busy')\n"
                              "def run(mini_batch):\n    return mini_batch\n"));
  EXPECT_FALSE(worker_->Start(kInitTimeout).permanent);
}

TEST_F(PythonWorkerTest, ExitDuringImportIsInitFailedWithExitCode) {
  worker_ =
      MakePythonWorker(Config("import os, sys\nsys.stderr.write('no GPU\\n')\nos._exit(5)\n"));
  InitOutcome init = worker_->Start(kInitTimeout);
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_THAT(init.error, HasSubstr("exit code 5"));
  EXPECT_THAT(init.detail, AllOf(HasSubstr("exit code 5"), HasSubstr("no GPU")));
}

TEST_F(PythonWorkerTest, SlowInitIsInitTimeoutWithProgressReports) {
  WorkerConfig c =
      Config("import time\ndef init():\n    time.sleep(600)\ndef run(b):\n    return b\n");
  std::vector<double> reports;
  c.init_progress = [&](pid_t pid, double running_s) {
    EXPECT_GT(pid, 0);
    reports.push_back(running_s);
  };
  worker_ = MakePythonWorker(c);
  InitOutcome init = worker_->Start(seconds(3));  // intentionally short: a report every 1 s
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitTimeout);
  EXPECT_THAT(init.error, HasSubstr("within initTimeout (3 s)"));
  EXPECT_FALSE(worker_->alive());
  ASSERT_EQ(reports.size(), 2u);  // at 1 s and 2 s; at 3 s it is the timeout
  EXPECT_GE(reports[0], 0.9);
  EXPECT_GE(reports[1], 1.9);
}

TEST(InitProgressIntervalTest, ThirtySecondsOrAThirdOfAShortTimeout) {
  EXPECT_EQ(InitProgressInterval(seconds(600)), seconds(30));
  EXPECT_EQ(InitProgressInterval(seconds(60)), seconds(20));
  EXPECT_EQ(InitProgressInterval(seconds(2)), seconds(1));
}

TEST_F(PythonWorkerTest, MissingHostIsInitFailedNamingThePath) {
  WorkerConfig c = Config("def run(b):\n    return b\n");
  c.host_dir = dir_ + "/nowhere";
  worker_ = MakePythonWorker(c);
  InitOutcome init = worker_->Start(kInitTimeout);
  EXPECT_FALSE(init.ready);
  EXPECT_EQ(init.failure, AttemptStatus::kInitFailed);
  EXPECT_THAT(init.error, HasSubstr(dir_ + "/nowhere/parallelrun_host.py"));
}

TEST_F(PythonWorkerTest, RunPastTimeoutIsRunTimeoutAndKillsTheWorkerAndItsChildren) {
  Worker& w = StartReady(R"(
import os, subprocess, time
def run(mini_batch):
    child = subprocess.Popen(["sleep", "300"])
    with open(os.path.join(os.environ["PARALLELRUN_OUTPUT_DIR"], "child_pid"), "w") as f:
        f.write(str(child.pid))
    time.sleep(300)
    return mini_batch
)");
  RunOutcome r = w.Run(FileLease(1, 1), seconds(1));  // intentionally short
  EXPECT_EQ(r.status, AttemptStatus::kRunTimeout);
  EXPECT_EQ(r.error, "run() did not return within 1 s");
  EXPECT_GE(r.run_s, 1.0);
  EXPECT_FALSE(w.alive());
  EXPECT_EQ(w.Run(FileLease(2, 1), kRunTimeout).status, AttemptStatus::kWorkerDied);
  // The script's own subprocess went with it (same process group), if it got to start.
  if (PathExists(output_ + "/child_pid")) {
    std::string proc = "/proc/" + Slurp(output_ + "/child_pid") + "/stat";
    EXPECT_TRUE(fakes::WaitFor(
        [&] {
          std::string stat = Slurp(proc);
          return !PathExists(proc) || stat.find(") Z ") != std::string::npos;
        },
        seconds(60), std::chrono::milliseconds(10)));
  }
}

TEST_F(PythonWorkerTest, ExitInsideRunIsWorkerDiedWithExitCode) {
  Worker& w = StartReady("import os\ndef run(mini_batch):\n    os._exit(3)\n");
  RunOutcome r = w.Run(FileLease(1, 2), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kWorkerDied);
  EXPECT_THAT(r.error, HasSubstr("exit code 3"));
  EXPECT_THAT(r.detail, HasSubstr("exit code 3"));
  EXPECT_FALSE(w.alive());
}

TEST_F(PythonWorkerTest, SignalInsideRunIsWorkerDiedWithTheSignal) {
  Worker& w = StartReady("import os\ndef run(mini_batch):\n    os.kill(os.getpid(), 9)\n");
  RunOutcome r = w.Run(FileLease(1, 2), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kWorkerDied);
  EXPECT_THAT(r.error, HasSubstr("signal 9"));
  EXPECT_THAT(r.detail, HasSubstr("signal 9"));
}

TEST_F(PythonWorkerTest, KillFromAnotherThreadCancelsTheRun) {
  Worker& w = StartReady(R"(
import os, time
def run(mini_batch):
    open(os.path.join(os.environ["PARALLELRUN_OUTPUT_DIR"], "running"), "w").close()
    time.sleep(300)
    return mini_batch
)");
  std::thread killer([&] {
    fakes::WaitFor([&] { return PathExists(output_ + "/running"); }, seconds(60),
                   std::chrono::milliseconds(10));
    w.Kill();
  });
  RunOutcome r = w.Run(FileLease(1, 1), kRunTimeout);
  killer.join();
  EXPECT_EQ(r.status, AttemptStatus::kCancelled);
  EXPECT_FALSE(w.alive());
  EXPECT_EQ(w.Run(FileLease(2, 1), kRunTimeout).status, AttemptStatus::kCancelled);
}

TEST_F(PythonWorkerTest, PrintAndRootLoggingGoToTheStdoutLog) {
  Worker& w = StartReady(R"(
import logging, sys
print("hello from init")
def run(mini_batch):
    print("scoring", len(mini_batch))
    logging.getLogger("score").info("via logging")
    logging.getLogger("score").debug("hidden at INFO")
    print("careful", file=sys.stderr)
    return mini_batch
)");
  EXPECT_EQ(w.Run(FileLease(1, 2), kRunTimeout).status, AttemptStatus::kRunDone);
  EXPECT_THAT(Slurp(UserLog("stdout", ".stdout.txt")),
              ::testing::MatchesRegex("hello from init\nscoring 2\n[-0-9 :,]+\\|INFO\\|score\\|"
                                      "via logging\n"));
  EXPECT_EQ(Slurp(UserLog("stderr", ".stderr.txt")), "careful\n");
}

TEST_F(PythonWorkerTest, EntryScriptLoggerWritesTheEntryScriptLog) {
  Worker& w = StartReady(R"(
from parallelrun import EntryScript
def run(mini_batch):
    log = EntryScript().logger
    log.info("scored %d files", len(mini_batch))
    log.debug("hidden at INFO")
    return mini_batch
)");
  EXPECT_EQ(w.Run(FileLease(1, 2), kRunTimeout).status, AttemptStatus::kRunDone);
  std::string log = Slurp(UserLog("entry_script_log", ".log.txt"));
  EXPECT_THAT(log, AllOf(HasSubstr("|INFO|"), HasSubstr("scored 2 files"),
                         Not(HasSubstr("hidden at INFO"))));
  EXPECT_THAT(log, ::testing::ContainsRegex("^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+\\|INFO\\|"));
  EXPECT_EQ(Slurp(UserLog("stdout", ".stdout.txt")), "");  // not duplicated on stdout
}

TEST_F(PythonWorkerTest, CompatibilityImportGivesTheSameEntryScript) {
  Worker& w = StartReady(R"(
import os
from azureml_user.parallel_run import EntryScript
import parallelrun
def run(mini_batch):
    e = EntryScript()
    assert e is parallelrun.EntryScript()
    return [e.agent_name, e.node_id, e.output_dir, str(os.path.isdir(e.working_dir)),
            e.log_dir, os.getcwd()]
)");
  RunOutcome r = w.Run(FileLease(1, 6), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(Slurp(PartFile(1)), "process000\n127.0.0.1\n" + output_ + "\nTrue\n" + output_ +
                                    "/logs/user/entry_script_log/127.0.0.1\n" + code_ + "\n");
}

TEST_F(PythonWorkerTest, ArgumentsReachSysArgv) {
  WorkerConfig c = Config(R"(
import argparse, sys
parser = argparse.ArgumentParser()
parser.add_argument("--threshold", type=float)
args, _ = parser.parse_known_args()
def run(mini_batch):
    return [sys.argv[0].rsplit("/", 1)[-1], args.threshold] + sys.argv[1:]
)");
  c.arguments = {"--threshold", "0.7", "--model-dir", "/mnt/side inputs/model"};
  Worker& w = StartReady("", &c);
  EXPECT_EQ(w.Run(FileLease(1, 6), kRunTimeout).status, AttemptStatus::kRunDone);
  EXPECT_EQ(Slurp(PartFile(1)),
            "score.py\n0.7\n--threshold\n0.7\n--model-dir\n/mnt/side inputs/model\n");
}

TEST_F(PythonWorkerTest, ShutdownCallsTheScriptsShutdown) {
  Worker& w = StartReady(R"(
import os
def run(mini_batch):
    return mini_batch
def shutdown():
    with open(os.path.join(os.environ["PARALLELRUN_OUTPUT_DIR"], "shutdown_marker"), "w") as f:
        f.write("bye")
)");
  EXPECT_EQ(w.Run(FileLease(1, 1), kRunTimeout).status, AttemptStatus::kRunDone);
  w.Shutdown(kGrace);
  EXPECT_FALSE(w.alive());
  EXPECT_EQ(Slurp(output_ + "/shutdown_marker"), "bye");
}

TEST_F(PythonWorkerTest, HungShutdownIsKilledAfterTheGrace) {
  Worker& w = StartReady(R"(
import time
def run(mini_batch):
    return mini_batch
def shutdown():
    time.sleep(600)
)");
  auto t0 = std::chrono::steady_clock::now();
  w.Shutdown(seconds(1));
  EXPECT_FALSE(w.alive());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(30));
}

TEST_F(PythonWorkerTest, ExtraEnvironmentReachesTheScript) {
  WorkerConfig c = Config(R"(
import os
def run(mini_batch):
    return [os.environ["CUDA_VISIBLE_DEVICES"], os.environ["PARALLELRUN_PROCESS"]]
)");
  c.env = {"CUDA_VISIBLE_DEVICES=1", "PARALLELRUN_PROCESS=impostor"};
  Worker& w = StartReady("", &c);
  EXPECT_EQ(w.Run(FileLease(1, 2), kRunTimeout).status, AttemptStatus::kRunDone);
  EXPECT_EQ(Slurp(PartFile(1)), "1\nprocess000\n");
}

// ---- tabular ----

class PythonWorkerTabularTest : public PythonWorkerTest {
 protected:
  WorkerConfig TabularConfig(const std::string& script) {
    WorkerConfig c = Config(script);
    c.input_type = "tabular";
    return c;
  }
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
};

TEST_F(PythonWorkerTabularTest, CsvRangeWithHeaderBecomesADataFrame) {
  const std::string header = "id,text\n";
  const std::string row1 = "1,first\n";
  const std::string rows = "2,\"two\nlines\"\n3,\"a, b\"\n";
  const std::string row4 = "4,last\n";
  std::string csv = dir_ + "/t.csv";
  ASSERT_TRUE(WriteFileAtomic(csv, header + row1 + rows + row4).ok());
  WorkerConfig c = TabularConfig(R"(
def run(df):
    return [",".join(df.columns)] + ["%d=%s" % (r.id, r.text.replace("\n", "\\n"))
                                     for r in df.itertuples()]
)");
  Worker& w = StartReady("", &c);
  int64_t begin = static_cast<int64_t>(header.size() + row1.size());
  RunOutcome r = w.Run(TableLease(csv, "csv", static_cast<int64_t>(header.size()), begin,
                                  begin + static_cast<int64_t>(rows.size()), 2),
                       kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(r.succeeded, 2);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(Slurp(PartFile(3)), "id,text\n2=two\\nlines\n3=a, b\n");
}

TEST_F(PythonWorkerTabularTest, CsvWithoutHeaderHasNumberedColumns) {
  std::string csv = dir_ + "/t.csv";
  ASSERT_TRUE(WriteFileAtomic(csv, "1,a\n2,b\n3,c\n").ok());
  WorkerConfig c = TabularConfig(
      "def run(df):\n    return [list(df.columns)] + [r[1] for r in df.itertuples()]\n");
  Worker& w = StartReady("", &c);
  RunOutcome r = w.Run(TableLease(csv, "csv", 0, 4, 12, 2), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(r.succeeded, 2);
  EXPECT_EQ(Slurp(PartFile(3)), "[0, 1]\n2\n3\n");
}

TEST_F(PythonWorkerTabularTest, JsonLinesRangeBecomesADataFrame) {
  const std::string l1 = "{\"id\": 1, \"score\": 0.5}\n";
  const std::string l2 = "{\"id\": 2, \"score\": 0.25}\n";
  const std::string l3 = "{\"id\": 3, \"score\": 1.0}\n";
  std::string jsonl = dir_ + "/t.jsonl";
  ASSERT_TRUE(WriteFileAtomic(jsonl, l1 + l2 + l3).ok());
  WorkerConfig c = TabularConfig("def run(df):\n    return df[df.score < 0.9]\n");
  Worker& w = StartReady("", &c);
  int64_t begin = static_cast<int64_t>(l1.size());
  RunOutcome r = w.Run(
      TableLease(jsonl, "jsonl", 0, begin, begin + static_cast<int64_t>(l2.size() + l3.size()), 2),
      kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(r.succeeded, 1);
  EXPECT_EQ(r.failed, 1);
  EXPECT_EQ(Slurp(PartFile(3)), "2 0.25\n");
  EXPECT_FALSE(PathExists(PartFile(3) + ".header"));
}

TEST_F(PythonWorkerTabularTest, AppendRowHeaderWritesTheHeaderBesideThePart) {
  std::string csv = dir_ + "/t.csv";
  ASSERT_TRUE(WriteFileAtomic(csv, "name,count\nx,1\ny,2\n").ok());
  WorkerConfig c =
      TabularConfig("def run(df):\n    df['double'] = df['count'] * 2\n    return df\n");
  c.append_row_header = true;
  Worker& w = StartReady("", &c);
  RunOutcome r = w.Run(TableLease(csv, "csv", 11, 11, 19, 2), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunDone) << r.error << r.detail;
  EXPECT_EQ(Slurp(PartFile(3)), "x 1 2\ny 2 4\n");
  EXPECT_EQ(Slurp(PartFile(3) + ".header"), "name count double\n");
}

TEST_F(PythonWorkerTabularTest, UnreadableTableIsRunExceptionNamingTheStage) {
  WorkerConfig c = TabularConfig("def run(df):\n    return df\n");
  Worker& w = StartReady("", &c);
  RunOutcome r = w.Run(TableLease(dir_ + "/missing.csv", "csv", 0, 0, 10, 1), kRunTimeout);
  EXPECT_EQ(r.status, AttemptStatus::kRunException);
  EXPECT_THAT(r.error, AllOf(HasSubstr("reading the mini-batch"), HasSubstr("FileNotFoundError"),
                             HasSubstr("missing.csv")));
  EXPECT_TRUE(w.alive());
}

// Per-mini-batch overhead of the agent <-> host round trip. Run by hand:
//   worker_test --gtest_also_run_disabled_tests --gtest_filter='*Overhead*'
TEST_F(PythonWorkerTest, DISABLED_OverheadPerMiniBatch) {
  Worker& w = StartReady("def run(mini_batch):\n    return mini_batch\n");
  constexpr int kCalls = 2000;
  for (bool with_part : {false, true}) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) {
      RunOutcome r = w.Run(FileLease(i, 10, with_part), kRunTimeout);
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
