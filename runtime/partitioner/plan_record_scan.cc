#include "runtime/partitioner/plan_record_scan.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace parallelrun::rt {
namespace {

// Reads the plain JSON that EncodePlanRecord writes; every method returns false for anything
// else (the caller then falls back to the generic decoder).
class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}

  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool AtEnd() const { return i_ == s_.size(); }

  // A string of printable ASCII without escapes.
  bool Str(std::string_view* out) {
    if (!Eat('"')) return false;
    const size_t start = i_;
    for (; i_ < s_.size(); ++i_) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        *out = s_.substr(start, i_ - start);
        ++i_;
        return true;
      }
      if (c == '\\' || c < 0x20 || c >= 0x7f) return false;
    }
    return false;
  }

  // An integer in [-INT64_MAX, INT64_MAX] without fraction or exponent.
  bool Int(int64_t* out) {
    const bool negative = Eat('-');
    if (!Digit()) return false;
    if (s_[i_] == '0' && i_ + 1 < s_.size() && IsDigit(s_[i_ + 1])) return false;  // not JSON
    int64_t v = 0;
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    for (; Digit(); ++i_) {
      const int d = s_[i_] - '0';
      if (v > (kMax - d) / 10) return false;
      v = v * 10 + d;
    }
    if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E')) return false;
    *out = negative ? -v : v;
    return true;
  }

  // [item, ...] with `item` reading one element.
  template <typename F>
  bool List(F&& item) {
    if (!Eat('[')) return false;
    if (Eat(']')) return true;
    do {
      if (!item()) return false;
    } while (Eat(','));
    return Eat(']');
  }

 private:
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }
  bool Digit() const { return i_ < s_.size() && IsDigit(s_[i_]); }

  std::string_view s_;
  size_t i_ = 0;
};

// The keys of the plain forms; integers first.
enum Key { kId, kIn, kN, kH, kB, kE, kSz, kMt, kIntKeys, kP = kIntKeys, kFmt, kF, kFz, kFm, kKeys };
constexpr std::string_view kKeyNames[kKeys] = {"id", "in", "n",   "h", "b",  "e", "sz",
                                               "mt", "p",  "fmt", "f", "fz", "fm"};

int KeyOf(std::string_view name) {
  for (int k = 0; k < kKeys; ++k) {
    if (kKeyNames[k] == name) return k;
  }
  return -1;
}

struct Fields {
  uint32_t seen = 0;  // bit per Key
  int64_t ints[kIntKeys] = {};
  std::string_view p, fmt;
  std::vector<std::string> f;
  std::vector<int64_t> fz, fm;

  bool Has(int k) const { return (seen & (1u << k)) != 0; }
};

bool ReadValue(Scanner& sc, int key, Fields& out) {
  auto int_list = [&sc](std::vector<int64_t>& list) {
    return sc.List([&] {
      int64_t v = 0;
      if (!sc.Int(&v)) return false;
      list.push_back(v);
      return true;
    });
  };
  switch (key) {
    case kP:
      return sc.Str(&out.p);
    case kFmt:
      return sc.Str(&out.fmt);
    case kF:
      return sc.List([&] {
        std::string_view name;
        if (!sc.Str(&name)) return false;
        out.f.emplace_back(name);
        return true;
      });
    case kFz:
      return int_list(out.fz);
    case kFm:
      return int_list(out.fm);
    default:
      return sc.Int(&out.ints[key]);
  }
}

bool ReadFields(std::string_view line, Fields& out) {
  Scanner sc(line);
  if (!sc.Eat('{')) return false;
  do {
    std::string_view name;
    if (!sc.Str(&name) || !sc.Eat(':')) return false;
    const int key = KeyOf(name);
    if (key < 0 || out.Has(key)) return false;
    out.seen |= 1u << key;
    if (!ReadValue(sc, key, out)) return false;
  } while (sc.Eat(','));
  return sc.Eat('}') && sc.AtEnd();
}

// Each present and >= 0 (as DecodePlanRecordDom's GetInt).
bool NonNegative(const Fields& in, std::initializer_list<int> keys) {
  for (int k : keys) {
    if (!in.Has(k) || in.ints[k] < 0) return false;
  }
  return true;
}

// The checks of DecodePlanRecordDom for a file record ("f").
std::optional<MiniBatch> FileRecord(Fields& in, MiniBatch mb) {
  if (in.f.empty() || static_cast<int64_t>(in.f.size()) != mb.items) return std::nullopt;
  for (const auto& name : in.f) {
    if (name.empty()) return std::nullopt;
  }
  if (in.Has(kFz) || in.Has(kFm)) {
    if (!in.Has(kFz) || !in.Has(kFm) || in.fz.size() != in.f.size() ||
        in.fm.size() != in.f.size()) {
      return std::nullopt;
    }
    for (size_t i = 0; i < in.f.size(); ++i) {
      if (in.fz[i] < -1 || in.fm[i] < -1) return std::nullopt;
    }
    mb.file_sizes = std::move(in.fz);
    mb.file_mtimes_ns = std::move(in.fm);
  }
  mb.files = std::move(in.f);
  return mb;
}

// The checks of DecodePlanRecordDom for a tabular record ("p").
std::optional<MiniBatch> TabularRecord(const Fields& in, MiniBatch mb) {
  if (in.p.empty()) return std::nullopt;
  if (in.fmt == "csv") {
    mb.format = TabularFormat::kCsv;
  } else if (in.fmt == "jsonl") {
    mb.format = TabularFormat::kJsonl;
  } else {
    return std::nullopt;
  }
  if (!NonNegative(in, {kH, kB, kE})) return std::nullopt;
  mb.header_end = in.ints[kH];
  mb.begin = in.ints[kB];
  mb.end = in.ints[kE];
  if (mb.header_end > mb.begin || mb.begin > mb.end) return std::nullopt;
  if (in.Has(kSz) || in.Has(kMt)) {
    if (!NonNegative(in, {kSz, kMt})) return std::nullopt;
    mb.file_size = in.ints[kSz];
    mb.file_mtime_ns = in.ints[kMt];
  }
  mb.file = std::string(in.p);
  return mb;
}

}  // namespace

std::optional<MiniBatch> ScanPlanRecord(std::string_view line) {
  Fields in;
  if (!ReadFields(line, in)) return std::nullopt;
  if (!NonNegative(in, {kId, kIn, kN}) || in.ints[kIn] > std::numeric_limits<int>::max()) {
    return std::nullopt;
  }
  MiniBatch mb;
  mb.id = in.ints[kId];
  mb.input_index = static_cast<int>(in.ints[kIn]);
  mb.items = in.ints[kN];
  if (in.Has(kF)) return FileRecord(in, std::move(mb));
  if (in.Has(kP) && in.Has(kFmt)) return TabularRecord(in, std::move(mb));
  return std::nullopt;
}

}  // namespace parallelrun::rt
