"""Exact dense top-k search over a corpus, and TREC run files.

A run is {qid: {docid: score}}; see ragtune/eval/metrics.py for how it is ranked and scored.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import torch

from ragtune.eval.metrics import Run, rank_docs


def dense_search(q_emb: np.ndarray | torch.Tensor, d_emb: np.ndarray | torch.Tensor,
                 query_ids: list[str], doc_ids: list[str], top_k: int = 100,
                 query_chunk: int = 1024, doc_chunk: int = 65536,
                 exclude_self: bool = False) -> Run:
    """Exact top-k by dot product (cosine when the embeddings are normalised).

    The corpus is scanned in chunks of `doc_chunk` rows and a running top-k is merged per chunk,
    so beyond the inputs themselves the memory held is O(query_chunk * (doc_chunk + top_k))
    floats: 1024 x 65,636 x 4 B = 269 MB at the defaults, whatever the corpus size. A memory-mapped
    corpus (an embedding-cache entry, `np.memmap`) is not held at all: each chunk is copied in and
    its pages are released after it (`doc_blocks`), so the file never has to fit in RAM.
    `exclude_self` drops a document whose id equals the query id (for corpus-as-queries setups).
    """
    q = torch.as_tensor(q_emb, dtype=torch.float32)
    d = d_emb if isinstance(d_emb, np.memmap) else torch.as_tensor(d_emb, dtype=torch.float32)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != doc dim {d.shape[1]}")
    k = min(top_k + int(exclude_self), d.shape[0])
    doc_index = {doc_id: i for i, doc_id in enumerate(doc_ids)} if exclude_self else {}  # O(N): only when used
    run: Run = {}
    for qs in range(0, q.shape[0], query_chunk):
        q_block = q[qs:qs + query_chunk]  # (Qc, H)
        best_scores = torch.full((q_block.shape[0], 0), float("-inf"))
        best_idx = torch.zeros((q_block.shape[0], 0), dtype=torch.long)
        for ds, d_block in doc_blocks(d, doc_chunk):
            scores = q_block @ d_block.T  # (Qc, Dc)
            if exclude_self:
                for row, qid in enumerate(query_ids[qs:qs + query_chunk]):
                    col = doc_index.get(qid, -1) - ds
                    if 0 <= col < scores.shape[1]:
                        scores[row, col] = float("-inf")
            chunk_scores, chunk_idx = scores.topk(min(k, scores.shape[1]), dim=1)
            merged_scores = torch.cat([best_scores, chunk_scores], dim=1)
            merged_idx = torch.cat([best_idx, chunk_idx + ds], dim=1)
            best_scores, pos = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
            best_idx = merged_idx.gather(1, pos)
        for row, qid in enumerate(query_ids[qs:qs + query_chunk]):
            hits = {doc_ids[i]: s for i, s in zip(best_idx[row].tolist(), best_scores[row].tolist(), strict=True)
                    if s != float("-inf")}
            run[qid] = dict(list(hits.items())[:top_k])
    return run


def doc_blocks(d: np.ndarray | torch.Tensor, rows: int):
    """(first row, (rows, H) float32 tensor) over the corpus in order. For an `np.memmap` each block is
    a copy and the block's pages are dropped from this process afterwards (madvise DONTNEED: clean file
    pages are re-read from the file if touched again), so a scan's resident memory is one block."""
    for start in range(0, d.shape[0], rows):
        if isinstance(d, np.memmap):
            block = torch.from_numpy(np.array(d[start:start + rows], dtype=np.float32))
            release_pages(d, start, min(start + rows, d.shape[0]))
        else:
            block = d[start:start + rows]
        yield start, block


def release_pages(m: np.memmap, start_row: int, end_row: int) -> None:
    """Drop rows [start_row, end_row) of a memory-mapped array from this process's resident memory.

    Only for the array np.load / np.memmap returned (its base is the map itself): a slice of it keeps
    its parent's `offset`, so its rows cannot be located in the map and nothing is released. Caveat: a
    page written through a copy-on-write map (mode "c", how cache entries load) is dropped with its
    change and re-read from the file; nothing in ragtune writes into an entry, and code that changes
    one in place must copy it first (np.array(entry))."""
    mm = getattr(m, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not isinstance(m.base, mmap.mmap):
        return
    # np.memmap maps from the allocation-granularity boundary below its offset (numpy/core/memmap.py)
    array_offset = m.offset % mmap.ALLOCATIONGRANULARITY
    begin = array_offset + start_row * m.strides[0]
    end = array_offset + end_row * m.strides[0]
    begin -= begin % mmap.PAGESIZE
    mm.madvise(mmap.MADV_DONTNEED, begin, end - begin)


def write_trec_run(run: Run, path: str | Path, tag: str = "ragtune") -> None:
    """`qid Q0 docid rank score tag` per line, ranked as the metrics rank them."""
    with Path(path).open("w") as f:
        for qid in sorted(run):
            for rank, doc_id in enumerate(rank_docs(run[qid]), start=1):
                f.write(f"{qid} Q0 {doc_id} {rank} {run[qid][doc_id]:.6f} {tag}\n")


def read_trec_run(path: str | Path) -> Run:
    run: Run = {}
    with Path(path).open() as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if len(parts) != 6:
                raise ValueError(f"{path}:{line_no}: expected 6 columns 'qid Q0 docid rank score tag'")
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    return run
