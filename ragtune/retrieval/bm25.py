"""BM25 first stage: analyzer, index build/search, save/load, mining candidates.

Score of document d for query q (terms counted with multiplicity, as Lucene's
BooleanQuery of one clause per query token does):

    score(q, d) = sum_{t in q} idf(t) * tf(t,d) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))

    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))           method="lucene" (default)
    idf(t) = ln(max(1, (N - df(t) + 0.5) / (df(t) + 0.5)))       method="robertson" (floored at 0)

N = number of documents, df(t) = documents containing t, |d| = tokens in d after
analysis, avgdl = mean |d|. The (k1 + 1) numerator factor of the textbook form is
dropped (as in Lucene >= 8): it scales every score alike and cannot change a ranking.
Unlike Lucene, document lengths are exact (Lucene stores them in one lossy byte).
Variants follow Kamphuis et al., "Which BM25 Do You Mean?", ECIR 2020.

The index is "eager" (as in bm25s): the per-(term, doc) weight is computed at build
time, so a query is a sum of posting lists into one dense score vector per query.
`backend="bm25s"` builds and searches with the optional bm25s package instead
(same analyzer, same formula); a saved index is always loaded as the native one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragtune.data.beir import Doc
from ragtune.retrieval.stemmer import get_stemmer

Run = dict[str, dict[str, float]]

# Lucene's EnglishAnalyzer default stop set (the Elasticsearch "english" analyzer and
# bm25s's "en" list). Short on purpose: BM25's idf already discounts common words.
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the "
    "their then there these they this to was will with".split()
)


@dataclass(frozen=True)
class BM25Config:
    """Analyzer and scoring settings.

    Analysis: lowercase -> regex tokens -> drop stopwords -> stem. Text is joined as
    "title text" (BEIR convention) by `BM25Index.from_corpus`. k1/b are the Lucene and
    Elasticsearch defaults, deliberately not tuned on any test set: SciFact test nDCG@10
    0.683 (experiments/bench/bm25_compare.py; BEIR/ES 0.665, Anserini flat 0.679).
    """

    k1: float = 1.2
    b: float = 0.75
    method: Literal["lucene", "robertson"] = "lucene"
    token_pattern: str = r"\w+"  # Unicode word characters; keeps 1-char tokens and numbers
    lowercase: bool = True
    stopwords: Literal["lucene", "none"] = "lucene"
    stemmer: Literal["porter", "snowball", "s", "none"] = "porter"
    backend: Literal["native", "bm25s"] = "native"


class Analyzer:
    """text -> tokens. Stems are cached per word: a corpus has far fewer distinct words
    than tokens, so the pure-Python Porter stemmer costs little."""

    def __init__(self, cfg: BM25Config):
        self.cfg = cfg
        self._split = re.compile(cfg.token_pattern).findall
        self._stop = LUCENE_STOPWORDS if cfg.stopwords == "lucene" else frozenset()
        self._stem = get_stemmer(cfg.stemmer)
        self._cache: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        if self.cfg.lowercase:
            text = text.lower()
        cache, out = self._cache, []
        for w in self._split(text):
            if w in self._stop:  # stopwords are matched before stemming, as in Lucene
                continue
            s = cache.get(w)
            if s is None:
                s = cache[w] = self._stem(w)
            out.append(s)
        return out


def _idf(df: np.ndarray, n_docs: int, method: str) -> np.ndarray:
    ratio = (n_docs - df + 0.5) / (df + 0.5)
    if method == "lucene":
        return np.log1p(ratio)
    if method == "robertson":
        return np.log(np.maximum(ratio, 1.0))
    raise ValueError(f"unknown BM25 method {method!r}; choose lucene or robertson")


class BM25Index:
    """Term-major posting lists with precomputed BM25 weights.

    Arrays: `indptr` (V+1,) int64 into `post_docs` (nnz,) int32 doc positions and
    `post_weights` (nnz,) float32; term t's postings are indptr[t]:indptr[t+1].
    """

    def __init__(
        self,
        cfg: BM25Config,
        doc_ids: list[str],
        vocab: dict[str, int],
        indptr: np.ndarray,
        post_docs: np.ndarray,
        post_weights: np.ndarray,
    ):
        self.cfg, self.doc_ids, self.vocab = cfg, doc_ids, vocab
        self.indptr, self.post_docs, self.post_weights = indptr, post_docs, post_weights
        self.analyzer = Analyzer(cfg)
        self._bm25s: Any = None  # set when built with backend="bm25s"

    @classmethod
    def build(cls, doc_ids: list[str], texts: list[str], cfg: BM25Config | None = None) -> BM25Index:
        cfg = cfg or BM25Config()
        if len(doc_ids) != len(texts):
            raise ValueError(f"{len(doc_ids)} doc_ids but {len(texts)} texts")
        analyzer = Analyzer(cfg)
        tokens = [analyzer(t) for t in texts]
        if cfg.backend == "bm25s":
            return _build_bm25s(cfg, list(doc_ids), tokens)
        if cfg.backend != "native":
            raise ValueError(f"unknown backend {cfg.backend!r}; choose native or bm25s")
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(w, len(vocab)) for w in toks] for toks in tokens]
        n_docs, n_terms = len(ids), len(vocab)
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        term = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        doc = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        # One sort groups the tokens by (term, doc): run lengths are the term frequencies
        # and the order is already term-major, doc-ascending.
        pairs, tf = np.unique(term * n_docs + doc, return_counts=True)
        term, doc = pairs // n_docs, pairs % n_docs
        df = np.bincount(term, minlength=n_terms)
        indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
        avgdl = max(float(lengths.mean()) if n_docs else 0.0, 1e-9)
        norm = cfg.k1 * (1 - cfg.b + cfg.b * lengths / avgdl)  # (D,)
        weights = _idf(df, n_docs, cfg.method)[term] * tf / (tf + norm[doc])
        return cls(cfg, list(doc_ids), vocab, indptr, doc.astype(np.int32), weights.astype(np.float32))

    @classmethod
    def from_corpus(cls, corpus: Mapping[str, Doc], cfg: BM25Config | None = None) -> BM25Index:
        """Index a BEIR corpus {doc_id: Doc} as "title text"."""
        return cls.build(list(corpus), [d.full_text() for d in corpus.values()], cfg)

    def score_all(self, query: str) -> np.ndarray:
        """BM25 score of every document for one query, (D,) float32 in doc_ids order."""
        scores = np.zeros(len(self.doc_ids), dtype=np.float32)
        for w in self.analyzer(query):
            t = self.vocab.get(w)
            if t is not None:
                lo, hi = self.indptr[t], self.indptr[t + 1]
                scores[self.post_docs[lo:hi]] += self.post_weights[lo:hi]  # docs unique per term
        return scores

    def search(self, queries: Mapping[str, str], top_k: int = 1000) -> Run:
        """Top-k documents per query. Only documents sharing a term with the query are
        returned (score > 0); ties are broken by corpus order, so runs are deterministic."""
        if self._bm25s is not None:
            return _search_bm25s(self, queries, top_k)
        run: Run = {}
        for qid, text in queries.items():
            run[qid] = self._top_k(self.score_all(text), top_k)
        return run

    def _top_k(self, scores: np.ndarray, top_k: int) -> dict[str, float]:
        k = min(top_k, len(scores))
        if k <= 0:
            return {}
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[scores[idx] > 0]
        idx = idx[np.lexsort((idx, -scores[idx]))]
        return {self.doc_ids[i]: float(scores[i]) for i in idx}

    def save(self, path: str | Path) -> None:
        """Write `bm25.npz` (arrays) and `bm25.json` (config, doc ids, vocab) to a directory."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "bm25.npz", indptr=self.indptr, post_docs=self.post_docs, post_weights=self.post_weights)
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        meta = {"config": asdict(self.cfg), "doc_ids": self.doc_ids, "terms": terms}
        (path / "bm25.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: str | Path) -> BM25Index:
        path = Path(path)
        meta = json.loads((path / "bm25.json").read_text())
        with np.load(path / "bm25.npz") as f:
            arrays = (f["indptr"], f["post_docs"], f["post_weights"])
        cfg = BM25Config(**{**meta["config"], "backend": "native"})
        vocab = {t: i for i, t in enumerate(meta["terms"])}
        return cls(cfg, meta["doc_ids"], vocab, *arrays)


def bm25_candidates(
    index: BM25Index, queries: Mapping[str, str], top_k: int, exclude: Mapping[str, Iterable[str]] | None = None
) -> Run:
    """BM25 candidate documents for hard-negative mining.

    Returns up to `top_k` ranked docs per query after dropping `exclude[qid]` (e.g. the
    qrels positives), so a miner gets `top_k` candidates, not `top_k - n_positives`.
    False-negative filtering is left to the miner.
    """
    exclude = exclude or {}
    drop = {qid: set(exclude.get(qid, ())) for qid in queries}
    extra = max((len(s) for s in drop.values()), default=0)
    run = index.search(queries, top_k + extra)
    out: Run = {}
    for qid, docs in run.items():
        kept = [(d, s) for d, s in docs.items() if d not in drop[qid]]
        out[qid] = dict(kept[:top_k])
    return out


def _build_bm25s(cfg: BM25Config, doc_ids: list[str], tokens: list[list[str]]) -> BM25Index:
    try:
        import bm25s  # optional extra
    except ImportError as e:
        raise ImportError("backend='bm25s' needs: pip install 'ragtune[bm25]'") from e
    retriever = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
    retriever.index(tokens, show_progress=False)
    s = retriever.scores  # term-major CSC: the same layout as the native index
    index = BM25Index(
        cfg,
        doc_ids,
        dict(retriever.vocab_dict),
        np.asarray(s["indptr"], np.int64),
        np.asarray(s["indices"], np.int32),
        np.asarray(s["data"], np.float32),
    )
    index._bm25s = retriever
    return index


def _search_bm25s(index: BM25Index, queries: Mapping[str, str], top_k: int) -> Run:
    qids = list(queries)
    toks = [[w for w in index.analyzer(queries[q]) if w in index.vocab] for q in qids]
    run: Run = {q: {} for q in qids}
    live = [i for i, t in enumerate(toks) if t]  # bm25s cannot score an empty query
    k = min(top_k, len(index.doc_ids))
    if not live or k <= 0:
        return run
    docs, scores = index._bm25s.retrieve([toks[i] for i in live], k=k, show_progress=False)
    for row, i in enumerate(live):
        run[qids[i]] = {index.doc_ids[d]: float(s) for d, s in zip(docs[row], scores[row], strict=True) if s > 0}
    return run
