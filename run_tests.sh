#!/usr/bin/env bash
# Set up on a fresh machine if needed, check lint and formatting, then run the test suite.
# Extra arguments go to pytest (e.g. ./run_tests.sh -k exif).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/bootstrap.sh --tests
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
