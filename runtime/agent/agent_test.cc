#include "runtime/agent/agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "runtime/base/files.h"
#include "runtime/protocol/http_server.h"
#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt {
namespace {

using protocol::AttemptResult;
using protocol::Lease;
using protocol::LeaseRef;
using protocol::WorkerEvent;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr auto kWait = 20s;  // generous: the machine is shared
using Key = std::pair<int64_t, int>;

// What the fake workers do, shared by all of them, and what happened to them.
struct WorkerScript {
  std::mutex mu;
  std::condition_variable cv;
  std::function<InitOutcome(const WorkerConfig&)> init = [](const WorkerConfig&) {
    return InitOutcome{.ready = true};
  };
  std::set<int64_t> die_on;    // first attempt: the process dies (WORKER_DIED)
  std::set<int64_t> fail_on;   // RUN_EXCEPTION
  std::set<int64_t> block_on;  // run() waits until released or killed
  std::set<int64_t> released;
  std::map<int64_t, std::string> blocked;  // mini-batch -> process, while blocked
  std::vector<WorkerConfig> configs;       // every worker created, in order
  std::vector<std::string> shutdown, killed;
  // Called as each worker is created (on the slot thread, before its init()).
  std::function<void(const WorkerConfig&)> on_create;
  int runs = 0;            // run() calls started
  int completed = 0;       // run() calls returned
  bool hold_runs = false;  // run() waits while this is true (stalls every worker)
  // How long each run() takes (the work of an attempt; 0: instant).
  std::chrono::milliseconds run_for{0};

  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kWait, pred);
  }
  void Release(int64_t id) {
    std::lock_guard<std::mutex> lock(mu);
    released.insert(id);
    cv.notify_all();
  }
};

class FakeWorker : public Worker {
 public:
  FakeWorker(WorkerConfig config, std::shared_ptr<WorkerScript> script, pid_t pid)
      : config_(std::move(config)), script_(std::move(script)), pid_(pid) {}

  InitOutcome Start(std::chrono::seconds) override {
    InitOutcome out = script_->init(config_);
    std::lock_guard<std::mutex> lock(script_->mu);
    if (killed_) out = InitOutcome{.error = "killed"};
    alive_ = out.ready;
    return out;
  }

  RunOutcome Run(const Lease& lease, std::chrono::seconds) override {
    std::unique_lock<std::mutex> lock(script_->mu);
    RunOutcome out = RunLocked(lease, lock);
    ++script_->completed;
    script_->cv.notify_all();
    return out;
  }

  RunOutcome RunLocked(const Lease& lease, std::unique_lock<std::mutex>& lock) {
    ++script_->runs;
    script_->cv.notify_all();
    script_->cv.wait(lock, [&] { return !script_->hold_runs || killed_; });
    if (script_->run_for.count() > 0) {
      // The attempt's work: only a kill ends it early.
      script_->cv.wait_for(lock, script_->run_for, [&] { return killed_; });
    }
    const int64_t id = lease.mini_batch_id;
    if (script_->block_on.count(id)) {
      script_->blocked[id] = config_.process;
      script_->cv.notify_all();
      script_->cv.wait(lock, [&] { return script_->released.count(id) || killed_; });
      script_->blocked.erase(id);
    }
    if (killed_) return {AttemptStatus::kCancelled, 0, 0, 0, 0, "killed", ""};
    if (lease.attempt == 1 && script_->die_on.count(id)) {
      alive_ = false;
      return {AttemptStatus::kWorkerDied, 0, 0, 0, 0, "the worker process ended",
              "signal 9 (Killed)"};
    }
    if (script_->fail_on.count(id)) {
      return {AttemptStatus::kRunException,
              0,
              0,
              0.01,
              0.01,
              "ValueError: bad row",
              "Traceback (most recent call last):\n  File \"score.py\"\nValueError: bad row"};
    }
    return {AttemptStatus::kRunDone, lease.items, 0, 0.002, 0.001, "", ""};
  }

  void Shutdown(std::chrono::seconds) override {
    std::lock_guard<std::mutex> lock(script_->mu);
    alive_ = false;
    script_->shutdown.push_back(config_.process);
    script_->cv.notify_all();
  }
  void Kill() override {
    std::lock_guard<std::mutex> lock(script_->mu);
    if (!killed_) script_->killed.push_back(config_.process);
    killed_ = true;
    alive_ = false;
    script_->cv.notify_all();
  }
  bool alive() const override {
    std::lock_guard<std::mutex> lock(script_->mu);
    return alive_;
  }
  pid_t pid() const override { return pid_; }
  const WorkerConfig& config() const override { return config_; }

 private:
  const WorkerConfig config_;
  std::shared_ptr<WorkerScript> script_;
  const pid_t pid_;
  bool alive_ = false;   // guarded by script_->mu
  bool killed_ = false;  // guarded by script_->mu
};

// A coordinator with a fixed list of mini-batches; records everything the agent says.
class FakeCoordinator : public protocol::CoordinatorClient {
 public:
  std::mutex mu;
  std::condition_variable cv;
  protocol::RegisterResponse reg;
  std::deque<protocol::Lease> pending;
  std::set<Key> outstanding;      // handed out, no result accepted yet
  bool done_when_drained = true;  // done once everything was handed out and accepted
  bool say_done = false;
  bool done_in_results = false;  // the answer to the report that ends the work says done
  bool say_stop = false;
  int retry_after_ms = 20;
  std::vector<LeaseRef> cancel_next;
  bool unavailable = false;   // every call fails as if the coordinator were down
  Status register_error;      // non-ok: Register returns it
  int failing_reports = 0;    // the next N reports fail (Unavailable)
  int unnamed_sends = 0;      // a result is named in `accepted` only after this many sends
  bool hold_reports = false;  // a report with results waits while true
  int held_reports = 0;
  int refused_calls = 0;         // calls that failed because `unavailable`
  bool refuse_results = false;   // fencing: every report with results gets 409 (Aborted)
  bool gone_after_done = false;  // the coordinator ends (unavailable) once it said done
  // A report's `lease` is answered in its reply, as the coordinator does (false: as one that
  // predates combined calls, which ignores it).
  bool answers_lease_in_report = true;
  int combined_calls = 0;                            // reports answered with their lease part
  std::optional<nlohmann::json> spec_after_restart;  // Register answers with this spec

  std::vector<protocol::RegisterRequest> registrations;
  std::vector<LeaseRef> released;
  // Like the coordinator: a lease is valid until its grant or its last listed renewal +
  // reg.lease_seconds; a renewal or result that comes later is recorded here.
  std::map<Key, std::chrono::steady_clock::time_point> valid_until;
  std::vector<std::string> expired;

