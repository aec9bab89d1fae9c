// RowScanner: finds where rows end in a CSV or JSON-lines byte stream that arrives in pieces
// (a fixed read buffer refilled from a file, or one in-memory string). Internal to the
// partitioner; the public entry points are RowEnds() and MakePartitioner() in partitioner.h.
//
// JSON-lines rows end at '\n', and JSON lines has no quoting. CSV rows end, outside quotes, at
// '\n', '\r\n' or a lone '\r' (old Mac files), as in pandas' C parser. CSV follows RFC 4180 (a
// quoted field may hold ',',
// '\n' and doubled quotes) and, on input that breaks RFC 4180, what pandas' C parser does, so that
// our ranges cut where the workers' parser cuts: a quote opens a quoted field only as the field's
// first byte (`5'10",x` is an unquoted field holding a quote), and text after a closing quote
// continues the field unquoted. A row made only of ' ', '\t' and '\r' (CSV; JSON lines: any ASCII
// whitespace) is blank: pandas skips it, so it is reported as blank and never counted as an item.
//
// Guarantees: state carries across pieces, so the row ends found do not depend on how the stream
// is cut; the scanner never copies data and holds no memory of its own.
//
// How it is fast: the byte-by-byte state machine (ScanBytes) is the definition. For CSV on x86-64
// a block path looks at 64 bytes at a time: SSE2 masks of quotes, commas, newlines and blank
// bytes; quote parity (a prefix XOR) marks what is inside quotes, and newlines outside quotes are
// the row ends. Parity agrees with the state machine exactly when every quote that parity says
// opens a field follows a ',', a '\n', a closing quote (a doubled "") or the row start; a block
// where that fails (a stray quote) goes through the state machine instead.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace parallelrun::rt::internal {

// First position in [p, end) holding byte `a` or `b`, or `end`.
inline const char* FindEither(const char* p, const char* end, char a, char b) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;
  const uint64_t pa = kOnes * static_cast<unsigned char>(a);
  const uint64_t pb = kOnes * static_cast<unsigned char>(b);
  // Exact zero-byte test (no false positives): the high bit of each byte of `x` that is zero.
  auto zero_bytes = [](uint64_t x) { return ~(((x & kLow7) + kLow7) | x | kLow7); };
  while (end - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    const uint64_t m = zero_bytes(w ^ pa) | zero_bytes(w ^ pb);
    if (m != 0) return p + (__builtin_ctzll(m) >> 3);
    p += 8;
  }
#endif
  while (p < end && *p != a && *p != b) ++p;
  return p;
}

// First position in [p, end) holding byte `a`, `b` or `c`, or `end`.
inline const char* FindAny3(const char* p, const char* end, char a, char b, char c) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;
  const uint64_t pa = kOnes * static_cast<unsigned char>(a);
  const uint64_t pb = kOnes * static_cast<unsigned char>(b);
  const uint64_t pc = kOnes * static_cast<unsigned char>(c);
  auto zero_bytes = [](uint64_t x) { return ~(((x & kLow7) + kLow7) | x | kLow7); };
  while (end - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    const uint64_t m = zero_bytes(w ^ pa) | zero_bytes(w ^ pb) | zero_bytes(w ^ pc);
    if (m != 0) return p + (__builtin_ctzll(m) >> 3);
    p += 8;
  }
