#!/usr/bin/env bash
# One command on a fresh machine: set up, generate the demo race, time it with the
# DirectRunner, score it against the demo's truth, and print where the results are.
#   ./run_local.sh [--athletes N] [--stations M] [--seed S]
# Live demo: the demo race's photos drip into a watched folder in the order they were taken
# (a phone uploading late, some photos twice) while `racelens run --streaming` keeps the
# results current; then a batch run over the same files must give the same results.
#   ./run_local.sh --live [--athletes N] ...      (DRIP_SECONDS=S sets the drip's length)
set -euo pipefail
cd "$(dirname "$0")"
LIVE=0
if [ "${1:-}" = "--live" ]; then
  LIVE=1
  shift
fi
./scripts/bootstrap.sh

DEMO=demo-race
rm -rf "$DEMO"
echo "== generating the demo race in $DEMO/"
.venv/bin/racelens demo --out "$DEMO" "$@"
RACE=(--course "$DEMO/course.yaml" --start-list "$DEMO/startlist.csv")

if [ "$LIVE" = 1 ]; then
  mkdir -p "$DEMO/live-images"
  echo "== live: racelens run --streaming on $DEMO/live-images; watch the leaderboard fill with"
  echo "     .venv/bin/racelens dashboard --out $DEMO/live-results"
  .venv/bin/racelens run --streaming --images "$DEMO/live-images" "${RACE[@]}" \
    --out "$DEMO/live-results" &
  live_pid=$!
  # Ctrl-C stops the drip, not the live run: bash has a script's background job ignore it.
  # The script ends the live run as at the drip's end (complete outputs), then stops.
  trap 'kill -TERM "$live_pid" 2>/dev/null; wait "$live_pid"; exit 130' INT TERM
  .venv/bin/python -m pipeline.drip drip "$DEMO/images" "$DEMO/live-images" \
    ${DRIP_SECONDS:+--seconds "$DRIP_SECONDS"}
  kill -TERM "$live_pid"  # the live run takes in what is left, writes complete outputs, exits
  wait "$live_pid"
  trap - INT TERM
  echo "== batch run over the same files (reusing the live run's photo facts)"
  .venv/bin/racelens run --images "$DEMO/live-images" "${RACE[@]}" --out "$DEMO/batch-results" \
    --facts "$DEMO/live-results/facts" --no-progress >/dev/null
  .venv/bin/python -m pipeline.drip compare "$DEMO/live-results" "$DEMO/batch-results"
  exit
fi

echo "== timing the race (DirectRunner, a worker process per core)"
.venv/bin/racelens run --images "$DEMO/images" "${RACE[@]}" --out "$DEMO/results"
echo "== scoring against $DEMO/truth.csv"
.venv/bin/racelens score --out "$DEMO/results" --truth "$DEMO/truth.csv" --images "$DEMO/images"
