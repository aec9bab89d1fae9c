// The HTTP adapter and the in-process client over a scripted CoordinatorService.
#include "runtime/protocol/coordinator_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/protocol/in_process_client.h"

namespace parallelrun::rt::protocol {
namespace {

using ::testing::HasSubstr;

// Answers what the test set, and remembers what it was asked.
class ScriptedService : public CoordinatorService {
 public:
  StatusOr<RegisterResponse> Register(const RegisterRequest& req) override {
    last_node = req.node;
    if (!error.ok()) return error;
    RegisterResponse r;
    r.output_dir = "/out";
    return r;
  }
  StatusOr<LeaseResponse> Lease(const LeaseRequest& req) override {
    last_node = req.node;
    calls += "lease;";
    if (!error.ok()) return error;
    if (!lease_error.ok()) return lease_error;
    LeaseResponse r;
    r.retry_after_ms = req.max;
    return r;
  }
  StatusOr<ResultsResponse> Report(const ResultsRequest& req) override {
    last_node = req.node;
    calls += "report;";
    if (!error.ok()) return error;
    return results;
  }
  Progress GetProgress() const override {
    Progress p;
    p.phase = "Running";
    return p;
  }

  Status error = Status::Ok();
  Status lease_error = Status::Ok();  // Lease only
  ResultsResponse results;
  std::string last_node;
  std::string calls;  // "report;lease;..." in call order
};

TEST(CoordinatorServiceHttp, RoutesPathsAndMethods) {
  ScriptedService s;
  EXPECT_EQ(HandleCoordinatorRequest(s, {"GET", "/v1/nope", nullptr}).status, 404);
  HttpResponse wrong = HandleCoordinatorRequest(s, {"GET", "/v1/lease", nullptr});
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.body["error"], "GET /v1/lease: use POST");
  HttpResponse p = HandleCoordinatorRequest(s, {"GET", "/v1/progress", nullptr});
  EXPECT_EQ(p.status, 200);
  EXPECT_EQ(p.body["phase"], "Running");
  HttpResponse l = HandleCoordinatorRequest(s, {"POST", "/v1/lease", {{"node", "n1"}, {"max", 7}}});
  EXPECT_EQ(l.status, 200) << l.body.dump();
  EXPECT_EQ(s.last_node, "n1");
  EXPECT_EQ(l.body.get<LeaseResponse>().retry_after_ms, 7);
  HttpResponse reg = HandleCoordinatorRequest(s, {"POST", "/v1/register", {{"node", "n2"}}});
  EXPECT_EQ(reg.status, 200) << reg.body.dump();
  EXPECT_EQ(reg.body.get<RegisterResponse>().output_dir, "/out");
}

TEST(CoordinatorServiceHttp, BadBodiesAndServiceErrors) {
  ScriptedService s;
  HttpResponse not_object =
      HandleCoordinatorRequest(s, {"POST", "/v1/results", nlohmann::json::array()});
  EXPECT_EQ(not_object.status, 400);
  EXPECT_EQ(not_object.body["error"], "body of POST /v1/results: expected a JSON object");
  HttpResponse wrong_type =
      HandleCoordinatorRequest(s, {"POST", "/v1/lease", {{"node", "n"}, {"max", "many"}}});
  EXPECT_EQ(wrong_type.status, 400);
  EXPECT_THAT(wrong_type.body["error"].get<std::string>(), HasSubstr("body of POST /v1/lease: "));

  s.error = InvalidArgumentError("node: required");
  HttpResponse invalid = HandleCoordinatorRequest(s, {"POST", "/v1/register", {{"node", ""}}});
  EXPECT_EQ(invalid.status, 400);
  EXPECT_EQ(invalid.body["error"], "body of POST /v1/register: node: required");
  s.error = InternalError("cannot write the journal: disk on fire");
  HttpResponse internal = HandleCoordinatorRequest(s, {"POST", "/v1/results", {{"node", "n"}}});
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(internal.body["error"], "cannot write the journal: disk on fire");
}

TEST(CoordinatorServiceHttp, EveryResultRefusedIs409WithTheReply) {
  ScriptedService s;
  ResultsRequest req;
  req.node = "n1";
  req.results.resize(2);
  s.results.refused = {{0, 1}, {1, 1}};
  HttpResponse r = HandleCoordinatorRequest(s, {"POST", "/v1/results", req});
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body["reason"],
            "refused all 2 result(s): n1 does not hold the lease of those attempts (see refused)");
  EXPECT_EQ(r.body.get<ResultsResponse>().refused.size(), 2u);