#endif
  while (p < end && *p != a && *p != b && *p != c) ++p;
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
  size_t Scan(const char* data, size_t size, size_t from, int64_t base, OnRow&& on_row) {
    size_t pos = from;
#if defined(__SSE2__)
    if (csv_) {
      bool stopped = false;
      pos = ScanBlocks(data, size, pos, base, on_row, &stopped);
      if (stopped) return pos;
    }
#endif
    bool stopped = false;
    return ScanBytes(data, size, pos, base, on_row, &stopped);
  }

  // True when bytes after the last row end have been scanned: at the end of the stream they form
  // a last row with no trailing newline, which ends at the end of the stream. `blank` tells
  // whether that row is blank.
  // True when the scan so far ends inside a quoted field (an unclosed quote at the stream's end).
  bool InQuotes() const { return mode_ == kQuoted; }

  bool PendingRow(bool* blank) const {
    *blank = mode_ == kBlankPrefix || mode_ == kCrBlank;
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
    kCrBlank,        // csv: a '\r' ended the piece; the row so far is blank ('\n' may follow)
    kCrContent,      // csv: a '\r' ended the piece; the row has content ('\n' may follow)
  };

  bool IsBlankByte(char c) const {
    return c == ' ' || c == '\t' || c == '\r' || (!csv_ && (c == '\f' || c == '\v'));
  }

  // The state machine over data[from, limit). Sets *stopped when on_row asked to stop.
  template <typename OnRow>
  size_t ScanBytes(const char* data, size_t limit, size_t from, int64_t base, OnRow& on_row,
                   bool* stopped);

  // Where ScanBytes is: data[p - data] is stream byte base + (p - data); `end` is its limit.
  template <typename OnRow>
  struct ByteCursor {
    const char* const data;
    const char* const end;
    const char* p;
    const int64_t base;
    OnRow& on_row;
  };
  // The steps of the state machine from at.p (at.p < at.end), one per mode, each moving at.p past
  // what it consumed. They return true when on_row asked to stop (at.p is then just past that
  // row's end).
  // Reports the row that ends at at.p and starts the next one.
  template <typename OnRow>
  bool EndRow(ByteCursor<OnRow>& at, bool blank);
  // kCrBlank, kCrContent: a '\r' ended the last piece.
  template <typename OnRow>
  bool StepAfterCr(ByteCursor<OnRow>& at);
  // kRowStart, kBlankPrefix: blank bytes, a blank row's end, an opening quote or content.
  template <typename OnRow>
  bool StepRowStart(ByteCursor<OnRow>& at);
  // kUnquoted: on to the next ',' or row end (one search call).
  template <typename OnRow>
  bool StepUnquoted(ByteCursor<OnRow>& at);

#if defined(__SSE2__)
  // The 64-byte block path over whole blocks of data[from, size); returns where it stopped.
  template <typename OnRow>
  size_t ScanBlocks(const char* data, size_t size, size_t from, int64_t base, OnRow& on_row,
                    bool* stopped);
#endif

  bool csv_;
  Mode mode_ = kRowStart;
};

template <typename OnRow>
size_t RowScanner::ScanBytes(const char* data, size_t limit, size_t from, int64_t base,
                             OnRow& on_row, bool* stopped) {
  ByteCursor<OnRow> at{data, data + limit, data + from, base, on_row};
  while (at.p < at.end) {
    bool stop = false;
    switch (mode_) {
      case kCrBlank:
      case kCrContent:
        stop = StepAfterCr(at);
        break;
      case kRowStart:
      case kBlankPrefix:
        stop = StepRowStart(at);
        break;
      case kFieldStart:  // a quote here opens a quoted field
        mode_ = *at.p == '"' ? kQuoted : kUnquoted;
        if (mode_ == kQuoted) ++at.p;
        break;
      case kUnquoted:
        stop = StepUnquoted(at);
        break;
      case kQuoted:  // the field goes on to the next quote
        at.p = FindByte(at.p, at.end, '"');
        if (at.p < at.end) {
          ++at.p;
          mode_ = kQuoteInQuoted;
        }
        break;
      case kQuoteInQuoted:
        // "" inside a quoted field; else it closed: ',' or '\n' end the field, anything else
        // continues it unquoted.
        mode_ = *at.p == '"' ? kQuoted : kUnquoted;
        if (mode_ == kQuoted) ++at.p;
        break;
    }
    if (stop) {
      *stopped = true;
      return static_cast<size_t>(at.p - data);
    }
  }
  return limit;
}

template <typename OnRow>
bool RowScanner::EndRow(ByteCursor<OnRow>& at, bool blank) {
  mode_ = kRowStart;
  return !at.on_row(at.base + (at.p - at.data), blank);
}

template <typename OnRow>
bool RowScanner::StepAfterCr(ByteCursor<OnRow>& at) {
  // The row ended at the '\r' that ended the last piece, or at this '\n' after it.
  const bool blank = mode_ == kCrBlank;
  if (*at.p == '\n') ++at.p;
  return EndRow(at, blank);
}

template <typename OnRow>
bool RowScanner::StepRowStart(ByteCursor<OnRow>& at) {
  const char c = *at.p;
  if (csv_ && c == '\r') {
    ++at.p;
    if (at.p == at.end) {
      mode_ = kCrBlank;
    } else if (*at.p == '\n') {
      mode_ = kBlankPrefix;  // the '\n' ends the row
    } else {
      return EndRow(at, true);  // a lone '\r'
    }
  } else if (c == '\n') {
    ++at.p;
    return EndRow(at, true);
  } else if (IsBlankByte(c)) {
    ++at.p;
    mode_ = kBlankPrefix;
  } else if (csv_ && c == '"' && mode_ == kRowStart) {
    ++at.p;
    mode_ = kQuoted;
  } else {
    // A quote after blank bytes is literal (pandas reads "  \"a" as an unquoted field);
    // ',' is handled by the unquoted search, which sees it first.
    mode_ = kUnquoted;
  }
  return false;
}

