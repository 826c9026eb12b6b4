#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run the test suite: the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
.venv/bin/ruff check .
# The report test renders a page in headless Chromium (Debian's chromium package). Install it
# when missing and we can (root with apt-get); if that fails the test skips and says why.
if { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; } \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "scripts/test.sh: installing the system packages chromium and chromium-driver (apt-get) for the browser tests" >&2
  { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq chromium chromium-driver; } \
    >/dev/null 2>&1 || echo "scripts/test.sh: could not install chromium; the report test will skip" >&2
fi
.venv/bin/python -m pytest -q "$@"
