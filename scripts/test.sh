#!/usr/bin/env bash
# README's second command (and what CI runs): install, build, and run every test: the whole suite
# on the default build, then the unit tests under AddressSanitizer + UndefinedBehaviorSanitizer,
# then a short libFuzzer run of the manifest parser and the CSV splitter (when clang is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh default
ctest --preset default
bash scripts/build.sh asan
ctest --preset asan
bash scripts/fuzz.sh
