// What an accepted part file must be at assembly: its size and a CRC-32 of its bytes, taken by
// the agent right after the worker wrote it, carried in the results (AttemptResult.part_bytes,
// part_crc32) and journaled by the coordinator. The assembler recomputes both while it copies
// the part, so a part that was deleted, truncated, or overwritten after it was accepted fails the
// assembly (naming the file) instead of silently losing rows.
//
// The checksum is CRC-32 (IEEE 802.3, the polynomial of zlib's crc32 and Python's zlib.crc32),
// computed by slicing-by-8 tables: about 1-2 GB/s on one core, well below the cost of reading the
// part. It detects accidental damage, not tampering.
// Thread-safety: the functions are pure or only read the named file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/base/status.h"

namespace parallelrun::rt {

// Continues a CRC-32 over `n` bytes (start with crc = 0).
uint32_t Crc32(uint32_t crc, const void* data, size_t n);

struct PartFingerprint {
  int64_t bytes = 0;
  uint32_t crc32 = 0;
};

// Reads `path` whole (streaming) and returns its size and CRC-32. NotFound when it is missing.
StatusOr<PartFingerprint> FingerprintFile(const std::string& path);

}  // namespace parallelrun::rt