  std::vector<protocol::LeaseRequest> lease_requests;
  std::vector<size_t> leases_given;
  std::vector<protocol::ResultsRequest> reports;
  std::map<Key, int> sends;
  std::map<Key, AttemptResult> accepted;
  std::vector<WorkerEvent> events;

  StatusOr<protocol::RegisterResponse> Register(const protocol::RegisterRequest& req) override {
    std::lock_guard<std::mutex> lock(mu);
    if (unavailable) return Refuse();
    if (!register_error.ok()) return register_error;
    EXPECT_EQ(req.node, "127.0.0.1");
    EXPECT_EQ(req.pid, ::getpid());
    registrations.push_back(req);
    cv.notify_all();
    protocol::RegisterResponse resp = reg;
    if (registrations.size() > 1 && spec_after_restart) resp.spec = *spec_after_restart;
    return resp;
  }
  Status Refuse() {
    ++refused_calls;
    cv.notify_all();
    return UnavailableError("connection refused");
  }

  StatusOr<protocol::LeaseResponse> Lease(const protocol::LeaseRequest& req) override {
    std::lock_guard<std::mutex> lock(mu);
    if (unavailable) return Refuse();
    return LeaseLocked(req);
  }

  protocol::LeaseResponse LeaseLocked(const protocol::LeaseRequest& req) {
    lease_requests.push_back(req);
    protocol::LeaseResponse resp;
    resp.cancel = std::move(cancel_next);
    cancel_next.clear();
    const auto expiry = std::chrono::steady_clock::now() + std::chrono::seconds(reg.lease_seconds);
    for (const auto& ref : req.renew) {
      CheckValid({ref.mini_batch_id, ref.attempt}, "renewal");
      valid_until[{ref.mini_batch_id, ref.attempt}] = expiry;
    }
    for (int i = 0; i < req.max && !pending.empty(); ++i) {
      resp.leases.push_back(pending.front());
      outstanding.insert({pending.front().mini_batch_id, pending.front().attempt});
      valid_until[{pending.front().mini_batch_id, pending.front().attempt}] = expiry;
      pending.pop_front();
    }
    leases_given.push_back(resp.leases.size());
    resp.done = say_done || (done_when_drained && pending.empty() && outstanding.empty());
    if (resp.done && gone_after_done) unavailable = true;
    resp.stop = say_stop;
    if (resp.leases.empty()) resp.retry_after_ms = retry_after_ms;
    cv.notify_all();
    return resp;
  }

  StatusOr<protocol::ResultsResponse> Report(const protocol::ResultsRequest& req) override {
    std::unique_lock<std::mutex> lock(mu);
    if (hold_reports && !req.results.empty()) {
      ++held_reports;
      cv.notify_all();
      cv.wait(lock, [&] { return !hold_reports; });
    }
    if (unavailable) return Refuse();
    reports.push_back(req);
    if (failing_reports > 0) {
      --failing_reports;
      return UnavailableError("503 journal busy");
    }
    const bool combined = answers_lease_in_report && req.lease.has_value();
    protocol::ResultsResponse resp;
    if (refuse_results && !req.results.empty()) {
      for (const auto& r : req.results) {
        ++sends[{r.mini_batch_id, r.attempt}];
        outstanding.erase({r.mini_batch_id, r.attempt});
        resp.refused.push_back({r.mini_batch_id, r.attempt});
      }
      cv.notify_all();
      // A request with a lease part is never answered 409: the refused come back with the lease.
      if (!combined) return AbortedError("409 refused all results");
      resp.lease = LeaseLocked(*req.lease);
      ++combined_calls;
      return resp;
    }
    for (const auto& r : req.results) {
      Key key{r.mini_batch_id, r.attempt};
      if (sends[key] == 0) CheckValid(key, "result");
      if (++sends[key] <= unnamed_sends) continue;
      EXPECT_EQ(accepted.count(key), 0u) << "result accepted twice";
      accepted[key] = r;
      outstanding.erase(key);
      resp.accepted.push_back({r.mini_batch_id, r.attempt});
    }
    events.insert(events.end(), req.events.begin(), req.events.end());
    for (const auto& ref : req.released) {
      released.push_back(ref);
      outstanding.erase({ref.mini_batch_id, ref.attempt});
    }
    resp.stop = say_stop;
    resp.done = done_in_results && pending.empty() && outstanding.empty();
    if (combined) {
      EXPECT_EQ(req.lease->node, req.node);
      resp.lease = LeaseLocked(*req.lease);
      ++combined_calls;
    }
    cv.notify_all();
    return resp;
  }

  StatusOr<protocol::Progress> GetProgress() override { return protocol::Progress{}; }

