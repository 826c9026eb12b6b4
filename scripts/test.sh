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
# The report test renders a page in headless Chromium (Debian's chromium package). When it is
# missing and we can (root with apt-get), install it system-wide, saying so first;
# FACESWAP_NO_CHROMIUM=1 skips that (the report test then skips and says why).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && [ -z "${FACESWAP_NO_CHROMIUM:-}" ]; then
  echo "scripts/test.sh: installing Chromium system-wide (apt-get install chromium, a few hundred MB)" \
       "for the report rendering test; set FACESWAP_NO_CHROMIUM=1 to skip it" >&2
  if { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq chromium; } >/dev/null 2>&1; then
    echo "scripts/test.sh: installed $(command -v chromium)" >&2
  else
    echo "scripts/test.sh: could not install chromium; the report test will skip" >&2
  fi
fi
.venv/bin/python -m pytest -q "$@"
