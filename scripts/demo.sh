#!/usr/bin/env bash
# Set up (if needed) and run the demo: zero-shot vs fine-tuned retrieval on SciFact.
# Default: the query-only adapter (trains in seconds on a CPU once embeddings are cached).
# Other experiments: bash scripts/demo.sh configs/scifact_biencoder.py [--section.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAGTUNE_DATA=${RAGTUNE_DATA:-$(cd .. && pwd)/shared/data}
config=configs/scifact_adapter.py
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then config=$1; shift; fi
exec .venv/bin/python experiments/run.py --config "$config" "$@"