  void CheckValid(Key key, const char* what) {
    auto it = valid_until.find(key);
    if (it == valid_until.end() || std::chrono::steady_clock::now() < it->second) return;
    expired.push_back(std::string(what) + " of mini-batch " + std::to_string(key.first) +
                      " after its lease expired");
  }

  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kWait, pred);
  }
  template <typename F>
  void With(F f) {
    std::lock_guard<std::mutex> lock(mu);
    f();
    cv.notify_all();
  }
  int CountEvents(const std::string& kind) {
    int n = 0;
    for (const auto& e : events) n += e.kind == kind;
    return n;
  }
};

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    coordinator_ = new FakeCoordinator;
    script_ = std::make_shared<WorkerScript>();
    auto& reg = coordinator_->reg;
    reg.spec = {{"apiVersion", "parallelrun.io/v1alpha1"},
                {"kind", "ParallelRunJob"},
                {"spec",
                 {{"entryScript", "score.py"},
                  {"processCountPerNode", 2},
                  {"runInvocationTimeout", 60},
                  {"loggingLevel", "DEBUG"},
                  {"inputs", {{{"name", "images"}, {"type", "file"}}}}}}};
    reg.code_dir = dir_ + "/code";
    reg.output_dir = dir_ + "/out";
    reg.log_dir = dir_ + "/out/logs";
    reg.parts_dir = dir_ + "/out/.parallelrun/parts";
    reg.arguments = {"--threshold", "0.7"};
    reg.lease_seconds = 90;
  }

  void SetProcessCount(int n) { coordinator_->reg.spec["spec"]["processCountPerNode"] = n; }
  void AddMiniBatches(int n, int items = 3) {
    for (int i = 0; i < n; ++i) {
      Lease l;
      l.mini_batch_id = i;
      l.input_type = "file";
      l.items = items;
      for (int k = 0; k < items; ++k) l.files.push_back("/in/" + std::to_string(i * items + k));
      coordinator_->pending.push_back(l);
    }
  }

  // Starts the agent on its own thread (it takes ownership of the fake coordinator).
  void Start(AgentOptions options = {}) {
    if (options.node.empty()) options.node = "127.0.0.1";
    options.host_dir = "/opt/host";
    if (!options.gpus) options.gpus = std::vector<std::string>{};
    auto script = script_;
    auto pid = std::make_shared<std::atomic<int>>(1000);
    agent_ = std::make_unique<Agent>(
        options, std::unique_ptr<protocol::CoordinatorClient>(coordinator_),
        [script, pid](WorkerConfig config) -> std::unique_ptr<Worker> {
          if (script->on_create) script->on_create(config);
          {
            std::lock_guard<std::mutex> lock(script->mu);
            script->configs.push_back(config);
            script->cv.notify_all();
          }
          return std::make_unique<FakeWorker>(std::move(config), script, ++*pid);
        },
        RealClock::Get());
    exit_ = std::async(std::launch::async, [this] { return agent_->Run(); });
  }

  // Says done once `n` workers have started (so every slot had its worker before the end).
  // Needs done_when_drained = false.
  void SayDoneAfterStarted(int n) {
    ASSERT_TRUE(
        coordinator_->WaitFor([&] { return coordinator_->CountEvents("WORKER_STARTED") >= n; }));
    coordinator_->With([&] { coordinator_->say_done = true; });
  }
  void ReleaseRuns() {
    std::lock_guard<std::mutex> lock(script_->mu);
    script_->hold_runs = false;
    script_->cv.notify_all();
  }

  // The agent's exit code, or -1 if it did not end in time.
  int ExitCode() {
    if (exit_.wait_for(kWait) != std::future_status::ready) {
      ADD_FAILURE() << "the agent did not exit";
      agent_->Stop();
      return -1;
    }
    return exit_.get();
  }

  // The accepted result of an attempt (empty status when there is none).
  AttemptResult Result(int64_t mini_batch, int attempt) {
    auto it = coordinator_->accepted.find({mini_batch, attempt});
    return it == coordinator_->accepted.end() ? AttemptResult{} : it->second;
  }

  std::string Log(const std::string& rel) {
    auto text = ReadFile(dir_ + "/out/logs/" + rel);
    return text.ok() ? *text : "<missing " + rel + ">";
  }

  fakes::TempDir tmp_{"agent_test"};  // declared first: removed after the agent ended
  std::string dir_;
  FakeCoordinator* coordinator_ = nullptr;  // owned by the agent once started
  std::shared_ptr<WorkerScript> script_;
  std::unique_ptr<Agent> agent_;
  std::future<int> exit_;
};

// A coordinator that runs no job (refused: OutputInUse; or finished before) says so at
// registration: the agent ends with 0, starts no worker and writes nothing in the output folder.
TEST_F(AgentTest, RegistrationThatSaysTheJobEndedEndsTheAgentWritingNothing) {
  coordinator_->reg.ended = true;
  Start();
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_TRUE(script_->configs.empty());
  EXPECT_FALSE(PathExists(dir_ + "/out/logs"));
}

TEST_F(AgentTest, WorkerConfigComesFromTheRegistration) {
  SetProcessCount(2);
  coordinator_->reg.spec["spec"]["inputs"][0]["type"] = "tabular";
  coordinator_->reg.spec["spec"]["appendRowHeader"] = true;
  coordinator_->done_when_drained = false;
  AgentOptions options;
  options.python = "/usr/local/bin/python3.11";
  options.gpus = std::vector<std::string>{"3", "5"};
  Start(options);
  SayDoneAfterStarted(2);
  EXPECT_EQ(ExitCode(), 0);

  ASSERT_EQ(script_->configs.size(), 2u);
  std::map<std::string, WorkerConfig> by_name;
  for (const auto& c : script_->configs) by_name[c.process] = c;
  ASSERT_EQ(by_name.count("process000"), 1u);
  ASSERT_EQ(by_name.count("process001"), 1u);
  const WorkerConfig& c = by_name["process000"];
  EXPECT_EQ(c.node, "127.0.0.1");
  EXPECT_EQ(c.python, "/usr/local/bin/python3.11");
  EXPECT_EQ(c.host_dir, "/opt/host");
  EXPECT_EQ(c.entry_script, dir_ + "/code/score.py");
  EXPECT_EQ(c.code_dir, dir_ + "/code");
  EXPECT_EQ(c.arguments, (std::vector<std::string>{"--threshold", "0.7"}));
  EXPECT_EQ(c.input_type, "tabular");
  EXPECT_EQ(c.output_dir, dir_ + "/out");
  EXPECT_EQ(c.log_dir, dir_ + "/out/logs");
  EXPECT_EQ(c.logging_level, "DEBUG");
  EXPECT_TRUE(c.append_row_header);
  EXPECT_TRUE(c.agent_syncs_parts);  // part files are committed by the agent, per report
  // One GPU per worker, in slot order, when there are enough.
  std::set<std::string> gpus;
  for (const auto& w : script_->configs) gpus.insert(w.env.at(0));
  EXPECT_EQ(gpus, (std::set<std::string>{"CUDA_VISIBLE_DEVICES=3", "CUDA_VISIBLE_DEVICES=5"}));
}

TEST_F(AgentTest, TooFewGpusAreSharedAndNotPinned) {
  SetProcessCount(2);
  AgentOptions options;
  options.gpus = std::vector<std::string>{"0"};
  coordinator_->done_when_drained = false;
  Start(options);
  SayDoneAfterStarted(2);
  EXPECT_EQ(ExitCode(), 0);
  for (const auto& c : script_->configs) EXPECT_TRUE(c.env.empty()) << c.process;
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("share all GPUs"));
}

