"""Hard-negative mining from a first-stage retriever (dense or BM25), with false-negative filtering.

Per query with at least one positive (qrels grade >= 1):
  1. rank the candidates by score, drop every positive, keep ranks [rank_start, rank_end)
     of what is left (rank 0 = the best-scoring non-positive);
  2. false-negative filter: drop a candidate when
         score(q, d) > max_score_ratio * max_{p in positives} score(q, p)
     where the positives' scores come from the same retriever (the dot product for dense,
     the BM25 score for BM25) whether or not they were retrieved. An unlabelled document
     scoring (nearly) as high as a labelled answer is more often a missed positive than a
     negative (RocketQA, Qu et al. 2021; NV-Retriever, Moreira et al. 2024, "TopK-PercPos").
     max_score_ratio <= 0 disables the filter;
  3. sample `num_negatives` of the survivors (all when 0 or fewer are left), kept in rank order;
  4. add `num_random` random corpus documents (never positives, never already chosen, and
     subject to the same filter).
Randomness is per query, seeded by (seed, qid): a query's negatives do not depend on the others.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ragtune.config import ConfigError, IndexConfig, MiningConfig
from ragtune.data.beir import BeirDataset
from ragtune.eval.metrics import Qrels, Run, rank_docs
from ragtune.retrieval.bm25 import BM25Config, BM25Index, bm25_candidates
from ragtune.retrieval.cache import cached_encode
from ragtune.retrieval.index import index_search

# (qid, doc_ids) -> the retriever's scores of those docs for that query, same scale as the run.
Scorer = Callable[[str, list[str]], Sequence[float]]
Negatives = dict[str, list[tuple[str, float]]]


def positives_of(qrels: Qrels) -> dict[str, list[str]]:
    """{qid: positive doc ids (grade >= 1)}, best grade first; queries without one are left out."""
    out = {}
    for qid, judged in qrels.items():
        pos = sorted((d for d, g in judged.items() if g >= 1), key=lambda d: (-judged[d], d))
        if pos:
            out[qid] = pos
    return out


def mine_negatives(candidates: Run, qrels: Qrels, cfg: MiningConfig, seed: int, scorer: Scorer,
                   corpus_ids: Sequence[str] = (), stats: dict[str, int] | None = None) -> Negatives:
    """{qid: [(doc_id, score), ...]} hard negatives (rank order) then random ones; see the module doc.

    `stats`, when given, is filled with counts: queries, window (candidates in the rank windows),
    dropped_false_neg (removed by the filter, random draws included), hard, random.
    """
    if cfg.rank_start < 0 or cfg.rank_end < cfg.rank_start:
        raise ConfigError(f"mining rank window [{cfg.rank_start}, {cfg.rank_end}) is empty or negative")
    if cfg.num_random > 0 and not corpus_ids:
        raise ConfigError(f"mining.num_random={cfg.num_random} needs corpus_ids to draw from")
    counts = dict.fromkeys(("queries", "window", "dropped_false_neg", "hard", "random"), 0)
    out: Negatives = {}
    for qid, positives in positives_of(qrels).items():
        rng = random.Random(f"{seed}:{qid}")
        pos_set = set(positives)
        best_pos = max(float(s) for s in scorer(qid, positives))
        threshold = cfg.max_score_ratio * best_pos if cfg.max_score_ratio > 0 else float("inf")
        run = candidates.get(qid, {})
        ranked = [d for d in rank_docs(run) if d not in pos_set][cfg.rank_start:cfg.rank_end]
        survivors = [d for d in ranked if run[d] <= threshold]
        dropped = len(ranked) - len(survivors)
        if 0 < cfg.num_negatives < len(survivors):
            picked = set(rng.sample(survivors, cfg.num_negatives))
            survivors = [d for d in survivors if d in picked]  # rank order, not draw order
        chosen = [(d, float(run[d])) for d in survivors]
        n_hard = len(chosen)
        if cfg.num_random > 0:
            taken = pos_set | set(survivors) | set(ranked)  # a filtered candidate is no random negative
            pool = [d for d in corpus_ids if d not in taken]
            # Draw in random order until enough pass the filter; the filter rarely fires here.
            order = rng.sample(range(len(pool)), len(pool))
            for start in range(0, len(order), 4 * cfg.num_random):
                docs = [pool[i] for i in order[start:start + 4 * cfg.num_random]]
                for d, s in zip(docs, scorer(qid, docs), strict=True):
                    if len(chosen) - n_hard == cfg.num_random:
                        break
                    if float(s) <= threshold:
                        chosen.append((d, float(s)))
                    else:
                        dropped += 1
                if len(chosen) - n_hard == cfg.num_random:
                    break
        out[qid] = chosen
        counts["queries"] += 1
        counts["window"] += len(ranked)
        counts["dropped_false_neg"] += dropped
        counts["hard"] += n_hard
        counts["random"] += len(chosen) - n_hard
    if stats is not None:
        stats.update(counts)
    return out


def _cut(run: Run, qrels: Qrels, top_k: int) -> Run:
    """Keep the first `top_k` non-positive docs per query (a run retrieved with room for the positives)."""
    pos = positives_of(qrels)
    out = {}
    for qid, docs in run.items():
        drop = set(pos.get(qid, ()))
        out[qid] = {d: docs[d] for d in [d for d in rank_docs(docs) if d not in drop][:top_k]}
    return out


def dense_candidates(encoder, dataset: BeirDataset, top_k: int, cache_dir: str | None = None,
                     batch_size: int = 128, show_progress: bool = True,
                     index: IndexConfig | None = None) -> tuple[Run, Scorer]:
    """Top `top_k` non-positive docs per query by dot product, and a scorer q . d for any doc.

    Corpus embeddings come from the on-disk cache (keyed by weights), so mining with the
    model that was just evaluated does not re-encode the corpus.
    """
    doc_ids = list(dataset.corpus)
    d_emb = cached_encode(encoder, [dataset.corpus[d].full_text() for d in doc_ids], "doc", cache_dir,
                          batch_size, show_progress)  # (D, H)
    qids = list(dataset.queries)
    q_emb = encoder.encode([dataset.queries[q] for q in qids], kind="query", batch_size=batch_size,
                           show_progress=show_progress)  # (Q, H)
    extra = max((len(p) for p in positives_of(dataset.qrels).values()), default=0)
    run = _cut(index_search(q_emb, d_emb, qids, doc_ids, top_k + extra, index)[0], dataset.qrels, top_k)
    q_row = {q: i for i, q in enumerate(qids)}
    d_row = {d: i for i, d in enumerate(doc_ids)}

    def score(qid: str, docs: list[str]) -> np.ndarray:
        return d_emb[[d_row[d] for d in docs]] @ q_emb[q_row[qid]]  # (n,)

    return run, score


def bm25_source(dataset: BeirDataset, top_k: int, bm25_cfg: BM25Config | None = None) -> tuple[Run, Scorer]:
    """Top `top_k` non-positive docs per query by BM25 (`bm25_candidates`), and a BM25 scorer."""
    index = BM25Index.from_corpus(dataset.corpus, bm25_cfg)
    run = bm25_candidates(index, dataset.queries, top_k, exclude=positives_of(dataset.qrels))
    d_row = {d: i for i, d in enumerate(index.doc_ids)}

    def score(qid: str, docs: list[str]) -> np.ndarray:
        return index.score_all(dataset.queries[qid])[[d_row[d] for d in docs]]  # (n,)

    return run, score


def write_training_records(path: str | Path, dataset: BeirDataset, negatives: Negatives) -> int:
    """One JSONL line per (query, positive) pair of the mined queries; returns the line count.

    {"qid", "query", "pos_id", "pos", "neg_ids", "negs", "neg_scores"}: texts via Doc.full_text(),
    the format ragtune.data.pairs.load_records reads (data.train_file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    positives = positives_of(dataset.qrels)
    lines = 0
    with path.open("w", encoding="utf-8") as f:
        for qid, negs in negatives.items():
            if qid not in positives:
                raise KeyError(f"mined query '{qid}' has no positive in the qrels of {dataset.name}/{dataset.split}")
            # A document with neither title nor text teaches nothing, as a positive or a negative.
            negs = [(d, s) for d, s in negs if dataset.corpus[d].full_text()]
            neg_ids = [d for d, _ in negs]
            for pos_id in positives[qid]:
                if not dataset.corpus[pos_id].full_text():
                    continue
                row = {"qid": qid, "query": dataset.queries[qid], "pos_id": pos_id,
                       "pos": dataset.corpus[pos_id].full_text(), "neg_ids": neg_ids,
                       "negs": [dataset.corpus[d].full_text() for d in neg_ids],
                       "neg_scores": [round(s, 6) for _, s in negs]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                lines += 1
    return lines
