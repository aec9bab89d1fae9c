// Decoding plan records (EncodePlanRecord) without building a JSON document: the coordinator
// decodes one record per mini-batch it hands out, on the lease request's path.
//
// Guarantees: ScanPlanRecord returns a MiniBatch only for a record in the plain form that
// EncodePlanRecord writes for unpartitioned inputs (a file record or a single-file tabular
// record: no "k" or "s"; no whitespace; strings of printable ASCII without escapes; integers
// without fraction or exponent; no duplicate or unknown keys) that passes every check of
// DecodePlanRecordDom, and then it is equal to what DecodePlanRecordDom returns. Anything else is
// nullopt, and DecodePlanRecord falls back to DecodePlanRecordDom (which also words the error).
#pragma once

#include <optional>
#include <string_view>

#include "runtime/base/status.h"
#include "runtime/partitioner/partitioner.h"

namespace parallelrun::rt {

std::optional<MiniBatch> ScanPlanRecord(std::string_view line);
// The generic decoder (nlohmann::json): every form, and the error message naming what is wrong.
StatusOr<MiniBatch> DecodePlanRecordDom(std::string_view line);

}  // namespace parallelrun::rt