TEST_F(AgentTest, ProcessNumbersContinueAfterEarlierWorkersOnTheNode) {
  SetProcessCount(1);
  coordinator_->done_when_drained = false;
  ASSERT_TRUE(MakeDirs(dir_ + "/out/logs/sys/node/127.0.0.1").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/out/logs/sys/node/127.0.0.1/process004.txt", "").ok());
  Start();
  SayDoneAfterStarted(1);
  EXPECT_EQ(ExitCode(), 0);
  ASSERT_EQ(script_->configs.size(), 1u);
  EXPECT_EQ(script_->configs[0].process, "process005");
}

TEST_F(AgentTest, LeasesAndResultsAreBatched) {
  SetProcessCount(2);
  AddMiniBatches(20);
  script_->hold_runs = true;
  Start();
  // Both workers hold a lease and two more wait in the agent's queue: 2 x processCountPerNode.
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->outstanding.size() == 4; }));
  // The first report with a result now hangs, as over a slow network; the other results pile up
  // meanwhile and go together in the next one.
  coordinator_->With([&] { coordinator_->hold_reports = true; });
  ReleaseRuns();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->completed >= 4; }));
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->held_reports > 0; }));
  coordinator_->With([&] { coordinator_->hold_reports = false; });
  EXPECT_EQ(ExitCode(), 0);

  auto& c = *coordinator_;
  EXPECT_EQ(c.accepted.size(), 20u);
  for (const auto& [key, r] : c.accepted) {
    EXPECT_EQ(r.status, "RUN_DONE");
    EXPECT_EQ(r.total, 3);
    EXPECT_EQ(r.succeeded, 3);
    EXPECT_EQ(r.failed, 0);
  }
  size_t most_leases = 0, lease_calls_with_work = 0;
  for (size_t n : c.leases_given) {
    most_leases = std::max(most_leases, n);
    lease_calls_with_work += n > 0;
  }
  EXPECT_GE(most_leases, 2u);
  EXPECT_LT(lease_calls_with_work, 20u);
  int max_asked = 0;
  for (const auto& r : c.lease_requests) max_asked = std::max(max_asked, r.max);
  // Short attempts: up to kMaxLeasesPerWorker (12, agent_impl.h) held per worker; these attempts
  // are instant, so the most.
  EXPECT_LE(max_asked, 12 * 2);
  size_t most_results = 0, reports_with_results = 0;
  for (const auto& r : c.reports) {
    most_results = std::max(most_results, r.results.size());
    reports_with_results += !r.results.empty();
  }
  EXPECT_GE(most_results, 2u);
  EXPECT_LT(reports_with_results, 20u);
}

TEST_F(AgentTest, AReportCarriesTheLeaseCallWhileWorkersHaveWorkQueued) {
  SetProcessCount(2);
  AddMiniBatches(60);
  // 20 ms attempts: the agent keeps ~12 leases per worker queued and refills at 3/4, so most
  // rounds have results to report while the queue still holds work for every worker.
  script_->run_for = 20ms;
  Start();
  EXPECT_EQ(ExitCode(), 0);
  auto& c = *coordinator_;
  EXPECT_EQ(c.accepted.size(), 60u);
  EXPECT_GE(c.combined_calls, 1);
  EXPECT_TRUE(c.expired.empty());
  // Fewer requests than with a lease call and a report each round.
  EXPECT_LT(c.lease_requests.size() - c.combined_calls + c.reports.size(),
            c.lease_requests.size() + c.reports.size());
}

TEST_F(AgentTest, ACoordinatorThatIgnoresTheLeasePartOfAReportGetsItsOwnLeaseCall) {
  SetProcessCount(2);
  AddMiniBatches(60);
  script_->run_for = 20ms;
  coordinator_->answers_lease_in_report = false;  // predates combined calls
  Start();
  EXPECT_EQ(ExitCode(), 0);
  auto& c = *coordinator_;
  EXPECT_EQ(c.accepted.size(), 60u);
  EXPECT_EQ(c.combined_calls, 0);
  int reports_that_asked = 0;
  for (const auto& r : c.reports) reports_that_asked += r.lease.has_value();
  EXPECT_GE(reports_that_asked, 1);  // it was asked, got no answer, and the agent asked alone
  EXPECT_TRUE(c.expired.empty());
}

TEST_F(AgentTest, DeadWorkerIsReplacedWithTheNextProcessName) {
  SetProcessCount(1);
  AddMiniBatches(6);
  script_->die_on = {2};
  Start();
  EXPECT_EQ(ExitCode(), 0);

  ASSERT_EQ(script_->configs.size(), 2u);
  EXPECT_EQ(script_->configs[0].process, "process000");
  EXPECT_EQ(script_->configs[1].process, "process001");
  auto& c = *coordinator_;
  ASSERT_EQ(c.accepted.size(), 6u);
  EXPECT_EQ(Result(2, 1).status, "WORKER_DIED");
  EXPECT_EQ(Result(2, 1).process, "process000");
  EXPECT_EQ(Result(2, 1).failed, 3);
  EXPECT_EQ(Result(5, 1).process, "process001");
  bool exit_event = false;
  for (const auto& e : c.events) {
    if (e.kind == "WORKER_EXITED" && e.process == "process000") {
      exit_event = true;
      EXPECT_THAT(e.detail, HasSubstr("signal 9"));
    }
  }
  EXPECT_TRUE(exit_event);
  std::string main_log = Log("sys/node/127.0.0.1/_main.txt");
  EXPECT_THAT(main_log, HasSubstr("process000 (pid 1001) exited (signal 9 (Killed)); starting a "
                                  "replacement"));
  EXPECT_THAT(main_log, HasSubstr("process001: started, pid 1002"));
  EXPECT_THAT(Log("sys/error/127.0.0.1/process000.txt"), HasSubstr("status=WORKER_DIED"));
}

TEST_F(AgentTest, RepeatedInitFailureGivesUpTheNode) {
  SetProcessCount(2);
  AddMiniBatches(3);
  coordinator_->done_when_drained = false;
  script_->init = [](const WorkerConfig&) {
    return InitOutcome{
        .failure = AttemptStatus::kInitFailed,
        .error = "ImportError: No module named 'torch'",
        .detail = "Traceback (most recent call last):\nImportError: No module named 'torch'"};
  };
  Start();
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->CountEvents("NODE_GAVE_UP") > 0; }));
  // The agent keeps talking to the coordinator (for done or stop) but starts nothing more.
  const size_t requests = coordinator_->lease_requests.size();
  ASSERT_TRUE(
      coordinator_->WaitFor([&] { return coordinator_->lease_requests.size() > requests; }));
  coordinator_->With([&] { coordinator_->say_done = true; });
  EXPECT_EQ(ExitCode(), 0);

  EXPECT_EQ(script_->configs.size(), 6u);  // 3 x processCountPerNode
  auto& c = *coordinator_;
  EXPECT_EQ(c.CountEvents("INIT_FAILED"), 6);
  EXPECT_EQ(c.CountEvents("NODE_GAVE_UP"), 1);
  EXPECT_EQ(c.CountEvents("WORKER_STARTED"), 0);
  for (const auto& r : c.lease_requests) EXPECT_EQ(r.max, 0);
  EXPECT_TRUE(c.accepted.empty());
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("giving up on this node"));
  std::string error_log = Log("sys/error/127.0.0.1/process005.txt");
  EXPECT_THAT(error_log, HasSubstr("status=INIT_FAILED init()"));
  EXPECT_THAT(error_log, HasSubstr("No module named 'torch'"));
}

