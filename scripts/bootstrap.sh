#!/usr/bin/env bash
# Set-up shared by run_local.sh, run_tests.sh and CI: tesseract (and, with --tests, chromium
# for the dashboard's browser test) from Debian's packages, a virtual environment in .venv,
# and racelens installed into it (editable, with dev tools).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v tesseract >/dev/null 2>&1; then
  echo "== installing tesseract-ocr (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq tesseract-ocr >/dev/null
fi

if [ "${1:-}" = "--tests" ] && {
  ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1
}; then
  echo "== installing chromium and chromium-driver (apt), for the dashboard's browser test"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing racelens into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
