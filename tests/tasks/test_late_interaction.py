"""The late_interaction task end to end on the tiny set: trained through the one loop, reported
over the whole corpus, as a reranker and beside its first stage, and exported so that the folder
reproduces the reported test metrics through a direct (unblocked) MaxSim."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.commands.test_run import CONFIG
from tests.conftest import REPO

ARGS = ["--train.max_steps=4", "--train.batch_size=8", "--optim.lr=1e-3", "--mining.source=bm25",
        "--data.num_negatives=1", "--loss.temperature=1.0", "--late.rerank_n=10", "--late.dim=16"]


def _run(tmp_path, env, config: str, out, *extra):
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), "--config", config, *ARGS, *extra,
                           f"--output_dir={out}"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_late_interaction_trains_reports_three_ways_and_exports_what_it_reported(
        tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    from ragtune.data.beir import load_beir
    from ragtune.eval.metrics import evaluate
    from ragtune.models.late_interaction import LateInteraction
    from ragtune.retrieval.maxsim import maxsim

    config = tmp_path / "c.py"
    config.write_text(CONFIG.format(task="late_interaction", out=str(tmp_path / "unused"), model=str(tiny_model_dir),
                                    root=str(tiny_data_root)))
    out = tmp_path / "late"
    results = _run(tmp_path, subprocess_env, str(config), out)
    for stage in ("baseline", "final"):
        for split in ("test", "test-rerank-hybrid10", "test-hybrid"):
            assert f"{stage}/{split}/ndcg@10" in results, (stage, split)
    # the first stage alone is the hybrid task's own number, before and after training alike
    config_hybrid = tmp_path / "h.py"
    config_hybrid.write_text(config.read_text().replace("task='late_interaction'", "task='hybrid'"))
    hybrid = _run(tmp_path, subprocess_env, str(config_hybrid), tmp_path / "hybrid")
    assert results["final/test-hybrid/ndcg@10"] == pytest.approx(hybrid["final/test/ndcg@10"], abs=1e-12)
    assert results["baseline/test-hybrid/ndcg@10"] == results["final/test-hybrid/ndcg@10"]

    timings = json.loads((out / "timings.json").read_text())
    assert timings["steps"] == 4 and timings["test_store_bytes_per_doc"] == pytest.approx(
        timings["test_store_tokens_per_doc"] * 16 * 2)  # 16 dims of float16 per token

    # The exported folder, scored by the plain MaxSim of every query with every padded document
    model = LateInteraction.load(out / "model").eval()
    test = load_beir("tiny", "test", str(tiny_data_root))
    doc_ids = list(test.corpus)
    with torch.no_grad():
        batch = model.tokenize([test.corpus[d].full_text() for d in doc_ids], "doc")
        docs = model(**batch, kind="doc")
        queries = model.encode_queries([test.queries[q] for q in test.queries])
    scores = maxsim(queries, docs.half().float())  # the store keeps float16
    run = {q: {doc_ids[j]: float(scores[i, j]) for j in range(len(doc_ids))} for i, q in enumerate(test.queries)}
    metrics = evaluate(run, test.qrels, (10,))
    assert metrics["ndcg@10"] == pytest.approx(results["final/test/ndcg@10"], abs=1e-9)

    # late_eval reads the folder back and reports the same three rows (the first stage's dense side
    # named explicitly: here the initial model, as in the training run)
    evaluated = _run(tmp_path, subprocess_env, str(config), tmp_path / "eval", "--task=late_eval",
                     f"--model.name={out / 'model'}", f"--rerank.first_stage_model={tiny_model_dir}")
    for split in ("test", "test-rerank-hybrid10", "test-hybrid"):
        assert evaluated[f"final/{split}/ndcg@10"] == pytest.approx(results[f"final/{split}/ndcg@10"], abs=1e-12)