TEST_F(AgentTest, InitSuccessResetsTheConsecutiveFailureCount) {
  SetProcessCount(1);
  AddMiniBatches(4);
  script_->die_on = {0, 1};
  // Every other worker fails init(): never 3 in a row.
  script_->init = [](const WorkerConfig& c) {
    bool fail = c.process == "process001" || c.process == "process003";
    return fail ? InitOutcome{.failure = AttemptStatus::kInitFailed,
                              .error = "ImportError: flaky mount"}
                : InitOutcome{.ready = true};
  };
  Start();
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_EQ(coordinator_->accepted.size(), 4u);
  EXPECT_EQ(coordinator_->CountEvents("INIT_FAILED"), 2);
  EXPECT_EQ(coordinator_->CountEvents("NODE_GAVE_UP"), 0);
}

TEST_F(AgentTest, AHungInitGivesUpTheNodeAtOnce) {
  SetProcessCount(2);
  AddMiniBatches(4);
  // A hung init() would hang again: no 3 x processCountPerNode tries of initTimeout each.
  script_->init = [](const WorkerConfig& c) {
    return c.process == "process000"
               ? InitOutcome{.failure = AttemptStatus::kInitTimeout,
                             .error = "init() did not finish within initTimeout (600 s)"}
               : InitOutcome{.ready = true};
  };
  Start();
  ASSERT_TRUE(
      coordinator_->WaitFor([&] { return coordinator_->CountEvents("NODE_GAVE_UP") == 1; }));
  EXPECT_EQ(coordinator_->CountEvents("INIT_TIMEOUT"), 1);
  EXPECT_EQ(coordinator_->CountEvents("INIT_FAILED"), 0);
  agent_->Stop();
  ExitCode();
}

TEST_F(AgentTest, CancelKillsTheWorkerRunningThatAttempt) {
  SetProcessCount(2);
  AddMiniBatches(6);
  script_->block_on = {0, 1};
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 2; }));
  std::string victim, survivor;
  {
    std::lock_guard<std::mutex> lock(script_->mu);
    victim = script_->blocked[1];
    survivor = script_->blocked[0];
  }
  coordinator_->With([&] { coordinator_->cancel_next = {{1, 1}}; });
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->accepted.count({1, 1}) > 0; }));
  {
    std::lock_guard<std::mutex> lock(script_->mu);
    EXPECT_EQ(script_->killed, std::vector<std::string>{victim});
    EXPECT_EQ(script_->blocked.count(0), 1u);  // the other attempt runs on
  }
  // Work remains, so the killed worker is replaced under the next name.
  ASSERT_TRUE(script_->WaitFor([&] { return script_->configs.size() == 3; }));
  EXPECT_EQ(script_->configs[2].process, "process002");
  script_->Release(0);
  EXPECT_EQ(ExitCode(), 0);

  auto& c = *coordinator_;
  EXPECT_EQ(Result(1, 1).status, "CANCELLED");
  EXPECT_EQ(Result(1, 1).process, victim);
  EXPECT_EQ(Result(0, 1).status, "RUN_DONE");
  EXPECT_EQ(Result(0, 1).process, survivor);
  EXPECT_EQ(c.accepted.size(), 6u);
}

TEST_F(AgentTest, CancelOfAQueuedLeaseDropsIt) {
  SetProcessCount(1);
  AddMiniBatches(3);
  script_->block_on = {0};
  coordinator_->done_when_drained = false;
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  // Mini-batch 1 sits in the agent's queue behind the blocked one.
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->outstanding.count({1, 1}) > 0; }));
  coordinator_->With([&] { coordinator_->cancel_next = {{1, 1}}; });
  const size_t requests = coordinator_->lease_requests.size();
  ASSERT_TRUE(
      coordinator_->WaitFor([&] { return coordinator_->lease_requests.size() > requests + 1; }));
  script_->Release(0);
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->accepted.size() == 2; }));
  coordinator_->With([&] { coordinator_->say_done = true; });
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_EQ(coordinator_->accepted.count({1, 1}), 0u);
  EXPECT_TRUE(script_->killed.empty());
}

TEST_F(AgentTest, DoneFinishesTheWorkShutsWorkersDownAndExitsZero) {
  SetProcessCount(2);
  AddMiniBatches(7);
  script_->hold_runs = true;  // until both workers are up, so both have work to finish
  Start();
  ASSERT_TRUE(
      coordinator_->WaitFor([&] { return coordinator_->CountEvents("WORKER_STARTED") == 2; }));
  ReleaseRuns();
  EXPECT_EQ(ExitCode(), 0);
  auto& c = *coordinator_;
  EXPECT_EQ(c.accepted.size(), 7u);
  std::set<std::string> shut(script_->shutdown.begin(), script_->shutdown.end());
  EXPECT_EQ(shut, (std::set<std::string>{"process000", "process001"}));
  EXPECT_TRUE(script_->killed.empty());
  EXPECT_EQ(c.CountEvents("WORKER_STARTED"), 2);
  EXPECT_EQ(c.CountEvents("WORKER_EXITED"), 2);
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("exits with code 0"));
}

TEST_F(AgentTest, DoneInTheAnswerToTheLastReportEndsTheAgent) {
  SetProcessCount(2);
  AddMiniBatches(5);
  // Lease answers never say done: the agent hears it only from the answer to its last report.
  coordinator_->done_when_drained = false;
  coordinator_->done_in_results = true;
  // Both workers are running before any attempt ends (instant attempts could all run on the
  // first worker, the job ending before the second one started).
  script_->hold_runs = true;
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->runs >= 2; }));
  ReleaseRuns();
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_EQ(coordinator_->accepted.size(), 5u);
  std::set<std::string> shut(script_->shutdown.begin(), script_->shutdown.end());
  EXPECT_EQ(shut, (std::set<std::string>{"process000", "process001"}));
  EXPECT_TRUE(script_->killed.empty());
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("coordinator says done"));
}

TEST_F(AgentTest, QueuedLeasesAreFinishedWhenDoneArrives) {
  SetProcessCount(1);
  AddMiniBatches(2);
  script_->block_on = {0};
  coordinator_->done_when_drained = false;
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->pending.empty(); }));
  coordinator_->With([&] { coordinator_->say_done = true; });
  const size_t requests = coordinator_->lease_requests.size();
  ASSERT_TRUE(
      coordinator_->WaitFor([&] { return coordinator_->lease_requests.size() > requests; }));
  script_->Release(0);
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_EQ(coordinator_->accepted.size(), 2u);
}

