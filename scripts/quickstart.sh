#!/usr/bin/env bash
# Set up a virtual environment and run the pipeline as far as it exists: render a sample clip
# of a real face (or use the clip given as $1), extract its faces, and show the face set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
OUT=${OUT:-quickstart-out}
mkdir -p "$OUT"
CLIP=${1:-$OUT/sample.mp4}
if [ -z "${1:-}" ]; then
  .venv/bin/python -c "from faceswap.synthetic import render_clip; render_clip('$CLIP', 96)"
  echo "rendered a sample clip of a real face with head motion: $CLIP"
fi
.venv/bin/faceswap extract "$CLIP" -o "$OUT/faces"
.venv/bin/faceswap faceset info "$OUT/faces"
echo "aligned faces are in $OUT/faces/faces/ ; the index is $OUT/faces/faceset.json"
