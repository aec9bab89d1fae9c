// RowScanner: finds where rows end in a CSV or JSON-lines byte stream that arrives in pieces
// (a fixed read buffer refilled from a file, or one in-memory string). Internal to the
// partitioner; the public entry points are RowEnds() and MakePartitioner() in partitioner.h.
//
// Rows end at '\n'. JSON lines has no quoting. CSV follows RFC 4180 (a quoted field may hold ',',
// '\n' and doubled quotes) and, on input that breaks RFC 4180, what pandas' C parser does, so that
// our ranges cut where the workers' parser cuts: a quote opens a quoted field only as the field's
// first byte (`5'10",x` is an unquoted field holding a quote), and text after a closing quote
// continues the field unquoted. A row made only of ' ', '\t' and '\r' (CSV; JSON lines: any ASCII
// whitespace) is blank: pandas skips it, so it is reported as blank and never counted as an item.
//
// Guarantees: state carries across pieces, so the row ends found do not depend on how the stream
// is cut; the scanner never copies data and holds no memory of its own. Speed comes from skipping
// ordinary bytes 8 at a time (SWAR) and dispatching only on field boundaries and quotes.
#pragma once

#include <cstdint>
#include <cstring>

namespace parallelrun::rt::internal {

// First position in [p, end) holding byte `a` or `b`, or `end`.
inline const char* FindEither(const char* p, const char* end, char a, char b) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;
  const uint64_t pa = kOnes * static_cast<unsigned char>(a);
  const uint64_t pb = kOnes * static_cast<unsigned char>(b);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (end - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    // Exact zero-byte test (no false positives): the high bit of each byte of `x` that is zero.
    auto zero_bytes = [](uint64_t x) {
      uint64_t t = (x & kLow7) + kLow7;
      return ~(t | x | kLow7);
    };
    uint64_t m = zero_bytes(w ^ pa) | zero_bytes(w ^ pb);
    if (m != 0) return p + (__builtin_ctzll(m) >> 3);
    p += 8;
  }
#endif
  while (p < end && *p != a && *p != b) ++p;
  return p;
}

inline const char* FindByte(const char* p, const char* end, char a) {
  const void* hit = std::memchr(p, a, static_cast<size_t>(end - p));
  return hit == nullptr ? end : static_cast<const char*>(hit);
}

class RowScanner {
 public:
  explicit RowScanner(bool csv) : csv_(csv) {}

  // Scans data[from, size), which starts at absolute stream offset `base` (so data[i] is stream
  // byte base + i). For each row end found, calls `on_row(int64_t end, bool blank)` with the
  // absolute offset one past the row's '\n'. If on_row returns false, scanning stops and the
  // index just past that row's end is returned (call again from there to go on); otherwise the
  // whole piece is consumed and `size` is returned.
  template <typename OnRow>
  size_t Scan(const char* data, size_t size, size_t from, int64_t base, OnRow&& on_row);

  // True when bytes after the last row end have been scanned: at the end of the stream they form
  // a last row with no trailing newline, which ends at the end of the stream. `blank` tells
  // whether that row is blank.
  bool PendingRow(bool* blank) const {
    *blank = mode_ == kBlankPrefix;
    return mode_ != kRowStart;
  }

 private:
  enum Mode : uint8_t {
    kRowStart,       // nothing of the current row seen yet
    kBlankPrefix,    // only blank bytes of the current row seen
    kFieldStart,     // csv: just after a ',' (the row is not blank)
    kUnquoted,       // inside an unquoted field (jsonl: inside a non-blank row)
    kQuoted,         // csv: inside a quoted field
    kQuoteInQuoted,  // csv: just after a '"' inside a quoted field (closing, or first of "")
  };

  bool IsBlankByte(char c) const {
    return c == ' ' || c == '\t' || c == '\r' || (!csv_ && (c == '\f' || c == '\v'));
  }

  bool csv_;
  Mode mode_ = kRowStart;
};

template <typename OnRow>
size_t RowScanner::Scan(const char* data, size_t size, size_t from, int64_t base,
                        OnRow&& on_row) {
  const char* const end = data + size;
  const char* p = data + from;
  while (p < end) {
    switch (mode_) {
      case kRowStart:
      case kBlankPrefix: {
        const char c = *p;
        if (c == '\n') {
          ++p;
          mode_ = kRowStart;
          if (!on_row(base + (p - data), true)) return static_cast<size_t>(p - data);
        } else if (IsBlankByte(c)) {
          ++p;
          mode_ = kBlankPrefix;
        } else if (csv_ && c == '"' && mode_ == kRowStart) {
          ++p;
          mode_ = kQuoted;
        } else {
          // A quote after blank bytes is literal (pandas reads "  \"a" as an unquoted field);
          // ',' is handled by the unquoted search, which sees it first.
          mode_ = kUnquoted;
        }
        break;
      }
      case kFieldStart:
        if (*p == '"') {
          ++p;
          mode_ = kQuoted;
        } else {
          mode_ = kUnquoted;
        }
        break;
      case kUnquoted: {
        const char* hit = csv_ ? FindEither(p, end, ',', '\n') : FindByte(p, end, '\n');
        if (hit == end) return size;
        p = hit + 1;
        if (*hit == ',') {
          mode_ = kFieldStart;
        } else {
          mode_ = kRowStart;
          if (!on_row(base + (p - data), false)) return static_cast<size_t>(p - data);
        }
        break;
      }
      case kQuoted: {
        const char* hit = FindByte(p, end, '"');
        if (hit == end) return size;
        p = hit + 1;
        mode_ = kQuoteInQuoted;
        break;
      }
      case kQuoteInQuoted:
        if (*p == '"') {  // "" inside a quoted field
          ++p;
          mode_ = kQuoted;
        } else {  // closed: ',' or '\n' end the field, anything else continues it unquoted
          mode_ = kUnquoted;
        }
        break;
    }
  }
  return size;
}

}  // namespace parallelrun::rt::internal
