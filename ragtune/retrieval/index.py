"""Vector index backends for dense top-k: exact search, or FAISS (flat, HNSW, IVF-PQ).

    run, info = index_search(q_emb, d_emb, query_ids, doc_ids, top_k, cfg.index)

`exact` is ragtune's chunked brute-force scan (ragtune/retrieval/dense.py), the default for every
reported metric. The FAISS kinds (faiss-cpu, the `scale` extra) score by inner product, which is
cosine on normalised embeddings:
- `faiss_flat`: exact, FAISS's own BLAS scan;
- `faiss_hnsw`: a graph (HNSW, M links per node, efConstruction at build, efSearch at query);
- `faiss_ivfpq`: k-means cells (nlist) with product-quantized vectors (pq_m bytes each at 8 bits),
  nprobe cells visited per query, and with refine > 1 the top refine x k candidates re-scored
  exactly from the stored vectors (FAISS's IndexRefineFlat).
An approximate kind also runs exact search on the same vectors when `index.report_recall` is set,
so a run says how much of the exact top-k the index found (`ann_recall@k` beside the metrics).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ragtune.config import IndexConfig
from ragtune.eval.metrics import Run
from ragtune.retrieval.dense import dense_search

APPROXIMATE = ("faiss_hnsw", "faiss_ivfpq")


def _faiss():
    try:
        import faiss
    except ImportError as e:  # an optional dependency: name the install, not just the module
        raise ImportError("index.kind=faiss_* needs faiss-cpu: pip install 'ragtune[scale]'") from e
    return faiss


def ivf_cells(num_docs: int, cfg: IndexConfig) -> int:
    """IVF cell count: index.nlist, or about 4 sqrt(N) (FAISS's rule of thumb), never more than N / 39
    so k-means has the 39 training points per centroid FAISS asks for."""
    cells = cfg.nlist or round(4 * math.sqrt(num_docs))
    return max(1, min(cells, num_docs // 39))


def build_faiss_index(d_emb: np.ndarray, cfg: IndexConfig):
    """A FAISS inner-product index over d_emb (N, H) float32, built and filled."""
    faiss = _faiss()
    d = np.ascontiguousarray(d_emb, dtype=np.float32)
    dim = d.shape[1]
    if cfg.kind == "faiss_flat":
        index = faiss.IndexFlatIP(dim)
    elif cfg.kind == "faiss_hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.ef_construction
        index.hnsw.efSearch = cfg.ef_search
    elif cfg.kind == "faiss_ivfpq":
        pq_m = cfg.pq_m or dim // 8
        if dim % pq_m:
            raise ValueError(f"index.pq_m={pq_m} must divide the embedding dim {dim}")
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(quantizer, dim, ivf_cells(len(d), cfg), pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        ivf.nprobe = cfg.nprobe
        index = faiss.IndexRefineFlat(ivf) if cfg.refine > 1 else ivf
        if cfg.refine > 1:
            index.k_factor = float(cfg.refine)
        # k-means and the PQ codebooks train on a seeded sample of 64 points a cell (FAISS asks for 39-256):
        # all of a 1M corpus would cost minutes of k-means for no better cells
        take = min(len(d), 64 * ivf.nlist)
        sample = d if take == len(d) else d[np.sort(np.random.default_rng(0).choice(len(d), take, replace=False))]
        index.train(sample)
    else:
        raise ValueError(f"not a FAISS index kind: {cfg.kind!r}")
    index.add(d)
    return index


def faiss_run(index, q_emb: np.ndarray, query_ids: list[str], doc_ids: list[str], top_k: int) -> Run:
    scores, rows = index.search(np.ascontiguousarray(q_emb, dtype=np.float32), min(top_k, len(doc_ids)))
    return {qid: {doc_ids[r]: float(s) for r, s in zip(row_ids, row_scores, strict=True) if r >= 0}
            for qid, row_ids, row_scores in zip(query_ids, rows, scores, strict=True)}


def overlap_at_k(approx: Run, exact: Run, k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / |exact top-k|: the ANN's recall of exact search."""
    def top(run_q: dict[str, float]) -> set[str]:
        return set(sorted(run_q, key=lambda d: (-run_q[d], d))[:k])

    shares = [len(top(approx.get(q, {})) & top(exact[q])) / max(1, len(top(exact[q]))) for q in exact]
    return sum(shares) / max(1, len(shares))


def index_search(q_emb, d_emb, query_ids: list[str], doc_ids: list[str], top_k: int,
                 cfg: IndexConfig | None = None) -> tuple[Run, dict[str, float | str]]:
    """Top-k per query through the configured index; (run, info): index kind, build and query seconds,
    and for an approximate kind with report_recall, `ann_recall@10` (and @top_k) against exact search."""
    cfg = cfg or IndexConfig()
    if cfg.kind == "exact":
        start = time.perf_counter()
        run = dense_search(q_emb, d_emb, query_ids, doc_ids, top_k=top_k)
        return run, {"index": "exact", "index_query_seconds": time.perf_counter() - start}
    q = np.asarray(q_emb.detach().cpu() if hasattr(q_emb, "detach") else q_emb, dtype=np.float32)
    d = np.asarray(d_emb.detach().cpu() if hasattr(d_emb, "detach") else d_emb, dtype=np.float32)
    start = time.perf_counter()
    index = build_faiss_index(d, cfg)
    info: dict[str, float | str] = {"index": cfg.kind, "index_build_seconds": time.perf_counter() - start}
    start = time.perf_counter()
    run = faiss_run(index, q, query_ids, doc_ids, top_k)
    info["index_query_seconds"] = time.perf_counter() - start
    if cfg.kind in APPROXIMATE and cfg.report_recall:
        start = time.perf_counter()
        exact = dense_search(q, d, query_ids, doc_ids, top_k=top_k)
        info["exact_query_seconds"] = time.perf_counter() - start
        for k in sorted({10, top_k}):
            info[f"ann_recall@{k}"] = overlap_at_k(run, exact, k)
    return run, info
