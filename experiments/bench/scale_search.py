#!/usr/bin/env python
"""Search as the corpus grows: exact (memory-mapped) vs FAISS flat, HNSW and IVF-PQ, 10k -> 1M vectors.

    python -m experiments.bench.scale_search [--sizes 10000,100000,1000000] [--queries 300]
        [--threads 1] [--out runs/bench/scale_search]

Vectors: the real all-MiniLM-L6-v2 embeddings of SciFact's 5,183 documents (from the embedding
cache) give the structure; document i of the N-row store is a real document's embedding plus
Gaussian noise of the same norm scale, renormalised (seeded), so neighbourhoods look like a corpus
of near-duplicates rather than uniform noise, on which every ANN index is at its worst. Queries are
SciFact's real test queries. The store is one `.npy` file per size, written in chunks, and exact
search scans it memory-mapped (ragtune/retrieval/dense.py), as it would a 1M-document cache entry.

Per size and backend: build seconds, per-query latency answering all queries in one batch and
answering them one at a time (the latency an interactive RAG query sees), recall@10 against exact
search, and for exact search the peak RSS of a fresh process scanning the mapped store, next to
the store's size. Exact search runs twice: in RAM (the latency bar every index is compared to) and
over the memory-mapped store (same top-10, checked; the memory bar). HNSW is built once and
searched at each --ef-search. One thread each (torch and FAISS), so the ratios compare algorithms, not cores.
Writes scale_search.json, scale_search.md and a log-log plot scale_search.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments.bench.common import run_trial

DIM = 384
SINGLE_QUERIES = 30  # answered one by one for the single-query latency


def real_embeddings(queries: int) -> tuple[np.ndarray, np.ndarray]:
    """(SciFact corpus embeddings (5183, 384), the first `queries` test query embeddings) of MiniLM."""
    from ragtune.config import ModelConfig
    from ragtune.data.beir import load_beir
    from ragtune.eval.dense import corpus_texts
    from ragtune.models.encoder import Encoder
    from ragtune.retrieval.cache import cached_encode

    test = load_beir("scifact", "test")
    encoder = Encoder.from_config(ModelConfig())
    docs = np.asarray(cached_encode(encoder, corpus_texts(test)[1], "doc", show_progress=True))
    texts = [test.queries[q] for q in list(test.queries)[:queries]]
    return docs, cached_encode(encoder, texts, "query", show_progress=False)


def write_store(path: Path, base: np.ndarray, n: int, seed: int = 0, chunk: int = 100_000) -> Path:
    """n rows: a random real embedding + noise with the same per-dimension scale, normalised; float32 .npy."""
    from numpy.lib.format import open_memmap

    if path.is_file() and np.load(path, mmap_mode="r").shape == (n, base.shape[1]):
        return path
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp.npy")
    out = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, base.shape[1]))
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        x = base[rng.integers(0, len(base), rows)] + rng.standard_normal((rows, base.shape[1])) / np.sqrt(DIM)
        out[start:start + rows] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    out.flush()
    del out
    tmp.replace(path)
    return path


def exact_rss_worker(store: str, queries: str) -> dict:
    """In a fresh process: exact top-10 over the memory-mapped store; its peak RSS (VmHWM) after the scan."""
    from ragtune.retrieval.dense import dense_search

    d, q = np.load(store, mmap_mode="c"), np.load(queries)
    ids = [str(i) for i in range(len(d))]
    start = time.perf_counter()
    dense_search(q, d, [str(i) for i in range(len(q))], ids, top_k=10, query_chunk=len(q), doc_chunk=65536)
    seconds = time.perf_counter() - start
    hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))
    return {"peak_rss_bytes": hwm, "store_bytes": Path(store).stat().st_size, "seconds": seconds}


def top10(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :10]


def exact_topk(q: np.ndarray, store: np.ndarray, k: int = 10) -> np.ndarray:
    """(Q, k) row ids by exact inner product, ragtune's streaming scan (the ground truth)."""
    from ragtune.retrieval.dense import dense_search

    ids = [str(i) for i in range(len(store))]
    run = dense_search(q, store, [str(i) for i in range(len(q))], ids, top_k=k, query_chunk=len(q))
    return np.array([[int(d) for d in sorted(run[str(i)], key=lambda x: -run[str(i)][x])] for i in range(len(q))])


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth, strict=True)]))


