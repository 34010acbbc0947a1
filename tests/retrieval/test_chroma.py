"""A real embedded Chroma on a temporary folder against exact search computed independently with numpy."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.commands.test_run import CONFIG
from tests.conftest import REPO

pytest.importorskip("chromadb")

from ragtune.retrieval.chroma import (  # noqa: E402  (after the importorskip)
    HnswSettings,
    check_name,
    collection_mismatch,
    open_collection,
    query_collection,
    write_collection,
)

N_DOCS, DIM, N_QUERIES, K = 300, 16, 20, 10


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def corpus():
    rng = np.random.default_rng(0)
    docs, queries = unit(rng.normal(size=(N_DOCS, DIM))), unit(rng.normal(size=(N_QUERIES, DIM)))
    return [f"doc{i}" for i in range(N_DOCS)], docs, [f"q{i}" for i in range(N_QUERIES)], queries


def numpy_top(q: np.ndarray, d: np.ndarray, doc_ids: list[str], k: int) -> list[tuple[list[str], np.ndarray]]:
    scores = q.astype(np.float64) @ d.astype(np.float64).T
    order = np.argsort(-scores, axis=1)[:, :k]
    return [([doc_ids[j] for j in row], scores[i, row]) for i, row in enumerate(order)]


def assert_equals_exact(run, query_ids, expected):
    for qid, (ids, scores) in zip(query_ids, expected, strict=True):
        assert list(run[qid]) == ids  # Chroma's order is the exact ranking, not just the same set
        np.testing.assert_allclose(list(run[qid].values()), scores, atol=1e-5)


def test_top10_ids_and_scores_equal_numpy_exact_search(tmp_path, corpus):
    doc_ids, docs, query_ids, queries = corpus
    collection = write_collection(tmp_path / "db", "toy", doc_ids, docs, batch_size=64)  # several adds
    assert collection.count() == N_DOCS
    assert_equals_exact(query_collection(collection, query_ids, queries, K), query_ids,
                        numpy_top(queries, docs, doc_ids, K))


def test_cosine_space_scores_are_cosines(tmp_path, corpus):
    doc_ids, docs, query_ids, queries = corpus
    collection = write_collection(tmp_path / "db", "toy", doc_ids, docs * 3.0, HnswSettings(space="cosine"))
    assert_equals_exact(query_collection(collection, query_ids, queries * 0.5, K), query_ids,
                        numpy_top(queries, docs, doc_ids, K))  # norms do not matter in the cosine space


def test_a_new_process_reads_the_same_results_from_the_folder(tmp_path, corpus, subprocess_env):
    doc_ids, docs, query_ids, queries = corpus
    db = tmp_path / "db"
    run = query_collection(write_collection(db, "toy", doc_ids, docs), query_ids, queries, K)
    np.save(tmp_path / "q.npy", queries)
    script = (f"import json, numpy as np\nfrom ragtune.retrieval.chroma import open_collection, query_collection\n"
              f"c = open_collection({str(db)!r}, 'toy')\n"
              f"run = query_collection(c, {query_ids!r}, np.load({str(tmp_path / 'q.npy')!r}), {K})\n"
              f"print(json.dumps({{'count': c.count(), 'run': run}}))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=subprocess_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reopened = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reopened["count"] == N_DOCS
    assert {q: list(d) for q, d in reopened["run"].items()} == {q: list(d) for q, d in run.items()}
    for qid in query_ids:
        np.testing.assert_allclose(list(reopened["run"][qid].values()), list(run[qid].values()), atol=1e-6)


def test_adapted_queries_on_the_base_collection_equal_exact_search(tmp_path, corpus):
    from ragtune.models.adapter import QueryAdapter, apply_adapter

    doc_ids, docs, query_ids, queries = corpus
    collection = write_collection(tmp_path / "db", "toy", doc_ids, docs)
    adapter = QueryAdapter(DIM, kind="linear", normalize=True)
    with torch.no_grad():
        adapter.weight.copy_(torch.eye(DIM) + 0.8 * torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(3)))
    weight = adapter.weight.detach().numpy().astype(np.float64)
    adapted_by_hand = unit(queries.astype(np.float64) @ weight.T)  # f(q) = normalise(W q), independently
    run = query_collection(collection, query_ids, apply_adapter(adapter, queries), K)
    expected = numpy_top(adapted_by_hand, docs, doc_ids, K)
    assert_equals_exact(run, query_ids, expected)
    base = numpy_top(queries, docs, doc_ids, K)
    assert sum(e[0] != b[0] for e, b in zip(expected, base, strict=True)) >= N_QUERIES // 2  # it did change rankings


def test_dimension_mismatch_names_both_dims(tmp_path, corpus):
    doc_ids, docs, query_ids, queries = corpus
    collection = write_collection(tmp_path / "db", "toy", doc_ids, docs)
    with pytest.raises(ValueError, match=r"dim 8 .*dim 16"):
        query_collection(collection, query_ids, queries[:, :8], K)
    with pytest.raises(ValueError, match=r"expected \(300, dim\) embeddings for 300 ids, got \(299, 16\)"):
        write_collection(tmp_path / "db", "toy", doc_ids, docs[:299])


def test_rewrite_replaces_and_mismatch_says_why(tmp_path, corpus):
    doc_ids, docs, query_ids, queries = corpus
    db = tmp_path / "db"
    collection = write_collection(db, "toy", doc_ids, docs)
    assert collection_mismatch(open_collection(db, "toy"), doc_ids, docs) == ""
    assert "fingerprint" in collection_mismatch(collection, doc_ids, -docs)
    assert "HNSW settings" in collection_mismatch(collection, doc_ids, docs, HnswSettings(ef_search=500))
    assert "300 vectors, the corpus has 299" in collection_mismatch(collection, doc_ids[:299], docs[:299])
    # Chroma ignores an add of an id it holds; a rewrite must replace the vectors, not keep the old ones.
    collection = write_collection(db, "toy", doc_ids, -docs)
    assert collection.count() == N_DOCS
    assert_equals_exact(query_collection(collection, query_ids, queries, K), query_ids,
                        numpy_top(queries, -docs, doc_ids, K))
    with pytest.raises(FileNotFoundError, match="no collection 'other'.*toy"):
        open_collection(db, "other")
    with pytest.raises(ValueError, match="3-512 characters"):
        check_name("ab")


def test_command_reproduces_exact_search_and_reuses_the_collection(tmp_path, tiny_model_dir, tiny_data_root):
    from ragtune.commands.chroma import main
    from ragtune.config import ModelConfig
    from ragtune.data.beir import load_beir
    from ragtune.eval.dense import corpus_texts
    from ragtune.models.adapter import QueryAdapter, save_adapter
    from ragtune.models.encoder import Encoder

    config = tmp_path / "c.py"
    config.write_text(CONFIG.format(task="eval", out=str(tmp_path / "run"), model=str(tiny_model_dir),
                                    root=str(tiny_data_root)))
    adapter = QueryAdapter(32, kind="linear", normalize=True)
    with torch.no_grad():
        adapter.weight.copy_(torch.eye(32) + 0.5 * torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
    save_adapter(adapter, tmp_path / "adapter")
    out = tmp_path / "res.json"
    argv = ["--config", str(config), "--adapter", str(tmp_path / "adapter"), "--db", str(tmp_path / "db"),
            "--top-k", "20", "--out", str(out)]
    assert main(argv) == 0
    first = json.loads(out.read_text())
    assert main(argv) == 0
    second = json.loads(out.read_text())
    assert first["collection_action"].startswith("written") and second["collection_action"].startswith("reused")

    # Independently: embeddings, numpy search with the adapter applied by hand, ndcg / recall by hand.
    dataset = load_beir("tiny", "test", str(tiny_data_root))
    encoder = Encoder.from_config(ModelConfig(name=str(tiny_model_dir), query_max_length=16, doc_max_length=32))
    doc_ids, texts = corpus_texts(dataset)
    d = encoder.encode(texts, kind="doc", batch_size=8, show_progress=False)
    qids = list(dataset.queries)
    q = encoder.encode([dataset.queries[i] for i in qids], kind="query", batch_size=8, show_progress=False)
    weight = adapter.weight.detach().numpy().astype(np.float64)
    for side, q_side in (("base", q), ("adapter", unit(q.astype(np.float64) @ weight.T))):
        ranked = [ids for ids, _ in numpy_top(q_side, d, doc_ids, 20)]
        ranks = [ids.index(next(iter(dataset.qrels[i]))) + 1 if next(iter(dataset.qrels[i])) in ids else None
                 for i, ids in zip(qids, ranked, strict=True)]  # one relevant doc per tiny query
        expected = {"recall@1": np.mean([r == 1 for r in ranks]), "recall@5": np.mean([r is not None and r <= 5
                                                                                     for r in ranks]),
                    "ndcg@10": np.mean([1 / math.log2(r + 1) if r is not None and r <= 10 else 0 for r in ranks])}
        for result in (first, second):
            got = result["sides"][side]
            for key, value in expected.items():
                assert got["chroma"][key] == pytest.approx(value, abs=1e-6), (side, key)
                assert got["exact"][key] == pytest.approx(value, abs=1e-6), (side, key)
            assert got["top10_overlap"] == 1.0 and got["max_score_gap"] < 1e-5
    assert first["sides"]["adapter"]["chroma"] != first["sides"]["base"]["chroma"]  # the adapter changed something
