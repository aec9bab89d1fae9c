// Test support for the coordinator's tests: a hand-moved clock and a fixture that drives a
// Coordinator as agents do (register, lease, report) through the in-process client, or through
// the HTTP adapter (Post) for what only HTTP can send, with temp folders per test.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/coordinator/coordinator.h"
#include "runtime/logs/report_csv.h"
#include "runtime/protocol/in_process_client.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::rt {

using protocol::AttemptResult;
using protocol::HttpRequest;
using protocol::HttpResponse;
using protocol::Lease;
using protocol::LeaseRef;
using protocol::LeaseResponse;
using protocol::ResultsResponse;
using protocol::WorkerEvent;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using fakes::FakeClock;  // read from the coordinator's threads
using fakes::WaitFor;

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Splits CSV text into records (a quoted field may hold newlines).
inline std::vector<std::string> CsvRecords(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : text) {
    if (c == '"') quoted = !quoted;
    if (c == '\n' && !quoted) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path();
    in_ = root_ + "/in";
    out_ = root_ + "/out";
    std::filesystem::create_directories(in_);
    spec_.name = "score";
    spec_.entry_script = "score.py";
    Input input;
    input.name = "images";
    input.type = InputType::kFile;
    input.source.path = "in";
    spec_.inputs = {input};
    spec_.output.path = "out";
    spec_.mini_batch_size_text = "2";
    spec_.mini_batch_size = 2;
    spec_.node_count = 1;
    spec_.arguments = {"--out", "$(output)"};
    paths_.code_dir = root_ + "/code";
    paths_.inputs = {{"images", in_}};
    paths_.output_dir = out_;
  }
  void TearDown() override {
    client_.reset();
    coord_.reset();
  }

  void MakeFiles(int n) {
    for (int i = 0; i < n; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "f%03d.jpg", i);
      std::ofstream(in_ + "/" + name) << i;
    }
  }

  CoordinatorOptions Options() {
    CoordinatorOptions o;
    o.spec = spec_;
    o.paths = paths_;
    o.desired_nodes = spec_.node_count;
    o.owner_id = "owner-1";
    o.clock = &clock_;
    o.echo = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(echo_mu_);
      echoed_.push_back(line);
    };
    return o;
  }

  void Start(CoordinatorOptions o) {
    client_.reset();
    coord_.reset();  // a restart: the previous coordinator ends first (it holds the output lock)
    auto c = Coordinator::Create(std::move(o));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    coord_ = std::move(*c);
    client_ = protocol::MakeInProcessCoordinatorClient(coord_.get());
  }
  void Start() { Start(Options()); }

  void WaitPlanned() {
    ASSERT_TRUE(WaitFor([&] { return coord_->GetProgress().planned; }));
  }

  // Through the HTTP adapter, as `parallelrun coordinator` serves it.
  HttpResponse Post(const std::string& path, const nlohmann::json& body) {
    return protocol::HandleCoordinatorRequest(*coord_, HttpRequest{"POST", path, body});
  }
  void Register(const std::string& node = "127.0.0.1") {
    auto r = client_->Register(protocol::RegisterRequest{node, 42, {}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  LeaseResponse LeaseWork(int max, std::vector<LeaseRef> renew = {},
                          const std::string& node = "127.0.0.1") {
    protocol::LeaseRequest req;
    req.node = node;
    req.max = max;
    req.renew = std::move(renew);
    auto r = client_->Lease(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : LeaseResponse();
  }
  ResultsResponse Report(std::vector<AttemptResult> results, std::vector<WorkerEvent> events = {},
                         const std::string& node = "127.0.0.1") {
    protocol::ResultsRequest req;
    req.node = node;
    req.results = std::move(results);
    req.events = std::move(events);
    auto r = client_->Report(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ResultsResponse();
  }

  // What a worker does for RUN_DONE: write the part file, then report.
  AttemptResult Done(const Lease& l, int64_t succeeded = -1) {
    if (!l.part_file.empty()) {
      std::ofstream(l.part_file) << "row " << l.mini_batch_id << " attempt " << l.attempt
                                 << row_suffix_ << "\n";
    }
    AttemptResult r;
    r.mini_batch_id = l.mini_batch_id;
    r.attempt = l.attempt;
    r.process = "process000";
    r.pid = 100;
    r.status = "RUN_DONE";
    r.total = l.items;
    r.succeeded = succeeded < 0 ? l.items : succeeded;
    r.failed = r.total - r.succeeded;
    r.start_utc = "2026-11-23T11:05:08.000Z";
    r.elapsed_s = 0.5;
    return r;
  }
  AttemptResult Failed(const Lease& l, const std::string& status = "RUN_EXCEPTION") {
    AttemptResult r;
    r.mini_batch_id = l.mini_batch_id;
    r.attempt = l.attempt;
    r.process = "process001";
    r.status = status;
    r.total = l.items;
    r.failed = l.items;
    r.error = "ValueError: bad input, really";
    r.detail = "Traceback (most recent call last):\n  File \"score.py\"\nValueError: bad input";
    return r;
  }

  // Leases everything and reports it done, in one batch.
  void RunAllDone() {
    Register();
    WaitPlanned();
    auto resp = LeaseWork(1000);
    std::vector<AttemptResult> results;
    for (const auto& l : resp.leases) results.push_back(Done(l));
    Report(results);
  }

  std::string Read(const std::string& rel) {
    auto text = ReadFile(out_ + "/" + rel);
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    return text.ok() ? *text : "";
  }
  std::vector<std::string> ReportRows() {
    auto lines = CsvRecords(Read("logs/sys/job_report/processed_mini-batches.csv"));
    EXPECT_FALSE(lines.empty());
    if (!lines.empty()) {
      EXPECT_EQ(lines[0], kReportCsvHeader);
      lines.erase(lines.begin());
    }
    return lines;
  }
  std::vector<std::string> Echoed() {
    std::lock_guard<std::mutex> lock(echo_mu_);
    return echoed_;
  }

  fakes::TempDir tmp_{"coordinator_test"};
  std::string root_, in_, out_;
  JobSpec spec_;
  ResolvedPaths paths_;
  FakeClock clock_;
  std::mutex echo_mu_;
  std::vector<std::string> echoed_;
  std::unique_ptr<Coordinator> coord_;
  std::unique_ptr<protocol::CoordinatorClient> client_;  // in-process, over coord_
  std::string row_suffix_;                               // appended to the rows Done() writes
};

}  // namespace parallelrun::rt
