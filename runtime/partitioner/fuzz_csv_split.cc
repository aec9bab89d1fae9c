// libFuzzer target: RowEnds must never crash, and must return strictly increasing offsets that
// end exactly at the end of any non-empty input; scanning the same bytes in pieces (as the file
// splitter does across read buffers) must find the same row ends, whichever of the scanner's two
// paths (64-byte blocks, byte-by-byte state machine) handles them.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/partitioner/partitioner.h"
#include "runtime/partitioner/row_scanner.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

using Rows = std::vector<std::pair<int64_t, bool>>;  // (end, blank)

// Rows found by one scanner fed `data` in consecutive pieces of the given sizes.
Rows ScanInPieces(std::string_view data, bool csv, const std::vector<size_t>& sizes) {
  parallelrun::rt::internal::RowScanner scanner(csv);
  Rows rows;
  auto on_row = [&rows](int64_t end, bool blank) {
    rows.emplace_back(end, blank);
    return true;
  };
  size_t at = 0;
  for (size_t n : sizes) {
    scanner.Scan(data.data() + at, n, 0, static_cast<int64_t>(at), on_row);
    at += n;
  }
  bool blank = false;
  if (scanner.PendingRow(&blank)) rows.emplace_back(static_cast<int64_t>(data.size()), blank);
  return rows;
}

void CheckInvariants(std::string_view data, bool csv) {
  const std::vector<int64_t> ends = parallelrun::rt::RowEnds(data, csv);
  int64_t prev = 0;
  for (int64_t e : ends) {
    Check(e > prev);
    Check(e <= static_cast<int64_t>(data.size()));
    // A row ends after a '\n' (CSV: or a '\r') or at the end of the data.
    Check(data[e - 1] == '\n' || (csv && data[e - 1] == '\r') ||
          e == static_cast<int64_t>(data.size()));
    prev = e;
  }
  Check(data.empty() ? ends.empty()
                     : !ends.empty() && ends.back() == static_cast<int64_t>(data.size()));
  if (!csv) {  // JSON lines: every '\n' ends a row
    size_t newlines = 0;
    for (char c : data) newlines += c == '\n';
    Check(ends.size() == newlines + (data.empty() || data.back() == '\n' ? 0 : 1));
  }

  // The same bytes in pieces, as the file splitter sees them across read buffers: two pieces cut
  // where the data says, and pieces of under 64 bytes, which only the byte-by-byte state machine
  // handles (whole 64-byte blocks go through the block path): all must agree.
  const Rows whole = ScanInPieces(data, csv, {data.size()});
  Check(whole.size() == ends.size());
  for (size_t i = 0; i < ends.size(); ++i) Check(whole[i].first == ends[i]);
  const size_t cut = data.empty() ? 0 : static_cast<unsigned char>(data[0]) % (data.size() + 1);
  Check(ScanInPieces(data, csv, {cut, data.size() - cut}) == whole);
  const size_t small = data.size() < 2 ? 1 : static_cast<unsigned char>(data[1]) % 63 + 1;
  std::vector<size_t> sizes(data.size() / small, small);
  sizes.push_back(data.size() % small);
  Check(ScanInPieces(data, csv, sizes) == whole);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view view(reinterpret_cast<const char*>(data), size);
  CheckInvariants(view, true);
  CheckInvariants(view, false);
  return 0;
}
