#!/usr/bin/env bash
# One command on a fresh machine: set up, generate the demo race, time it with the
# DirectRunner, score it against the demo's truth, and print where the results are.
#   ./run_local.sh [--athletes N] [--stations M] [--seed S]
set -euo pipefail
cd "$(dirname "$0")"
./scripts/bootstrap.sh

DEMO=demo-race
rm -rf "$DEMO"
echo "== generating the demo race in $DEMO/"
.venv/bin/racelens demo --out "$DEMO" "$@"
echo "== timing the race (DirectRunner, 2 worker processes)"
.venv/bin/racelens run \
  --images "$DEMO/images" --course "$DEMO/course.yaml" --start-list "$DEMO/startlist.csv" \
  --out "$DEMO/results" --direct_running_mode=multi_processing --direct_num_workers=2 \
  --default_sdk_harness_log_level=WARNING
echo "== scoring against $DEMO/truth.csv"
.venv/bin/racelens score --out "$DEMO/results" --truth "$DEMO/truth.csv" --images "$DEMO/images"
