"""Unlabelled (query, document) pairs for calibrating an int8 reranker, from the corpus alone.

No split's queries or qrels are read: a pseudo-query is a sampled document's title (or, without one,
its first words), paired with the documents BM25 ranks highest for it in a sample of the corpus, its
own document among them. Such pairs look like reranking input (a short query and topically close
documents), and a test-only collection has them as much as one with a train split.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from ragtune.data.beir import Doc
from ragtune.inference.smooth_quant import Pairs
from ragtune.models.cross_encoder import format_doc
from ragtune.retrieval.bm25 import BM25Index

PSEUDO_QUERY_WORDS = 16  # a title-less document's pseudo-query: its first words
CALIBRATION_PER_QUERY = 8  # BM25 neighbours per pseudo-query
INDEX_SAMPLE = 2000  # documents BM25 searches for neighbours: bounded, so a large corpus costs no more


def pseudo_query(doc: Doc) -> str:
    return doc.title.strip() or " ".join(doc.text.split()[:PSEUDO_QUERY_WORDS])


def corpus_pairs(corpus: Mapping[str, Doc], n_queries: int, per_query: int, seed: int,
                 template: str = "{title} {text}") -> tuple[Pairs, Pairs]:
    """(calibration pairs, fidelity pairs): `n_queries` pseudo-queries (seeded) with up to `per_query`
    documents each; the first half of the queries calibrates, the other half judges."""
    ids = sorted(d for d, doc in corpus.items() if pseudo_query(doc))
    if len(ids) < 2:
        raise ValueError("calibrating int8 needs at least 2 documents with a title or text in the corpus")
    n_queries = max(2, min(n_queries, len(ids)))
    sample = random.Random(seed).sample(ids, min(len(ids), max(INDEX_SAMPLE, n_queries)))
    chosen = sample[:n_queries]
    queries = {d: pseudo_query(corpus[d]) for d in chosen}
    run = BM25Index.from_corpus({d: corpus[d] for d in sample}).search(queries, per_query)
    halves: tuple[Pairs, Pairs] = (([], []), ([], []))
    for i, d in enumerate(chosen):
        neighbours = list(run[d]) or [d]  # a query of stop words alone still gets its own document
        q_list, d_list = halves[0] if i < n_queries // 2 else halves[1]
        q_list += [queries[d]] * len(neighbours)
        d_list += [format_doc(corpus[c], template) for c in neighbours]
    return halves
