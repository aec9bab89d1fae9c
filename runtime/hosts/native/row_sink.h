// The part file of one prn_run() call: RowSink collects the rows the library emits and writes them,
// one per line, buffered, to the part file, which is created (truncated) on the first flush and
// fsync'd by Finish().
//
// Guarantees: thread-safe, so a library may emit from its own threads during prn_run(); after
// Finish() or Discard() every Emit fails. A failed attempt's Discard() leaves no part file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>

namespace parallelrun::rt::native {

class RowSink {
 public:
  // `path` "" counts the rows without writing them. `known_dirs`: the folders already made and
  // synced by this host (shared by its sinks, used from one thread at a time).
  RowSink(std::string path, std::set<std::string>* known_dirs);
  ~RowSink();

  // result->emit: 0, or -1 after an error or once the sink has ended.
  int Emit(const char* row, size_t len);
  static int EmitCallback(void* host, const char* row, size_t len);

  // Writes what is left, fsyncs the file (and its folder the first time). Ends the sink.
  bool Finish();
  // A failed attempt leaves no part file behind. Ends the sink.
  void Discard();

  int64_t rows();
  std::string error();  // what failed ("" when nothing did)

 private:
  bool Fail(const char* what, int e);
  bool Flush();  // under mu_

  const std::string path_;
  std::set<std::string>* known_dirs_;
  std::mutex mu_;
  std::string buffer_;
  int fd_ = -1;
  int64_t rows_ = 0;
  bool closed_ = false;
  std::string error_;
};

}  // namespace parallelrun::rt::native
