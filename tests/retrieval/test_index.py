"""Index backends: FAISS flat/HNSW/IVF-PQ against an independent numpy top-k, and the ANN recall report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ragtune.config import IndexConfig
from ragtune.retrieval.index import index_search, ivf_cells, overlap_at_k

pytest.importorskip("faiss")


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Normalised vectors around 20 centres: structured like real embeddings, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


DOCS, QUERIES = clustered(3000, 32, 0), clustered(50, 32, 1)
DOC_IDS, QIDS = [f"d{i}" for i in range(3000)], [f"q{i}" for i in range(50)]


def numpy_top(k: int) -> list[list[str]]:
    scores = QUERIES @ DOCS.T
    return [[DOC_IDS[j] for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


def ranked(run_q: dict[str, float]) -> list[str]:
    return sorted(run_q, key=lambda d: (-run_q[d], d))


def test_faiss_flat_and_exact_give_numpy_top_k_and_scores():
    expected, scores = numpy_top(10), QUERIES @ DOCS.T
    for kind in ("exact", "faiss_flat"):
        run, info = index_search(QUERIES, DOCS, QIDS, DOC_IDS, 10, IndexConfig(kind=kind))
        assert info["index"] == kind and "ann_recall@10" not in info  # exact kinds report no recall
        assert [ranked(run[q]) for q in QIDS] == expected
        for i, q in enumerate(QIDS):
            got = np.array([run[q][d] for d in expected[i]])
            np.testing.assert_allclose(got, scores[i, [DOC_IDS.index(d) for d in expected[i]]], atol=1e-5)


@pytest.mark.parametrize("cfg", [IndexConfig(kind="faiss_hnsw", hnsw_m=16, ef_search=64),
                                 IndexConfig(kind="faiss_ivfpq", nprobe=8, pq_m=8, refine=4),
                                 IndexConfig(kind="faiss_ivfpq", nprobe=2, pq_m=4, refine=1)])
def test_approximate_indexes_report_their_recall_of_exact_search(cfg):
    run, info = index_search(QUERIES, DOCS, QIDS, DOC_IDS, 20, cfg)
    exact = numpy_top(10)
    independent = np.mean([len(set(ranked(run[q])[:10]) & set(exact[i])) / 10 for i, q in enumerate(QIDS)])
    assert info["ann_recall@10"] == pytest.approx(independent)
    assert "ann_recall@20" in info and info["index_build_seconds"] >= 0
    if cfg.kind == "faiss_hnsw" or cfg.refine > 1:  # graph search / refined PQ on clustered data: near exact
        assert info["ann_recall@10"] >= 0.9


def test_ann_recall_is_the_share_of_the_exact_top_k_found():
    exact = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}, "r": {"x": 1.0, "y": 0.5}}
    approx = {"q": {"a": 3.0, "c": 1.0, "z": 0.9}, "r": {"y": 0.5, "x": 1.0}}
    assert overlap_at_k(approx, exact, 2) == pytest.approx((1 / 2 + 2 / 2) / 2)  # q: {a, c} vs {a, b}


def test_ivf_cells_follow_sqrt_n_but_keep_39_training_points_a_cell():
    assert ivf_cells(1_000_000, IndexConfig()) == 4000
    assert ivf_cells(3000, IndexConfig()) == 76 and ivf_cells(100, IndexConfig()) == 2
    assert ivf_cells(1_000_000, IndexConfig(nlist=1024)) == 1024


def test_an_eval_run_with_hnsw_reports_ann_recall_beside_the_metrics(tmp_path, subprocess_env, tiny_model_dir,
                                                                      tiny_data_root):
    from tests.commands.test_run import CONFIG

    cfg = tmp_path / "cfg.py"
    cfg.write_text(CONFIG.format(task="eval", out=str(tmp_path / "unused"), model=str(tiny_model_dir),
                                 root=str(tiny_data_root)))
    results = {}
    for kind in ("exact", "faiss_hnsw"):
        out = tmp_path / kind
        proc = subprocess.run([sys.executable, "-m", "ragtune", "run", "--config", str(cfg), f"--index.kind={kind}",
                               f"--output_dir={out}"], env=subprocess_env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[kind] = json.loads((out / "results.json").read_text())
    hnsw, exact = results["faiss_hnsw"], results["exact"]
    assert hnsw["final/test/ann_recall@10"] == 1.0  # a tiny corpus: the graph finds the exact top 10
    assert all(hnsw[k] == pytest.approx(exact[k]) for k in exact)
    assert json.loads((tmp_path / "faiss_hnsw" / "timings.json").read_text())["index"] == "faiss_hnsw"