TEST_F(AgentTest, StopGivesQueuedLeasesBackAtOnceLetsRunningWorkFinishAndExits130) {
  SetProcessCount(1);
  AddMiniBatches(5);
  script_->block_on = {0};
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  // Mini-batch 0 runs, mini-batch 1 waits in the agent's queue.
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->outstanding.size() == 2; }));
  agent_->Stop();
  // The queued lease goes back while mini-batch 0 still runs: no waiting for its lease to expire.
  ASSERT_TRUE(coordinator_->WaitFor([&] { return !coordinator_->released.empty(); }));
  {
    std::lock_guard<std::mutex> lock(coordinator_->mu);
    ASSERT_EQ(coordinator_->released.size(), 1u);
    EXPECT_EQ(coordinator_->released[0].mini_batch_id, 1);
    EXPECT_EQ(coordinator_->released[0].attempt, 1);
    EXPECT_TRUE(coordinator_->accepted.empty());
  }
  EXPECT_EQ(script_->blocked.count(0), 1u);
  script_->Release(0);
  EXPECT_EQ(ExitCode(), 130);
  auto& c = *coordinator_;
  ASSERT_EQ(c.accepted.size(), 1u);
  EXPECT_EQ(Result(0, 1).status, "RUN_DONE");
  EXPECT_TRUE(c.outstanding.empty());  // nothing left to expire on the coordinator
  EXPECT_EQ(script_->runs, 1);
  EXPECT_EQ(script_->shutdown, std::vector<std::string>{"process000"});
  EXPECT_TRUE(script_->killed.empty());
  std::string main_log = Log("sys/node/127.0.0.1/_main.txt");
  EXPECT_THAT(main_log, HasSubstr("stop requested: no new leases, 1 queued lease(s) given back"));
  EXPECT_THAT(main_log, HasSubstr("exits with code 130"));
}

TEST_F(AgentTest, StopDuringRegistrationExits130) {
  coordinator_->unavailable = true;
  AgentOptions options;
  options.max_connect_seconds = 600;
  Start(options);
  agent_->Stop();
  EXPECT_EQ(ExitCode(), 130);
}

TEST_F(AgentTest, CoordinatorStopKillsWorkersAndExitsZero) {
  SetProcessCount(1);
  AddMiniBatches(3);
  script_->block_on = {0};
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  coordinator_->With([&] { coordinator_->say_stop = true; });
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_EQ(script_->killed, std::vector<std::string>{"process000"});
  EXPECT_EQ(Result(0, 1).status, "CANCELLED");
  EXPECT_EQ(script_->runs, 1);
}

TEST_F(AgentTest, UnreachableCoordinatorAtRegistrationExits1AfterMaxConnectSeconds) {
  coordinator_->unavailable = true;
  AgentOptions options;
  options.max_connect_seconds = 1;
  auto start = std::chrono::steady_clock::now();
  Start(options);
  EXPECT_EQ(ExitCode(), 1);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_TRUE(script_->configs.empty());
}

TEST_F(AgentTest, CoordinatorLostForLongerThanMaxUnreachableExits1AndKillsWorkers) {
  SetProcessCount(1);
  AddMiniBatches(3);
  script_->block_on = {0};
  AgentOptions options;
  options.max_unreachable_seconds = 1;
  Start(options);
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  coordinator_->With([&] { coordinator_->unavailable = true; });
  EXPECT_EQ(ExitCode(), 1);
  EXPECT_EQ(script_->killed, std::vector<std::string>{"process000"});
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("coordinator unreachable for 1 s"));
}

TEST_F(AgentTest, UnreachableLimitIsTheJobsProgressUpdateTimeout) {
  coordinator_->reg.spec["spec"]["progressUpdateTimeout"] = 500;
  coordinator_->done_when_drained = false;
  coordinator_->say_done = true;
  Start();
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"),
              HasSubstr("gives up after the coordinator is unreachable for 500 s"));
}

TEST_F(AgentTest, UnreachableLimitDefaultsLikeTheCoordinatorsProgressTimeout) {
  coordinator_->done_when_drained = false;
  coordinator_->say_done = true;
  Start();
  EXPECT_EQ(ExitCode(), 0);
  // 3 x (runInvocationTimeout + 30) with runInvocationTimeout 60.
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"),
              HasSubstr("gives up after the coordinator is unreachable for 270 s"));
}

// The coordinator goes away (killed) and a new one answers at the same address: the agent keeps
// its worker, the result that finished meanwhile and its leases, registers again naming what it
// holds, and reports.
TEST_F(AgentTest, CoordinatorRestartKeepsWorkersResultsAndLeases) {
  SetProcessCount(1);
  AddMiniBatches(2);
  script_->block_on = {0, 1};
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.count(0) == 1; }));
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->outstanding.size() == 2; }));
  coordinator_->With([&] { coordinator_->unavailable = true; });
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->refused_calls > 0; }));
  // Mini-batch 0 finishes while the coordinator is away; the worker goes on with 1 (queued).
  script_->Release(0);
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.count(1) == 1; }));
  const int refused = coordinator_->refused_calls;
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->refused_calls > refused; }));
  coordinator_->With([&] { coordinator_->unavailable = false; });
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->accepted.count({0, 1}) > 0; }));
  std::vector<std::vector<Key>> held;  // of each registration
  coordinator_->With([&] {
    for (const auto& r : coordinator_->registrations) {
      held.emplace_back();
      for (const auto& ref : r.held) held.back().emplace_back(ref.mini_batch_id, ref.attempt);
      std::sort(held.back().begin(), held.back().end());
    }
  });
  script_->Release(1);
  // The second registration names what the node still holds: the running attempt and the
  // finished one whose result the coordinator has not accepted yet.
  EXPECT_EQ(held, (std::vector<std::vector<Key>>{{}, {{0, 1}, {1, 1}}}));
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_EQ(Result(0, 1).status, "RUN_DONE");
  EXPECT_EQ(Result(1, 1).status, "RUN_DONE");
  EXPECT_TRUE(script_->killed.empty());
  EXPECT_EQ(script_->configs.size(), 1u);  // the same worker all along
  std::string main_log = Log("sys/node/127.0.0.1/_main.txt");
  EXPECT_THAT(main_log,
              HasSubstr("coordinator unreachable (Unavailable: connection refused); keeping"));
  EXPECT_THAT(main_log, HasSubstr("registered again with 1 running and 0 queued attempt(s)"));
}

