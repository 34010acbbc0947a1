import numpy as np

from ragtune.retrieval.dense import dense_search, read_trec_run, write_trec_run


def test_chunked_search_equals_brute_force():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(53, 5)).astype(np.float32)
    qids, dids = [f"q{i}" for i in range(7)], [f"d{i}" for i in range(53)]
    run = dense_search(q, d, qids, dids, top_k=10, query_chunk=3, doc_chunk=8)
    scores = q @ d.T
    for i, qid in enumerate(qids):
        top = np.argsort(-scores[i])[:10]
        assert list(run[qid]) == [dids[j] for j in top]
        np.testing.assert_allclose(list(run[qid].values()), scores[i, top], rtol=1e-5)


def test_exclude_self_drops_the_query_id():
    emb = np.eye(4, dtype=np.float32)
    ids = ["a", "b", "c", "d"]
    run = dense_search(emb, emb, ids, ids, top_k=2, doc_chunk=2, exclude_self=True)
    assert all(qid not in docs and len(docs) == 2 for qid, docs in run.items())


def test_trec_run_round_trip(tmp_path):
    run = {"q1": {"d1": 0.5, "d2": 0.9}, "q2": {"d3": 1.0}}
    write_trec_run(run, tmp_path / "run.trec", tag="t")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 0.900000 t" and lines[1] == "q1 Q0 d1 2 0.500000 t"
    assert read_trec_run(tmp_path / "run.trec") == run