  s.results.accepted = {{0, 1}};
  EXPECT_EQ(HandleCoordinatorRequest(s, {"POST", "/v1/results", req}).status, 200);
  s.results = ResultsResponse();  // the job ended: nothing accepted nor refused, stop
  s.results.stop = true;
  EXPECT_EQ(HandleCoordinatorRequest(s, {"POST", "/v1/results", req}).status, 200);
}

TEST(CoordinatorServiceHttp, AReportThatAsksForLeasesGetsBothAnswersInOneReply) {
  ScriptedService s;
  ResultsRequest req;
  req.node = "n1";
  req.results.resize(1);
  req.lease = LeaseRequest{"ignored: the report's node counts", 3, {}};
  s.results.accepted = {{0, 1}};
  // Over the wire: the lease part names no node; the report's is used.
  HttpResponse r = HandleCoordinatorRequest(s, {"POST", "/v1/results", req});
  EXPECT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(s.calls, "report;lease;");  // the report is recorded before the lease is answered
  EXPECT_EQ(s.last_node, "n1");
  const auto resp = r.body.get<ResultsResponse>();
  EXPECT_EQ(resp.accepted.size(), 1u);
  ASSERT_TRUE(resp.lease.has_value());
  EXPECT_EQ(resp.lease->retry_after_ms, 3);  // the scripted Lease echoes max

  // Every result refused: no 409 (the sender reads `refused`, and the lease answer comes too).
  s.results = ResultsResponse();
  s.results.refused = {{0, 1}};
  r = HandleCoordinatorRequest(s, {"POST", "/v1/results", req});
  EXPECT_EQ(r.status, 200) << r.body.dump();
  EXPECT_TRUE(r.body.get<ResultsResponse>().lease.has_value());

  // A lease part that fails after the report was recorded: the report's answer, no lease.
  s.lease_error = UnavailableError("lease part failed");
  s.results.accepted = {{0, 1}};
  r = HandleCoordinatorRequest(s, {"POST", "/v1/results", req});
  EXPECT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body.get<ResultsResponse>().accepted.size(), 1u);
  EXPECT_FALSE(r.body.get<ResultsResponse>().lease.has_value());
  EXPECT_FALSE(r.body.contains("lease"));

  // A malformed lease part: 400 naming it, and nothing applied.
  s.calls.clear();
  nlohmann::json bad = req;
  bad["lease"]["max"] = -1;
  r = HandleCoordinatorRequest(s, {"POST", "/v1/results", bad});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body["error"],
            "body of POST /v1/results: lease.max: got -1, expected an integer >= 0");
  EXPECT_EQ(s.calls, "");

  // Without `lease`, no lease call is made and the reply has none.
  s.calls.clear();
  req.lease.reset();
  r = HandleCoordinatorRequest(s, {"POST", "/v1/results", req});
  EXPECT_EQ(s.calls, "report;");
  EXPECT_FALSE(r.body.contains("lease"));
}

TEST(InProcessClient, ErrorsAreTheHttpClients) {
  ScriptedService s;
  auto client = MakeInProcessCoordinatorClient(&s);
  ASSERT_TRUE(client->Register({"n1", 1, {}}).ok());
  EXPECT_EQ(client->GetProgress()->phase, "Running");

  ResultsRequest req;
  req.node = "n1";
  req.results.resize(1);
  s.results.refused = {{0, 1}};
  auto refused = client->Report(req);
  EXPECT_EQ(refused.status().code(), StatusCode::kAborted);
  EXPECT_THAT(refused.status().message(), HasSubstr("409 refused all 1 result(s)"));

  s.error = InvalidArgumentError("max: got -1, expected an integer >= 0");
  EXPECT_EQ(client->Lease({}).status().code(), StatusCode::kInvalidArgument);
  s.error = InternalError("cannot sync the journal: EIO");
  auto lease = client->Lease({});
  EXPECT_EQ(lease.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(lease.status().message(), HasSubstr("EIO"));
}

}  // namespace
}  // namespace parallelrun::rt::protocol