TEST_F(AgentTest, AnotherJobAnsweringAfterAnOutageEndsTheAgent) {
  SetProcessCount(1);
  AddMiniBatches(2);
  script_->block_on = {0};
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  coordinator_->With([&] {
    coordinator_->spec_after_restart = coordinator_->reg.spec;
    (*coordinator_->spec_after_restart)["metadata"]["name"] = "another-job";
    coordinator_->unavailable = true;
  });
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->refused_calls > 0; }));
  coordinator_->With([&] { coordinator_->unavailable = false; });
  EXPECT_EQ(ExitCode(), 1);
  EXPECT_EQ(script_->killed, std::vector<std::string>{"process000"});
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("another job now answers"));
}

TEST_F(AgentTest, FirstPerfSampleIsTakenBeforeAnyWorkerStarts) {
  SetProcessCount(2);
  coordinator_->reg.spec["spec"]["resourceMonitorInterval"] = 600;
  coordinator_->done_when_drained = false;
  const std::string csv = dir_ + "/out/logs/perf/127.0.0.1/node_resource_usage.csv";
  // Lines of the node CSV as each worker was created (on the slot threads).
  struct Seen {
    std::mutex mu;
    std::vector<size_t> lines;
  };
  auto seen = std::make_shared<Seen>();
  script_->on_create = [csv, seen](const WorkerConfig&) {
    auto text = ReadFile(csv);
    size_t n = text.ok() ? static_cast<size_t>(std::count(text->begin(), text->end(), '\n')) : 0;
    std::lock_guard<std::mutex> lock(seen->mu);
    seen->lines.push_back(n);
  };
  Start();
  SayDoneAfterStarted(2);
  EXPECT_EQ(ExitCode(), 0);
  std::lock_guard<std::mutex> lock(seen->mu);
  ASSERT_EQ(seen->lines.size(), 2u);
  for (size_t n : seen->lines) EXPECT_GE(n, 2u);  // the header and the first sample
}

TEST_F(AgentTest, RejectedRegistrationExits1) {
  coordinator_->register_error = UnauthenticatedError("POST /v1/register: 401 wrong bearer token");
  Start();
  EXPECT_EQ(ExitCode(), 1);
}

TEST_F(AgentTest, ResultsAreResentUntilAccepted) {
  SetProcessCount(2);
  AddMiniBatches(6);
  coordinator_->failing_reports = 2;
  coordinator_->unnamed_sends = 1;
  Start();
  EXPECT_EQ(ExitCode(), 0);
  auto& c = *coordinator_;
  EXPECT_EQ(c.accepted.size(), 6u);
  for (const auto& [key, n] : c.sends) EXPECT_GE(n, 2) << key.first;
}

TEST_F(AgentTest, RunningLeasesAreRenewed) {
  SetProcessCount(1);
  AddMiniBatches(2);
  coordinator_->reg.lease_seconds = 3;  // renew at least every second
  script_->block_on = {0};
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  auto renewed = [&](int times) {
    int n = 0;
    for (const auto& r : coordinator_->lease_requests) {
      for (const auto& ref : r.renew) n += ref.mini_batch_id == 0;
    }
    return n >= times;
  };
  ASSERT_TRUE(coordinator_->WaitFor([&] { return renewed(2); }));
  script_->Release(0);
  EXPECT_EQ(ExitCode(), 0);
}

// No lease held on the node (running or queued) expires: attempts blocked for longer than
// lease_seconds, with leases queued behind them, are renewed in time.
TEST_F(AgentTest, HeldLeasesAreRenewedInTime) {
  SetProcessCount(2);
  AddMiniBatches(8);
  coordinator_->reg.lease_seconds = 2;  // renewal interval 667 ms; due from 333 ms
  script_->block_on = {0, 1};
  Start();
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 2; }));
  // Running 0 and queued 2 renewed 6 times each: at least 6 x 333 ms, longer than a lease.
  auto renewals = [&](int64_t id) {
    int n = 0;
    for (const auto& r : coordinator_->lease_requests) {
      for (const auto& ref : r.renew) n += ref.mini_batch_id == id;
    }
    return n;
  };
  ASSERT_TRUE(coordinator_->WaitFor([&] { return renewals(0) >= 6 && renewals(2) >= 6; }));
  script_->Release(0);
  script_->Release(1);
  EXPECT_EQ(ExitCode(), 0);
  coordinator_->With([&] {
    EXPECT_EQ(coordinator_->accepted.size(), 8u);
    EXPECT_TRUE(coordinator_->expired.empty()) << coordinator_->expired.front();
  });
}

// Renewals are sent when due, not with every lease call (the queue's refills).
TEST_F(AgentTest, ShortAttemptsNeedNoRenewals) {
  SetProcessCount(2);
  AddMiniBatches(30);
  Start();  // lease_seconds 90: every attempt ends long before its lease needs renewing
  EXPECT_EQ(ExitCode(), 0);
  coordinator_->With([&] {
    EXPECT_EQ(coordinator_->accepted.size(), 30u);
    EXPECT_GT(coordinator_->lease_requests.size(), 1u);
    for (const auto& r : coordinator_->lease_requests) EXPECT_TRUE(r.renew.empty());
  });
}

TEST_F(AgentTest, LogFilesAreWritten) {
  SetProcessCount(1);
  AddMiniBatches(3);
  script_->fail_on = {1};
  Start();
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_EQ(Result(1, 1).status, "RUN_EXCEPTION");
  EXPECT_EQ(Result(1, 1).error, "ValueError: bad row");

  std::string main_log = Log("sys/node/127.0.0.1/_main.txt");
  EXPECT_THAT(main_log, HasSubstr("node 127.0.0.1 registered"));
  EXPECT_THAT(main_log, HasSubstr("process000: started, pid 1001"));
  EXPECT_THAT(main_log, HasSubstr("process000 (pid 1001): shut down"));
  EXPECT_THAT(main_log, HasSubstr("|info|"));  // the seed's time|LEVEL|pid|thread|message

  std::string process_log = Log("sys/node/127.0.0.1/process000.txt");
  EXPECT_THAT(process_log,
              HasSubstr("node=127.0.0.1 pid=1001 mini_batch=0 attempt=1 items=3 succeeded=3 "
                        "failed=0 start="));
  EXPECT_THAT(process_log, HasSubstr("status=RUN_DONE"));
  EXPECT_THAT(process_log, HasSubstr("mini_batch=1 attempt=1 items=3 succeeded=0 failed=3"));
  EXPECT_THAT(process_log, HasSubstr("status=RUN_EXCEPTION"));

  std::string error_log = Log("sys/error/127.0.0.1/process000.txt");
  EXPECT_THAT(error_log, HasSubstr("status=RUN_EXCEPTION mini_batch=1 attempt=1 node=127.0.0.1 "
                                   "error=ValueError: bad row"));
  EXPECT_THAT(error_log, HasSubstr("Traceback (most recent call last)"));
  EXPECT_THAT(error_log, ::testing::Not(HasSubstr("mini_batch=0")));
}

