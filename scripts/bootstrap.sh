#!/usr/bin/env bash
# Set-up shared by run_local.sh, run_tests.sh and CI: tesseract (and, with --tests, chromium
# for the dashboard's browser test) from Debian's packages, a virtual environment in .venv,
# and racelens installed into it (editable, with dev tools).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Besides tesseract: the GL, GLib and X11 libraries that OpenCV's Qt loads on `import cv2`
# (rapidocr-onnxruntime requires opencv-python, not the headless build); the Dockerfile
# installs the same, and tests/test_portability.py checks both against the installed wheels.
if ! command -v tesseract >/dev/null 2>&1 || ! /sbin/ldconfig -p | grep -q 'libGL\.so\.1'; then
  echo "== installing tesseract-ocr and OpenCV's system libraries (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq tesseract-ocr \
    libgl1 libglib2.0-0 libsm6 libice6 libx11-6 libxext6 libxcb1 >/dev/null
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
