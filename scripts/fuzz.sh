#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (skipped when clang is not installed) and runs each for
# FUZZ_SECONDS (default 20) from a seed corpus: the manifest parser and the CSV splitter.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not installed; skipping the libFuzzer targets"
  exit 0
fi
seconds="${FUZZ_SECONDS:-20}"
cmake --preset fuzz >/dev/null
cmake --build build-fuzz --target fuzz_job_spec fuzz_csv_split -j2
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus/spec" "$corpus/csv"
for f in examples/*/job.yaml; do cp "$f" "$corpus/spec/$(basename "$(dirname "$f")").yaml"; done
cp examples/score-table/data/reviews/*.csv "$corpus/csv/"
build-fuzz/bin/fuzz_job_spec -max_total_time="$seconds" -dict=runtime/jobspec/fuzz_job_spec.dict \
  "$corpus/spec" 2>&1 | tail -n 3
build-fuzz/bin/fuzz_csv_split -max_total_time="$seconds" -max_len=4096 "$corpus/csv" 2>&1 | tail -n 3
