#!/usr/bin/env bash
# README's second command (and what CI runs): install, build, build the image, and run every test:
# the whole suite on the default build (the image's test included), then the unit tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, then a short libFuzzer run of the manifest parser
# and the CSV splitter, and clang's thread-safety analysis of the GUARDED_BY/REQUIRES annotations
# (the `tsa` preset; both when clang is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-tools.sh
# The image build (scripts/build-image.sh) lends its build stage this machine's ccache: build with
# the locale it has (ccache keys include LANG) and with manifests that skip the system headers
# (the image's apt may install newer Debian point releases of -dev packages than this machine has).
export LANG=C.UTF-8
unset LC_ALL LC_CTYPE LC_MESSAGES
sloppiness="$(ccache -k sloppiness)"
export CCACHE_SLOPPINESS="${sloppiness:+$sloppiness, }system_headers"
# Free disk after each step, for a CI run that runs out of it (build/ is ~1.5 GB, build-asan/
# ~2.5 GB, the image's layers ~2 GB).
disk() { echo "test.sh: $1: $(df -Pk . | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }') GB free" >&2; }
disk "before building"
bash scripts/build.sh default
bash scripts/build-image.sh
disk "built the default preset and the image"
ctest --preset default
bash scripts/build.sh asan
disk "built the asan preset"
ctest --preset asan
bash scripts/fuzz.sh
if command -v clang++ >/dev/null 2>&1; then
  cmake --preset tsa >/dev/null
  cmake --build --preset tsa
fi
disk "done"
