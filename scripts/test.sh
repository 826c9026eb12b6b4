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
# The report and UI tests drive headless Chromium (Debian's chromium and chromium-driver). When
# they are missing and we can (root with apt-get), install them system-wide, saying so first;
# FACESWAP_NO_CHROMIUM=1 skips that (those tests then skip and say why).
if { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; } \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && [ -z "${FACESWAP_NO_CHROMIUM:-}" ]; then
  echo "scripts/test.sh: installing Chromium system-wide (apt-get install chromium chromium-driver," \
       "a few hundred MB) for the report and web-app browser tests; set FACESWAP_NO_CHROMIUM=1 to skip it" >&2
  if { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1; then
    echo "scripts/test.sh: installed $(command -v chromium)" >&2
  else
    echo "scripts/test.sh: could not install chromium; the browser tests will skip" >&2
  fi
fi
.venv/bin/python -m pytest -q "$@"
