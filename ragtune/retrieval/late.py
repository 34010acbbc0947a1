"""Late-interaction search: a token-vector store of the corpus, exact chunked MaxSim, and reranking.

The store is every document's token vectors back to back, float16, with offsets::

    vectors (N_tokens, dim) float16, offsets (N_docs + 1,) int64
    document i = vectors[offsets[i] : offsets[i + 1]]

cached on disk like the single-vector embeddings (ragtune/retrieval/cache.py: the key hashes the
weights, the settings and the texts; files are written under a temporary name and renamed) and
memory-mapped on a hit, so a scan pages the corpus in as it goes.

Exact search scores every query against every document with MaxSim (ragtune/retrieval/maxsim.py)
in blocks: documents sorted by length so a block pads little, queries x documents per block sized
so that the (Q, D, Tq, Td) similarity tensor stays under `batch_elements` entries.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ragtune.eval.metrics import Run
from ragtune.retrieval.cache import cache_root, texts_fingerprint, weights_fingerprint
from ragtune.retrieval.maxsim import maxsim


@dataclass(frozen=True)
class TokenStore:
    vectors: np.ndarray  # (N_tokens, dim) float16
    offsets: np.ndarray  # (N_docs + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def padded(self, docs: np.ndarray | list[int]) -> torch.Tensor:
        """(len(docs), longest, dim) float32, zero rows after each document's tokens."""
        lengths = self.lengths[docs]
        out = torch.zeros(len(docs), int(lengths.max()) if len(docs) else 0, self.vectors.shape[1])
        for row, (doc, n) in enumerate(zip(docs, lengths, strict=True)):
            start = self.offsets[doc]
            out[row, :n] = torch.from_numpy(np.asarray(self.vectors[start:start + n], dtype=np.float32))
        return out

    def bytes_per_doc(self) -> float:
        return self.vectors.shape[1] * self.vectors.itemsize * len(self.vectors) / max(1, len(self))


def store_path(model, texts: list[str], cache_dir: str | None = None) -> Path:
    """`<cache root>/tokens/<key>`: the prefix of the store's two files."""
    # Only what shapes a document's vectors: a new query length, query expansion, temperature or
    # rerank setting keeps the corpus entry (as the embedding cache keys on its own kind's settings).
    settings = {"doc_prefix": model.cfg.doc_prefix, "doc_max_length": model.cfg.doc_max_length,
                "dim": model.late.dim, "mask_punctuation": model.late.mask_punctuation}
    # BERT's pooler never reaches a token vector (and is drawn at random when a checkpoint lacks it)
    weights = [weights_fingerprint(model.backbone, skip=("pooler.",)), weights_fingerprint(model.projection)]
    key_src = json.dumps({"weights": weights, "settings": settings,
                          "texts": texts_fingerprint(texts)}, sort_keys=True)
    return cache_root(cache_dir) / "tokens" / hashlib.sha256(key_src.encode()).hexdigest()[:32]


def cached_token_store(model, texts: list[str], cache_dir: str | None = None, batch_size: int = 64,
                       show_progress: bool = True, use_cache: bool = True) -> TokenStore:
    """model.encode(texts, 'doc') through the on-disk cache (memory-mapped on a hit)."""
    if not use_cache:
        return TokenStore(*model.encode(texts, "doc", batch_size, show_progress))
    prefix = store_path(model, texts, cache_dir)
    vectors_file, offsets_file = Path(f"{prefix}.vectors.npy"), Path(f"{prefix}.offsets.npy")
    if vectors_file.is_file() and offsets_file.is_file():
        return TokenStore(np.load(vectors_file, mmap_mode="r"), np.load(offsets_file))
    vectors, offsets = model.encode(texts, "doc", batch_size, show_progress)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for path, array in ((vectors_file, vectors), (offsets_file, offsets)):  # offsets last: it marks completion
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
    return TokenStore(vectors, offsets)


def maxsim_search(q_vectors: torch.Tensor, store: TokenStore, top_k: int, batch_elements: int = 1 << 25,
                  show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by MaxSim of every query over the whole store: (scores (Q, k), doc rows (Q, k)).

    q_vectors (Q, Tq, dim) float32 with zero rows for padding (LateInteraction.encode_queries).
    Ties keep the lower document row first (a stable order, as in dense search)."""
    num_q, q_len = q_vectors.shape[:2]
    k = min(top_k, len(store))
    order = np.argsort(-store.lengths, kind="stable")  # longest first: each block pads to its first
    best_scores = torch.full((num_q, 0), float("-inf"))
    best_rows = torch.zeros((num_q, 0), dtype=torch.long)
    start = 0
    progress = tqdm(total=len(order), desc="maxsim search", unit="doc", disable=not show_progress)
    while start < len(order):
        longest = int(store.lengths[order[start]])
        block = max(1, batch_elements // max(1, num_q * q_len * longest))
        rows = np.sort(order[start:start + block])
        scores = maxsim(q_vectors, store.padded(rows))  # (Q, block)
        all_scores = torch.cat([best_scores, scores], dim=1)
        all_rows = torch.cat([best_rows, torch.from_numpy(rows).expand(num_q, -1)], dim=1)
        # stable top-k: sort by (-score, row) so equal scores keep the lower document row first
        by_row = torch.argsort(all_rows, dim=1, stable=True)
        all_scores, all_rows = all_scores.gather(1, by_row), all_rows.gather(1, by_row)
        top = torch.sort(all_scores, dim=1, descending=True, stable=True).indices[:, :k]
        best_scores, best_rows = all_scores.gather(1, top), all_rows.gather(1, top)
        progress.update(len(rows))
        start += len(rows)
    progress.close()
    return best_scores.numpy(), best_rows.numpy()


def late_search(q_vectors: torch.Tensor, store: TokenStore, query_ids: list[str], doc_ids: list[str],
                top_k: int, batch_elements: int = 1 << 25, show_progress: bool = False) -> Run:
    """{qid: {doc_id: MaxSim}} over the whole store (exact)."""
    scores, rows = maxsim_search(q_vectors, store, top_k, batch_elements, show_progress)
    return {q: {doc_ids[r]: float(s) for s, r in zip(scores[i], rows[i], strict=True)}
            for i, q in enumerate(query_ids)}


def late_rerank(q_vectors: torch.Tensor, store: TokenStore, query_ids: list[str], doc_ids: list[str],
                candidates: Run, top_n: int) -> Run:
    """Each query's first-stage top `top_n` (by the first stage's score) rescored by MaxSim."""
    row_of = {d: i for i, d in enumerate(doc_ids)}
    out: Run = {}
    for i, qid in enumerate(query_ids):
        ranked = sorted(candidates.get(qid, {}).items(), key=lambda kv: -kv[1])[:top_n]
        rows = [row_of[d] for d, _ in ranked]
        if not rows:
            out[qid] = {}
            continue
        scores = maxsim(q_vectors[i:i + 1], store.padded(rows))[0]
        out[qid] = {doc_ids[r]: float(s) for r, s in zip(rows, scores, strict=True)}
    return out
