"""The ladder command on the tiny BEIR folder: every rung runs its shipped recipe, one table, one plot."""

from __future__ import annotations

import json
import subprocess
import sys


def test_ladder_runs_each_rung_tabulates_its_results_and_skips_finished_rungs(tmp_path, subprocess_env,
                                                                              tiny_model_dir, tiny_data_root):
    out = tmp_path / "ladder"
    cmd = [sys.executable, "-m", "ragtune", "ladder", "--rungs", "zeroshot,bm25,biencoder",
           "--out", str(out), "--data.dataset=tiny", f"--data.data_root={tiny_data_root}",
           f"--model.name={tiny_model_dir}", "--model.doc_max_length=32", "--model.query_max_length=16",
           "--train.batch_size=8", "--eval.batch_size=8", "--log.wandb=disabled"]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "ladder.md").read_text()
    for rung in ("zeroshot", "bm25", "biencoder"):
        results = json.loads((out / rung / "results.json").read_text())
        cells = " | ".join(f"{results[f'final/test/{m}']:.4f}" for m in ("ndcg@10", "recall@10", "mrr@10",
                                                                          "recall@100"))
        assert f"| {rung} | {cells} |" in table
    assert json.loads((out / "biencoder" / "config.json").read_text())["task"] == "biencoder"
    assert (out / "ladder_ndcg_at_10.png").stat().st_size > 1000 and "ladder_ndcg_at_10.png" in table
    again = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("finished, skipped") == 3

    bad = subprocess.run(cmd[:4] + ["--rungs", "zeroshot,colbert"], env=subprocess_env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--rungs: unknown ['colbert']" in bad.stderr
