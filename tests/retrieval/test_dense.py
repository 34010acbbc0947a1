from pathlib import Path

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


def test_a_memory_mapped_corpus_gives_the_same_run_and_is_never_resident_whole(tmp_path):
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    store = tmp_path / "store.npy"
    np.save(store, rng.standard_normal((130_000, 384)).astype(np.float32))  # 200 MB
    q = rng.standard_normal((5, 384)).astype(np.float32)
    np.save(tmp_path / "q.npy", q)
    ids = [str(i) for i in range(130_000)]
    in_ram = dense_search(q, np.load(store), [f"q{i}" for i in range(5)], ids, top_k=10)
    assert dense_search(q, np.load(store, mmap_mode="c"), [f"q{i}" for i in range(5)], ids, top_k=10) == in_ram
    # Peak resident memory (VmHWM; ru_maxrss would carry the parent's peak over exec) of a fresh process
    # scanning the mapped store, above what it held after a warm-up scan of an in-RAM slice.
    child = f"""
import numpy as np
from ragtune.retrieval.dense import dense_search
def peak(): return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM'))
q, d = np.load({str(tmp_path / 'q.npy')!r}), np.load({str(store)!r}, mmap_mode="c")
qids, ids = [str(i) for i in range(5)], [str(i) for i in range(len(d))]
dense_search(q, np.array(d[:8192]), qids, ids[:8192], top_k=10, doc_chunk=8192)
before = peak()
dense_search(q, d, qids, ids, top_k=10, doc_chunk=8192)
print(peak() - before)
"""
    grown = int(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True,
                               cwd=Path(__file__).resolve().parents[2]).stdout.split()[-1])
    assert grown < 0.25 * store.stat().st_size  # a 12.6 MB chunk at a time, not the 200 MB file


def test_a_slice_of_a_memory_mapped_corpus_gives_the_run_of_the_same_rows_in_ram(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20_000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    view = np.load(tmp_path / "x.npy", mmap_mode="c")[5_000:]  # keeps its parent's offset: nothing released
    ids = [str(i) for i in range(5_000, 20_000)]
    assert dense_search(x[:3], view, ["a", "b", "c"], ids, top_k=5, doc_chunk=1024) == \
        dense_search(x[:3], x[5_000:], ["a", "b", "c"], ids, top_k=5, doc_chunk=1024)
