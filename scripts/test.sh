#!/usr/bin/env bash
# README's second command (and what CI runs): install, build, build the image, and run every test:
# the whole suite on the default build (the image's test included), then the unit tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, then a short libFuzzer run of the manifest parser
# and the CSV splitter (when clang is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-tools.sh
# ccache keys that do not depend on where the checkout is (relative paths, no working folder), so
# the image build (sources in /src, see scripts/build-image.sh) reuses what the host build
# compiled. A base_dir the machine already sets is kept.
[ -n "$(ccache -k base_dir)" ] || export CCACHE_BASEDIR="$PWD"
export CCACHE_NOHASHDIR=1
bash scripts/build.sh default
bash scripts/build-image.sh
ctest --preset default
bash scripts/build.sh asan
ctest --preset asan
bash scripts/fuzz.sh
