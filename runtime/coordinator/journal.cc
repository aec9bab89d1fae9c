#include "runtime/coordinator/journal.h"

#include <sys/stat.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "runtime/coordinator/line_file.h"

namespace parallelrun::rt {

namespace {

// Appends `s` as a JSON string. Invalid UTF-8 (user error text can hold anything) becomes U+FFFD,
// so every record stays parseable on replay.
void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
      ++i;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else {
      // Length and minimum value of a well-formed sequence starting with c.
      size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
      bool ok = len > 0 && i + len <= s.size();
      uint32_t cp = len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
      for (size_t k = 1; ok && k < len; ++k) {
        unsigned char cc = static_cast<unsigned char>(s[i + k]);
        ok = (cc & 0xc0) == 0x80;
        cp = (cp << 6) | (cc & 0x3f);
      }
      if (ok) {
        ok = (len == 2 && cp >= 0x80) ||
             (len == 3 && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) ||
             (len == 4 && cp >= 0x10000 && cp <= 0x10ffff);
      }
      if (ok) {
        out.append(s.substr(i, len));
        i += len;
      } else {
        out += "\\ufffd";
        ++i;
      }
    }
  }
  out.push_back('"');
}

void AppendKey(std::string& out, const char* key) {
  out += ",\"";
  out += key;
  out += "\":";
}

// Seconds with millisecond precision, as the report shows them; left out when zero.
void AppendSeconds(std::string& out, const char* key, double seconds) {
  if (seconds == 0) return;
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.3f", seconds);
  AppendKey(out, key);
  out.append(buf, static_cast<size_t>(n));
}

std::string RecordStart(const char* type, int64_t id, int attempt, std::string_view node) {
  std::string out = "{\"t\":\"";
  out += type;
  out += "\",\"mb\":";
  out += std::to_string(id);
  AppendKey(out, "a");
  out += std::to_string(attempt);
  AppendKey(out, "node");
  AppendJsonString(out, node);
  return out;
}

}  // namespace

