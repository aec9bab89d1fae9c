// The wire form of the messages: what the coordinator writes is what the agent reads back.
#include "runtime/protocol/messages.h"

#include <gtest/gtest.h>

namespace parallelrun::rt::protocol {
namespace {

Lease RoundTrip(const Lease& l) {
  return nlohmann::json::parse(nlohmann::json(l).dump()).get<Lease>();
}

void ExpectSame(const Lease& a, const Lease& b) {
  EXPECT_EQ(nlohmann::json(a), nlohmann::json(b));
  EXPECT_EQ(a.mini_batch_id, b.mini_batch_id);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.files, b.files);
  EXPECT_EQ(a.file_sizes, b.file_sizes);
  EXPECT_EQ(a.file_mtimes_ns, b.file_mtimes_ns);
  EXPECT_EQ(a.file, b.file);
  EXPECT_EQ(a.header, b.header);
  EXPECT_EQ(a.begin, b.begin);
  EXPECT_EQ(a.end, b.end);
  EXPECT_EQ(a.file_size, b.file_size);
  EXPECT_EQ(a.segments, b.segments);
  EXPECT_EQ(a.partition_key_value, b.partition_key_value);
}

TEST(MessagesTest, AFileLeaseCarriesNoTabularFieldsAndReadsBackTheSame) {
  Lease l;
  l.mini_batch_id = 0;  // a default value that names the lease: still written
  l.attempt = 1;
  l.input_name = "images";
  l.input_type = "file";
  l.files = {"/in/a.png", "/in/b.png"};
  l.file_sizes = {10, 20};
  l.file_mtimes_ns = {1, -1};
  l.items = 2;
  l.part_file = "/out/.parallelrun/parts/0.1";
  const nlohmann::json j = l;
  for (const char* key : {"mini_batch_id", "attempt", "input_name", "input_type", "items", "files",
                          "file_sizes", "file_mtimes_ns", "part_file"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  for (const char* key : {"file", "format", "header", "header_end", "begin", "end", "file_size",
                          "file_mtime_ns", "partition_key_value", "segments"}) {
    EXPECT_FALSE(j.contains(key)) << key;
  }
  ExpectSame(RoundTrip(l), l);
}

TEST(MessagesTest, ATabularLeaseReadsBackTheSame) {
  Lease l;
  l.mini_batch_id = 7;
  l.attempt = 2;
  l.input_type = "tabular";
  l.file = "/in/t.csv";
  l.format = "csv";
  l.header = false;  // not the default: written
  l.header_end = 0;
  l.begin = 0;  // the default, and still read back
  l.end = 100;
  l.file_size = 0;
  l.file_mtime_ns = 5;
  l.partition_key_value = {{"region", "eu"}};
  l.segments = {LeaseSegment{"/in/t.csv", "csv", 4, {{4, 50}}, 100, 5}};
  const nlohmann::json j = l;
  EXPECT_EQ(j.at("header"), false);
  EXPECT_FALSE(j.contains("files"));
  ExpectSame(RoundTrip(l), l);
}

// A peer that writes every field (an older coordinator) is read the same way.
TEST(MessagesTest, ALeaseWithEveryFieldWrittenIsRead) {
  const Lease l = nlohmann::json::parse(R"({"mini_batch_id": 3, "attempt": 1, "input_name": "x",
      "input_type": "file", "files": ["/a"], "file": "", "format": "", "header": true,
      "header_end": 0, "begin": 0, "end": 0, "items": 1, "part_file": "", "file_size": -1,
      "file_mtime_ns": -1, "file_sizes": [], "file_mtimes_ns": [], "partition_key_value": [],
      "segments": []})")
                      .get<Lease>();
  EXPECT_EQ(l.mini_batch_id, 3);
  EXPECT_EQ(l.files, (std::vector<std::string>{"/a"}));
  EXPECT_TRUE(l.header);
  EXPECT_EQ(l.file_size, -1);
}

TEST(MessagesTest, AResultsAnswerCarriesDoneAndAnOlderOneWithoutItIsNotDone) {
  ResultsResponse r;
  r.accepted = {{3, 1}};
  r.done = true;
  const ResultsResponse back =
      nlohmann::json::parse(nlohmann::json(r).dump()).get<ResultsResponse>();
  EXPECT_TRUE(back.done);
  EXPECT_FALSE(back.stop);
  ASSERT_EQ(back.accepted.size(), 1u);
  // A coordinator that predates `done` in results answers: the field is missing, read as false.
  const auto older = nlohmann::json::parse(R"({"accepted": [], "refused": [], "stop": true})")
                         .get<ResultsResponse>();
  EXPECT_FALSE(older.done);
  EXPECT_TRUE(older.stop);
}

TEST(MessagesTest, AReportCarriesItsLeaseCallAndTheAnswerItsLeaseAnswer) {
  ResultsRequest req;
  req.node = "10.0.0.7";
  req.results.resize(1);
  req.lease = LeaseRequest{"10.0.0.7", 4, {{5, 2}}};
  const nlohmann::json wire = req;
  EXPECT_FALSE(wire["lease"].contains("node"));  // the report's node is the lease's
  const auto back = nlohmann::json::parse(wire.dump()).get<ResultsRequest>();
  ASSERT_TRUE(back.lease.has_value());
  EXPECT_EQ(back.lease->node, "10.0.0.7");
  EXPECT_EQ(back.lease->max, 4);
  ASSERT_EQ(back.lease->renew.size(), 1u);
  EXPECT_EQ(back.lease->renew[0].mini_batch_id, 5);
  // Without it (an older agent, or a report alone), no lease call; null reads as none.
  EXPECT_FALSE(nlohmann::json::parse(R"({"node": "n"})").get<ResultsRequest>().lease.has_value());
  EXPECT_FALSE(nlohmann::json::parse(R"({"node": "n", "lease": null})")
                   .get<ResultsRequest>()
                   .lease.has_value());
  // A lease part with an integer out of range is refused like any other field.
  EXPECT_THROW(
      nlohmann::json::parse(R"({"node": "n", "lease": {"max": 4294967296}})").get<ResultsRequest>(),
      nlohmann::json::exception);

  ResultsResponse resp;
  resp.lease = LeaseResponse{};
  resp.lease->leases.resize(2);
  resp.lease->done = true;
  const auto answer = nlohmann::json::parse(nlohmann::json(resp).dump()).get<ResultsResponse>();
  ASSERT_TRUE(answer.lease.has_value());
  EXPECT_EQ(answer.lease->leases.size(), 2u);
  EXPECT_TRUE(answer.lease->done);
  EXPECT_FALSE(nlohmann::json::parse(R"({"accepted": []})").get<ResultsResponse>().lease);
}

}  // namespace
}  // namespace parallelrun::rt::protocol