TEST_F(AgentTest, UnusableRegistrationAnswerExits1NamingTheField) {
  coordinator_->reg.spec["spec"]["processCountPerNode"] = "two";
  Start();
  EXPECT_EQ(ExitCode(), 1);
}

// The real HTTP client and server between the agent and a minimal coordinator: the whole path
// works, and short mini-batches share round trips. Prints the rate for the record (not a check:
// the machine is shared).
TEST_F(AgentTest, ShortMiniBatchesOverHttpShareRoundTrips) {
  constexpr int kMiniBatches = 2000;
  SetProcessCount(2);
  struct State {
    std::mutex mu;
    int next = 0;
    int accepted = 0;
    int lease_calls = 0;
    int report_calls = 0;
  };
  auto state = std::make_shared<State>();
  nlohmann::json reg = coordinator_->reg;
  protocol::HttpServerOptions server_options;
  server_options.token = "t0ken";
  auto server = protocol::StartHttpServer(
      server_options, [state, reg](const protocol::HttpRequest& req) -> protocol::HttpResponse {
        std::lock_guard<std::mutex> lock(state->mu);
        if (req.path == "/v1/register") return {200, reg};
        if (req.path == "/v1/lease") {
          ++state->lease_calls;
          auto lr = req.body.get<protocol::LeaseRequest>();
          protocol::LeaseResponse resp;
          for (int i = 0; i < lr.max && state->next < kMiniBatches; ++i) {
            Lease l;
            l.mini_batch_id = state->next++;
            l.items = 1;
            l.files = {"/in/" + std::to_string(l.mini_batch_id)};
            resp.leases.push_back(l);
          }
          resp.done = state->next == kMiniBatches && state->accepted == kMiniBatches;
          if (resp.leases.empty()) resp.retry_after_ms = 10;
          return {200, resp};
        }
        if (req.path == "/v1/results") {
          ++state->report_calls;
          auto rr = req.body.get<protocol::ResultsRequest>();
          protocol::ResultsResponse resp;
          for (const auto& r : rr.results) resp.accepted.push_back({r.mini_batch_id, r.attempt});
          state->accepted += static_cast<int>(rr.results.size());
          return {200, resp};
        }
        return {404, {{"reason", "no route"}}};
      });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  delete coordinator_;
  protocol::HttpClientOptions client_options;
  client_options.base_url = (*server)->url();
  client_options.token = "t0ken";
  coordinator_ = nullptr;

  AgentOptions options;
  options.node = "127.0.0.1";
  options.gpus = std::vector<std::string>{};
  auto script = script_;
  Agent agent(
      options, protocol::MakeHttpCoordinatorClient(client_options),
      [script](WorkerConfig config) -> std::unique_ptr<Worker> {
        return std::make_unique<FakeWorker>(std::move(config), script, 4242);
      },
      RealClock::Get());
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(agent.Run(), 0);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::lock_guard<std::mutex> lock(state->mu);
  EXPECT_EQ(state->accepted, kMiniBatches);
  EXPECT_LT(state->lease_calls, kMiniBatches);
  EXPECT_LT(state->report_calls, kMiniBatches);
  std::printf(
      "[ rate     ] %d instant mini-batches, 2 workers, over HTTP: %.2f s, %.0f completions/s, "
      "%d lease + %d report calls (%.2f mini-batches per call)\n",
      kMiniBatches, s, kMiniBatches / s, state->lease_calls, state->report_calls,
      2.0 * kMiniBatches / (state->lease_calls + state->report_calls));
}

// Issue 12: a coordinator that has ended (it wrote job_result.txt since this agent registered)
// and no longer answers is the end of the job: exit 0 at once, never 1 after a long wait.
TEST_F(AgentTest, CoordinatorThatEndedIsTheEndNotAnError) {
  SetProcessCount(1);
  AddMiniBatches(2);
  script_->block_on = {0};
  AgentOptions options;
  options.max_unreachable_seconds = 300;
  Start(options);
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/out/logs/job_result.txt", "Failed\n").ok());
  auto start = std::chrono::steady_clock::now();
  coordinator_->With([&] { coordinator_->unavailable = true; });
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(script_->killed, std::vector<std::string>{"process000"});
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("the coordinator has ended"));
}

// A job_result.txt left by an earlier run is not taken for the end of this one.
TEST_F(AgentTest, EarlierJobResultIsNotTheEnd) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/out/logs/job_result.txt", "Failed\n").ok());
  SetProcessCount(1);
  AddMiniBatches(2);
  script_->block_on = {0};
  AgentOptions options;
  options.max_unreachable_seconds = 1;
  Start(options);
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  coordinator_->With([&] { coordinator_->unavailable = true; });
  EXPECT_EQ(ExitCode(), 1);
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("coordinator unreachable for 1 s"));
}

// After `done` a coordinator that stops answering has ended: no wait for it.
TEST_F(AgentTest, RefusedConnectionAfterDoneEndsAtOnce) {
  SetProcessCount(1);
  AddMiniBatches(1);
  script_->block_on = {0};
  coordinator_->reg.lease_seconds = 3;  // renewals every second: `done` arrives with one
  AgentOptions options;
  options.max_connect_seconds = 60;
  options.max_unreachable_seconds = 300;
  Start(options);
  ASSERT_TRUE(script_->WaitFor([&] { return script_->blocked.size() == 1; }));
  coordinator_->With([&] {
    coordinator_->done_when_drained = false;
    coordinator_->gone_after_done = true;
    coordinator_->say_done = true;
  });
  ASSERT_TRUE(coordinator_->WaitFor([&] { return coordinator_->unavailable; }));
  auto start = std::chrono::steady_clock::now();
  script_->Release(0);
  EXPECT_EQ(ExitCode(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

// Fencing: results the coordinator refuses (409) are dropped, never sent again.
TEST_F(AgentTest, RefusedResultsAreDroppedNotResent) {
  SetProcessCount(1);
  AddMiniBatches(3);
  coordinator_->refuse_results = true;
  Start();
  EXPECT_EQ(ExitCode(), 0);
  coordinator_->With([&] {
    EXPECT_EQ(coordinator_->sends.size(), 3u);
    for (const auto& [key, n] : coordinator_->sends) EXPECT_EQ(n, 1) << key.first;
    EXPECT_TRUE(coordinator_->accepted.empty());
  });
  EXPECT_THAT(Log("sys/node/127.0.0.1/_main.txt"), HasSubstr("refused"));
}

}  // namespace
}  // namespace parallelrun::rt