std::string JournalStartLine(int index, SystemTime time, const std::string& owner) {
  nlohmann::json j = {{"t", "start"}, {"n", index}, {"time", Iso8601Utc(time)}, {"owner", owner}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string JournalLeaseLine(int64_t id, int attempt, std::string_view node) {
  std::string out = RecordStart("lease", id, attempt, node);
  out += "}\n";
  return out;
}

// Written by hand rather than through nlohmann::json: one line per result is on the hot path.
std::string JournalResultLine(const protocol::AttemptResult& r, std::string_view node,
                              const Decision& d) {
  std::string out = RecordStart("result", r.mini_batch_id, r.attempt, node);
  AppendKey(out, "process");
  AppendJsonString(out, r.process);
  AppendKey(out, "status");
  AppendJsonString(out, r.status);
  AppendKey(out, "outcome");
  AppendJsonString(out, OutcomeName(d.outcome));
  AppendKey(out, "succeeded");
  out += std::to_string(d.succeeded);
  AppendKey(out, "failed");
  out += std::to_string(d.failed);
  if (!r.error.empty()) {
    AppendKey(out, "error");
    AppendJsonString(out, r.error);
  }
  AppendKey(out, "items");
  out += std::to_string(r.total);
  AppendKey(out, "rs");
  out += std::to_string(r.succeeded);
  AppendKey(out, "rf");
  out += std::to_string(r.failed);
  if (!r.start_utc.empty()) {
    AppendKey(out, "start");
    AppendJsonString(out, r.start_utc);
  }
  AppendSeconds(out, "el", r.elapsed_s);
  AppendSeconds(out, "cpu", r.cpu_s);
  AppendSeconds(out, "run", r.run_s);
  if (r.part_bytes >= 0) {
    AppendKey(out, "pb");
    out += std::to_string(r.part_bytes);
    AppendKey(out, "pc");
    out += std::to_string(r.part_crc32);
  }
  out += "}\n";
  return out;
}

std::string JournalExpiredLine(int64_t id, int attempt, std::string_view node, Outcome outcome) {
  std::string out = RecordStart("expired", id, attempt, node);
  AppendKey(out, "outcome");
  AppendJsonString(out, OutcomeName(outcome));
  out += "}\n";
  return out;
}

std::string JournalReleasedLine(int64_t id, int attempt, std::string_view node) {
  std::string out = RecordStart("released", id, attempt, node);
  out += "}\n";
  return out;
}

std::string JournalCarriedLine(int64_t id, int attempt, int64_t succeeded, int64_t failed) {
  std::string out = "{\"t\":\"carried\",\"mb\":";
  out += std::to_string(id);
  AppendKey(out, "a");
  out += std::to_string(attempt);
  AppendKey(out, "succeeded");
  out += std::to_string(succeeded);
  AppendKey(out, "failed");
  out += std::to_string(failed);
  out += "}\n";
  return out;
}

StatusOr<JournalRecord> ParseJournalLine(std::string_view line) {
  try {
    nlohmann::json j = nlohmann::json::parse(line);
    JournalRecord r;
    r.type = j.at("t").get<std::string>();
    if (r.type == "start") {
      r.start_index = j.value("n", 0);
      r.time = j.value("time", std::string());
      return r;
    }
    if (r.type == "carried") {
      r.mini_batch_id = j.at("mb").get<int64_t>();
      r.attempt = j.value("a", 0);
      r.outcome = Outcome::kCompleted;
      r.succeeded = j.at("succeeded").get<int64_t>();
      r.failed = j.value("failed", int64_t{0});
      return r;
    }
    if (r.type != "lease" && r.type != "result" && r.type != "expired" && r.type != "released") {
      return InvalidArgumentError("unknown record type \"" + r.type + "\"");
    }
    r.mini_batch_id = j.at("mb").get<int64_t>();
    r.attempt = j.at("a").get<int>();
    r.node = j.value("node", std::string());
    if (r.type == "released") {
      r.outcome = Outcome::kGivenBack;
    } else if (r.type != "lease") {
      std::string outcome = j.at("outcome").get<std::string>();
      auto o = ParseOutcome(outcome);
      if (!o) return InvalidArgumentError("unknown outcome \"" + outcome + "\"");
      r.outcome = *o;
      r.succeeded = j.value("succeeded", int64_t{0});
      r.part_bytes = j.value("pb", int64_t{-1});
      r.part_crc32 = j.value("pc", uint32_t{0});
      r.failed = j.value("failed", int64_t{0});
      r.process = j.value("process", std::string());
      r.status = j.value("status", std::string());
      r.error = j.value("error", std::string());
      r.start_utc = j.value("start", std::string());
      r.items = j.value("items", int64_t{0});
      r.reported_succeeded = j.value("rs", r.succeeded);
      r.reported_failed = j.value("rf", r.failed);
      r.elapsed_s = j.value("el", 0.0);
      r.cpu_s = j.value("cpu", 0.0);
      r.run_s = j.value("run", 0.0);
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError(e.what());
  }
}

StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& path, int64_t valid_bytes) {
  PR_RETURN_IF_ERROR(MakeDirs(Dirname(path)));
  PR_RETURN_IF_ERROR(TruncateFile(path, valid_bytes));
  PR_ASSIGN_OR_RETURN(AppendFile file, AppendFile::Open(path));
  return std::unique_ptr<Journal>(new Journal(std::move(file), valid_bytes));
}

StatusOr<int64_t> Journal::Append(std::string_view lines) {
  if (!lines.empty()) PR_RETURN_IF_ERROR(file_.Append(lines));
  return written_.fetch_add(static_cast<int64_t>(lines.size())) +
         static_cast<int64_t>(lines.size());
}

Status Journal::SyncTo(int64_t offset) {
  MutexLock lock(sync_mu_);
  if (synced_ >= offset) return Status::Ok();
  // Everything written so far goes down with this fdatasync, so requests waiting behind this one
  // usually find their bytes already synced.
  int64_t target = written_.load();
  PR_RETURN_IF_ERROR(file_.Sync());
  ++syncs_;
  synced_ = target;
  return Status::Ok();
}

StatusOr<int64_t> Journal::Replay(const std::string& path,
                                  const std::function<Status(const JournalRecord&)>& on_record,
                                  std::string* torn_warning) {
  int64_t line_no = 0;
  // A line that does not parse is only an error when a record follows it: the last line of a
  // journal may be torn by a crash in the middle of a write.
  Status bad_line;
  std::string bad_reason;
  int64_t bad_line_no = 0;
  int64_t bad_offset = 0;
  auto valid = ForEachLine(path, [&](std::string_view line, int64_t offset) -> Status {
    ++line_no;
    if (line.empty()) return Status::Ok();
    if (!bad_line.ok()) return bad_line;
    auto record = ParseJournalLine(line);
    if (!record.ok()) {
      bad_reason = record.status().message();
      bad_line = record.status().WithContext(
          path + " line " + std::to_string(line_no) +
          " (a damaged record in the middle of the journal; only a torn last line is skipped)");
      bad_line_no = line_no;
      bad_offset = offset;
      return Status::Ok();
    }
    return on_record(*record);
  });
  if (!valid.ok()) return valid.status();
  struct stat st {};
  const int64_t size = ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : *valid;
  if (!bad_line.ok()) {
    if (torn_warning != nullptr) {
      *torn_warning = "journal " + path + ": skipped a torn last line (line " +
                      std::to_string(bad_line_no) + ", " + std::to_string(size - bad_offset) +
                      " bytes, probably cut short by a crash): " + bad_reason;
    }
    return bad_offset;
  }
  if (size > *valid && torn_warning != nullptr) {
    *torn_warning = "journal " + path + ": skipped a torn last line (line " +
                    std::to_string(line_no + 1) + ", " + std::to_string(size - *valid) +
                    " bytes with no newline, probably cut short by a crash)";
  }
  return valid;
}

std::string Journal::DescribeTornTail(const std::string& path, int64_t valid_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || st.st_size <= valid_bytes) return "";
  int64_t line = 1;
  auto counted = ForEachLine(path, [&](std::string_view, int64_t offset) -> Status {
    if (offset < valid_bytes) ++line;
    return Status::Ok();
  });
  if (!counted.ok()) return "";
  return "journal " + path + ": skipped a torn last line (line " + std::to_string(line) + ", " +
         std::to_string(static_cast<int64_t>(st.st_size) - valid_bytes) +
         " bytes, probably cut short by a crash); it is cut off and the job resumes";
}

}  // namespace parallelrun::rt