def time_search(search, q: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(ms per query in one batch, ms per query one at a time, the batch's (Q, 10) ids)."""
    start = time.perf_counter()
    ids = search(q)
    batch_ms = (time.perf_counter() - start) * 1000 / len(q)
    start = time.perf_counter()
    for i in range(SINGLE_QUERIES):
        search(q[i:i + 1])
    single_ms = (time.perf_counter() - start) * 1000 / SINGLE_QUERIES
    return batch_ms, single_ms, ids


def faiss_backends(args) -> dict[str, object]:
    from ragtune.config import IndexConfig

    ef = [int(x) for x in args.ef_search.split(",")]
    return {"faiss_flat": IndexConfig(kind="faiss_flat"),
            "faiss_hnsw": IndexConfig(kind="faiss_hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                                      ef_search=ef[0]),
            "faiss_ivfpq": IndexConfig(kind="faiss_ivfpq", nprobe=args.nprobe, refine=args.refine)}, ef


def measure_size(n: int, store_path: Path, q: np.ndarray, q_path: Path, args) -> list[dict]:
    import faiss

    from ragtune.retrieval.dense import dense_search
    from ragtune.retrieval.index import build_faiss_index

    store = np.load(store_path, mmap_mode="c")
    rows = []
    ids = [str(i) for i in range(n)]

    def exact(qq: np.ndarray) -> np.ndarray:
        run = dense_search(qq, store, [str(i) for i in range(len(qq))], ids, top_k=10, query_chunk=len(qq))
        return np.array([[int(d) for d in sorted(run[str(i)], key=lambda x: -run[str(i)][x])]
                         for i in range(len(qq))])

    in_ram = np.array(store, dtype=np.float32)  # a plain copy (not a memmap view); FAISS indexes copy it again
    ram_ids = [str(i) for i in range(n)]

    def exact_in_ram(qq: np.ndarray) -> np.ndarray:
        run = dense_search(qq, in_ram, [str(i) for i in range(len(qq))], ram_ids, top_k=10, query_chunk=len(qq))
        return np.array([[int(d) for d in sorted(run[str(i)], key=lambda x: -run[str(i)][x])]
                         for i in range(len(qq))])

    b_ms, s_ms, truth = time_search(exact_in_ram, q)
    rows.append({"n": n, "backend": "exact (RAM)", "build_s": 0.0, "batch_ms": b_ms, "single_ms": s_ms,
                 "recall@10": 1.0})
    print(f"{n:>9,} exact in RAM: {b_ms:.3f} ms/query batched, {s_ms:.2f} ms single", flush=True)
    batch_ms, single_ms, mapped = time_search(exact, q)
    assert (mapped == truth).all(), "exact search over the mapped store disagrees with the in-RAM scan"
    rss = run_trial("experiments.bench.scale_search", "exact_rss_worker",
                    {"store": str(store_path), "queries": str(q_path)}, threads=args.threads)
    rows.append({"n": n, "backend": "exact (mmap)", "build_s": 0.0, "batch_ms": batch_ms, "single_ms": single_ms,
                 "recall@10": 1.0, "peak_rss_mb": rss["peak_rss_bytes"] / 2**20,
                 "store_mb": rss["store_bytes"] / 2**20})
    print(f"{n:>9,} exact: {batch_ms:.3f} ms/query batched, {single_ms:.2f} ms single; peak RSS "
          f"{rss['peak_rss_bytes'] / 2**20:.0f} MB for a {rss['store_bytes'] / 2**20:.0f} MB store", flush=True)
    backends, ef_search = faiss_backends(args)
    for name, cfg in backends.items():
        if name not in args.backends.split(","):
            continue
        start = time.perf_counter()
        index = build_faiss_index(in_ram, cfg)
        build_s = time.perf_counter() - start
        for ef in ef_search if name == "faiss_hnsw" else [None]:
            if ef is not None:  # one graph, searched at each efSearch
                index.hnsw.efSearch = ef
            b_ms, s_ms, found = time_search(lambda qq, index=index: index.search(qq, 10)[1], q)
            label = f"{name} ef{ef}" if ef is not None else name
            rows.append({"n": n, "backend": label, "build_s": build_s, "batch_ms": b_ms, "single_ms": s_ms,
                         "recall@10": recall_at_10(found, truth)})
            print(f"{n:>9,} {label}: build {build_s:.1f} s, {b_ms:.3f} ms/query batched, {s_ms:.3f} ms single, "
                  f"recall@10 {rows[-1]['recall@10']:.4f}", flush=True)
        del index
    faiss.omp_set_num_threads(args.threads)
    return rows


def table(rows: list[dict]) -> str:
    exact = {r["n"]: r for r in rows if r["backend"] == "exact (RAM)"}  # the faster exact scan is the bar
    lines = ["| docs | backend | build (s) | ms/query, batch | ms/query, single | speed-up vs exact (RAM), single | "
             "recall@10 vs exact | peak RSS / store |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = exact[r["n"]]["single_ms"] / r["single_ms"]
        rss = f"{r['peak_rss_mb']:.0f} / {r['store_mb']:.0f} MB ({r['peak_rss_mb'] / r['store_mb']:.2f}×)" \
            if "peak_rss_mb" in r else ""
        lines.append(f"| {r['n']:,} | {r['backend']} | {r['build_s']:.1f} | {r['batch_ms']:.3f} | "
                     f"{r['single_ms']:.3f} | {ratio:.1f}× | {r['recall@10']:.4f} | {rss} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out_png: Path, threads: int = 1) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        axes[0].plot([r["n"] for r in mine], [r["single_ms"] for r in mine], marker="o", label=backend)
    families = dict.fromkeys(r["backend"].split(" ef")[0] for r in rows if not r["backend"].startswith("exact"))
    for family in families:  # one build curve per index (HNSW is built once for all its efSearch rows)
        built = {r["n"]: r["build_s"] for r in rows if r["backend"].split(" ef")[0] == family}
        axes[1].plot(list(built), list(built.values()), marker="o", label=family)
    for ax, ylabel in zip(axes, ("ms per query (one at a time)", "index build (s)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"search as the corpus grows (384-dim, {threads} thread{'s' if threads > 1 else ''})")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef-search", default="128,256", help="HNSW efSearch values, one graph searched at each")
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--refine", type=int, default=4)
    parser.add_argument("--backends", default="faiss_flat,faiss_hnsw,faiss_ivfpq", help="FAISS backends to run")
    parser.add_argument("--out", default="runs/bench/scale_search")
    args = parser.parse_args()
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base, q = real_embeddings(args.queries)
    q = np.ascontiguousarray(q, dtype=np.float32)
    q_path = out / "queries.npy"
    np.save(q_path, q)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        store = write_store(out / f"store_{n}.npy", base, n)
        rows += measure_size(n, store, q, q_path, args)
        (out / "scale_search.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    text = table(rows)
    (out / "scale_search.md").write_text(text)
    print("\n" + text + f"\nwrote {out / 'scale_search.json'}, {plot(rows, out / 'scale_search.png', args.threads)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
