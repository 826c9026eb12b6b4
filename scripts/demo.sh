#!/usr/bin/env bash
# The README's main command: set up a virtual environment (if needed) and run `faceswap demo`,
# the whole pipeline on generated sample clips, offline. Arguments go to `faceswap demo`
# (e.g. -o DIR --overwrite, --profile quick).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
exec .venv/bin/faceswap demo "$@"
