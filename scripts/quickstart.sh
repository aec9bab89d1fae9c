#!/usr/bin/env bash
# README's first command: install what is needed, build, and run examples/score-files locally.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh default
echo
echo "== parallelrun run examples/score-files/job.yaml =="
build/bin/parallelrun run examples/score-files/job.yaml --restart
