#!/usr/bin/env bash
# README's second command (and what CI runs): install, build, build the image, and run every test:
# the whole suite on the default build (the image's test included), then the unit tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, then a short libFuzzer run of the manifest parser
# and the CSV splitter (when clang is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-tools.sh
bash scripts/build.sh default
bash scripts/build-image.sh
ctest --preset default
bash scripts/build.sh asan
ctest --preset asan
bash scripts/fuzz.sh
