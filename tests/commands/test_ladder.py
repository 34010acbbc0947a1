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


def test_inner_folds_reach_the_adapter_rung_only_and_its_cv_json_choices_are_not_metrics(tmp_path):
    from ragtune.commands.ladder import rung_command, rung_row

    adapter = rung_command("adapter", {}, tmp_path / "adapter", folds=5, inner_folds=5)
    biencoder = rung_command("biencoder", {}, tmp_path / "biencoder", folds=5, inner_folds=5)
    assert adapter[adapter.index("--inner-folds") + 1] == "5" and "--inner-folds" not in biencoder
    (tmp_path / "cv.json").write_text(json.dumps({
        "final/test/ndcg@10": {"final_mean": 0.39, "final_std": 0.05},
        "inner": {"0": {"chosen_epoch": 3, "chosen_mean": 0.4}}}))
    assert rung_row("adapter", tmp_path, folds=5) == {"variant": "adapter", "final/test/ndcg@10": 0.39,
                                                      "final/test/ndcg@10_std": 0.05}