template <typename OnRow>
bool RowScanner::StepUnquoted(ByteCursor<OnRow>& at) {
  const char* hit = csv_ ? FindAny3(at.p, at.end, ',', '\n', '\r') : FindByte(at.p, at.end, '\n');
  if (hit == at.end) {
    at.p = at.end;
    return false;
  }
  at.p = hit + 1;
  if (*hit == ',') {
    mode_ = kFieldStart;
  } else if (*hit == '\r' && at.p == at.end) {
    mode_ = kCrContent;
  } else if (*hit == '\r' && *at.p == '\n') {
    mode_ = kUnquoted;  // "\r\n": the '\n' ends the row
  } else {
    return EndRow(at, false);
  }
  return false;
}

#if defined(__SSE2__)
template <typename OnRow>
size_t RowScanner::ScanBlocks(const char* data, size_t size, size_t from, int64_t base,
                              OnRow& on_row, bool* stopped) {
  size_t pos = from;
  while (size - pos >= 64) {
    const char* const p = data + pos;
    // Masks over the 64 bytes (bit i = byte p[i]).
    uint64_t quote = 0, comma = 0, newline = 0, blank = 0, cr = 0;
    for (int k = 0; k < 4; ++k) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
      auto mask = [&x](char c) { return _mm_cmpeq_epi8(x, _mm_set1_epi8(c)); };
      auto bits = [](__m128i m) {
        return static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(m)));
      };
      const __m128i nl = mask('\n');
      cr |= bits(mask('\r')) << (16 * k);
      quote |= bits(mask('"')) << (16 * k);
      comma |= bits(mask(',')) << (16 * k);
      newline |= bits(nl) << (16 * k);
      blank |= bits(_mm_or_si128(_mm_or_si128(mask(' '), mask('\t')), _mm_or_si128(mask('\r'), nl)))
               << (16 * k);
    }
    // inside: bit i set when byte i is inside a quoted field, counting its opening quote and not
    // its closing one (a prefix XOR of the quotes, carried in from the previous block).
    uint64_t inside = quote;
    inside ^= inside << 1;
    inside ^= inside << 2;
    inside ^= inside << 4;
    inside ^= inside << 8;
    inside ^= inside << 16;
    inside ^= inside << 32;
    if (mode_ == kQuoted) inside = ~inside;
    // Every opening quote must start a field: follow ',', '\n', a closing quote (then it is the
    // second quote of a "") or the row start; else this block needs the state machine.
    const bool start_ok = mode_ == kRowStart || mode_ == kFieldStart || mode_ == kQuoteInQuoted;
    const uint64_t field_start = ((comma | newline | quote) << 1) | (start_ok ? 1 : 0);
    // A '\r' not followed by '\n' in this block (one at its end included), or one pending from
    // the last piece, ends a row only outside quotes: the state machine decides.
    const uint64_t lone_cr = cr & ~(newline >> 1);
    if ((quote & inside & ~field_start) != 0 || lone_cr != 0 || mode_ == kCrBlank ||
        mode_ == kCrContent) {
      pos = ScanBytes(data, pos + 64, pos, base, on_row, stopped);
      if (*stopped) return pos;
      continue;
    }
    const uint64_t content = ~blank;
    uint64_t ends = newline & ~inside;
    bool row_has_content = mode_ != kRowStart && mode_ != kBlankPrefix;
    uint64_t row_bits = ~uint64_t{0};  // bits of the current row within this block
    while (ends != 0) {
      const int i = __builtin_ctzll(ends);
      const uint64_t upto = i == 63 ? ~uint64_t{0} : (uint64_t{1} << (i + 1)) - 1;
      const bool is_blank = !row_has_content && (content & row_bits & upto) == 0;
      if (!on_row(base + static_cast<int64_t>(pos) + i + 1, is_blank)) {
        mode_ = kRowStart;
        *stopped = true;
        return pos + static_cast<size_t>(i) + 1;
      }
      row_has_content = false;
      row_bits = ~upto;
      ends &= ends - 1;
    }
    row_has_content = row_has_content || (content & row_bits) != 0;
    // The state at the block's end, in the state machine's terms.
    const char last = p[63];
    if (inside >> 63) {
      mode_ = kQuoted;
    } else if (last == '"') {
      mode_ = kQuoteInQuoted;
    } else if (last == ',') {
      mode_ = kFieldStart;
    } else if (last == '\n') {
      mode_ = kRowStart;
    } else {
      mode_ = row_has_content ? kUnquoted : kBlankPrefix;
    }
    pos += 64;
  }
  return pos;
}
#endif

}  // namespace parallelrun::rt::internal
