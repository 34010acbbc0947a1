"""Pseudo-labels for synthetic queries with no human label: mined negatives and a label-free teacher.

GPL-style (Wang et al. 2022, arXiv:2112.07577): each synthetic query keeps the document it was
generated from as its positive, takes negatives from the zero-shot dense first stage, and a
teacher scores (query, positive, negatives) for MarginMSE. Here the teacher is the BM25 + dense
hybrid, which needs no GPU and no training:

    h(q, d) = (1 - w) * n_bm25(q, d) + w * n_dense(q, d)
    n_r(q, d) = max(0, (s_r(q, d) - min_r(q)) / (max_r(q) - min_r(q)))

min/max over retriever r's top `depth` documents for q (BM25 keeps only documents that share a
term with q), w = hybrid.weight: for every document either retriever returns, h is the score the
hybrid first stage ranks by (`weighted_score_fusion`); one neither returns gets 0 there too.
For the student, whose score is cos(q, d) / tau, the teacher is expressed in the same units:

    t(q, d) = h(q, d) * (max_dense(q) - min_dense(q)) / (w * tau)

so its dense part is exactly the zero-shot student's own score (up to a per-query constant, which
MarginMSE ignores) and the BM25 part is what the student is taught to add.
A query is kept when a filter ranks its source document within `filter_top_k` of the corpus:
the teacher (`teacher`) or the zero-shot dense model alone (`dense`, the round-trip filter).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


def minmax_over_top(scores: np.ndarray, depth: int, positive_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-row min-max normalisation over the row's top `depth` scores, clipped at 0.

    scores (Q, D) -> (normalised (Q, D), max - min of each row's top list (Q,)). With
    `positive_only` the list holds only scores > 0 (BM25 returns no document without a shared
    term); an empty list gives a row of zeros, a constant list 1 to its members and 0 elsewhere.
    """
    out = np.zeros_like(scores, dtype=np.float64)
    ranges = np.zeros(scores.shape[0], dtype=np.float64)
    k = min(depth, scores.shape[1])
    for i, row in enumerate(scores.astype(np.float64)):
        top = np.argpartition(-row, k - 1)[:k]
        if positive_only:
            top = top[row[top] > 0]
        if top.size == 0:
            continue
        lo, hi = row[top].min(), row[top].max()
        ranges[i] = hi - lo
        if hi > lo:
            out[i] = np.maximum(0.0, (row - lo) / (hi - lo))
        else:
            out[i, top] = 1.0
    return out, ranges


@dataclass(frozen=True)
class HybridTeacher:
    """Hybrid scores of every (query, document) pair, with the dense scores they came from."""

    hybrid: np.ndarray  # (Q, D) h(q, d), the score the hybrid first stage ranks by
    dense: np.ndarray  # (Q, D) cos(q, d) of the zero-shot model
    dense_range: np.ndarray  # (Q,) max - min of each query's dense top list

    @classmethod
    def from_scores(cls, bm25: np.ndarray, dense: np.ndarray, weight: float, depth: int) -> HybridTeacher:
        n_bm25, _ = minmax_over_top(bm25, depth, positive_only=True)
        n_dense, dense_range = minmax_over_top(dense, depth)
        return cls((1.0 - weight) * n_bm25 + weight * n_dense, dense.astype(np.float64), dense_range)

    def student_units(self, rows: np.ndarray, cols: np.ndarray, weight: float, temperature: float) -> np.ndarray:
        """t(q, d) of the module docstring for the pairs (rows[i], cols[i])."""
        if weight <= 0:
            raise ValueError("the hybrid teacher in student units needs a dense share hybrid.weight > 0")
        return self.hybrid[rows, cols] * self.dense_range[rows] / (weight * temperature)

    def top_lists(self, k: int, weight: float, temperature: float,
                  exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) columns of each query's top k by the hybrid score (ties in column order) and their
        t(q, d); `exclude` (Q,): one column per query kept out of its list (a sentence query's source)."""
        h = self.hybrid.copy()
        if exclude is not None:  # and never listed, even when k covers the whole corpus
            h[np.arange(len(h)), exclude] = -np.inf
            k = min(k, h.shape[1] - 1)
        cols = np.argsort(-h, axis=1, kind="stable")[:, :k]
        scores = self.student_units(np.repeat(np.arange(len(h)), cols.shape[1]), cols.ravel(), weight, temperature)
        return cols, scores.reshape(cols.shape)


def source_rank(scores: np.ndarray, source: np.ndarray) -> np.ndarray:
    """(Q,) 1-based rank of each row's source column: 1 + #columns scoring strictly higher."""
    own = scores[np.arange(scores.shape[0]), source]
    return 1 + (scores > own[:, None]).sum(axis=1)


def dense_negatives(dense: np.ndarray, source: np.ndarray, depth: int, k: int, seed: int,
                    qids: list[str]) -> list[list[int]]:
    """k negatives per query, drawn from its dense top `depth` without its source document.

    Seeded per query by (seed, qid), so a query's negatives do not depend on the others; the
    chosen ones are kept in rank order."""
    negatives = []
    for i, row in enumerate(dense):
        top = np.argsort(-row, kind="stable")[:depth + 1]
        pool = [int(j) for j in top if j != source[i]][:depth]
        picks = sorted(random.Random(f"{seed}:{qids[i]}").sample(range(len(pool)), min(k, len(pool))))
        negatives.append([pool[p] for p in picks])
    return negatives
