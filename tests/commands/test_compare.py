"""A run writes per-query metrics, TREC runs and final-vs-baseline significance; `ragtune compare` reads them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ragtune.eval.saved import load_per_query
from ragtune.eval.significance import compare_per_query
from tests.commands.test_run import run_entry
from tests.conftest import REPO

pytrec_eval = pytest.importorskip("pytrec_eval")


def test_a_run_saves_what_a_paired_comparison_needs(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    out, proc = run_entry(tmp_path, subprocess_env, "biencoder", tiny_model_dir, tiny_data_root,
                          "--train.epochs=2", "--train.batch_size=8", "--optim.lr=1e-3", "--loss.temperature=0.1")
    results = json.loads((out / "results.json").read_text())
    qrels = {}
    for line in (tiny_data_root / "tiny" / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    for stage in ("baseline", "final"):
        rows = load_per_query(out, stage, "test")
        assert set(rows) == set(qrels)
        # the per-query rows average to results.json's numbers
        assert np.mean([r["ndcg@10"] for r in rows.values()]) == pytest.approx(results[f"{stage}/test/ndcg@10"])
        # and the saved TREC run, scored by pytrec_eval, gives the same per-query values
        run = {}
        for line in (out / "trec" / f"{stage}-test.trec").read_text().splitlines():
            qid, _, doc, rank, score, _ = line.split()
            run.setdefault(qid, {})[doc] = float(score)
        scored = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
        for qid, row in rows.items():
            assert row["ndcg@10"] == pytest.approx(scored[qid]["ndcg_cut_10"], abs=1e-6)
    # tiny's test positives (d0, d4, ...) are no train query's positive: every test query is unseen
    assert results["final/test_unseen_pos/ndcg@10"] == pytest.approx(results["final/test/ndcg@10"])
    assert "final/test_seen_pos/ndcg@10" not in results
    saved = json.loads((out / "significance.json").read_text())["test"]["ndcg@10"]
    expected = compare_per_query(load_per_query(out, "baseline", "test"), load_per_query(out, "final", "test"),
                                 ["ndcg@10"], seed=7)["ndcg@10"]  # the run's seed
    assert saved == pytest.approx(expected)
    assert saved["delta"] == pytest.approx(results["final/test/ndcg@10"] - results["baseline/test/ndcg@10"])
    assert "final vs baseline on test" in proc.stdout

    shown = subprocess.run([sys.executable, "-m", "ragtune", "compare", str(out), "--metrics", "ndcg@10", "--seed",
                            "7"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("| ndcg@10"))
    assert f"{saved['p']:.4f}" in row and f"{saved['delta']:+.4f}" in row
    again = subprocess.run([sys.executable, "-m", "ragtune", "compare", str(out), str(out), "--metrics", "nope"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--metrics: ['nope'] not in both runs" in again.stderr
    for args, message in (([str(out), "--resamples", "0"], "--resamples must be >= 1, got 0"),
                          ([str(tmp_path / "missing")], "no per-query metrics at")):
        proc = subprocess.run([sys.executable, "-m", "ragtune", "compare", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_seen_and_unseen_positive_splits_by_hand():
    from ragtune.commands.run import positive_overlap_splits
    from ragtune.eval.metrics import Evaluated

    qrels = {"q1": {"a": 1, "b": 0}, "q2": {"b": 1}, "q3": {"c": 2}}
    rows = {"q1": {"ndcg@10": 1.0}, "q2": {"ndcg@10": 0.5}, "q3": {"ndcg@10": 0.0}}
    run = {q: {"a": 1.0} for q in qrels}
    # "b" is judged 0 for q1, so only q1's "a" and q2's "b" can make a query seen
    split = positive_overlap_splits("test", Evaluated(run, qrels, rows, {"ndcg@10": 0.5}), frozenset({"a", "b"}))
    assert set(split["test_seen_pos"].rows) == {"q1", "q2"} and split["test_seen_pos"].means == {"ndcg@10": 0.75}
    assert set(split["test_unseen_pos"].rows) == {"q3"} and split["test_unseen_pos"].means == {"ndcg@10": 0.0}
