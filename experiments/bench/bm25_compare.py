"""Which BM25 to ship: ragtune's numpy BM25 vs the bm25s library, plus analyzer ablations.

    python -m experiments.bench.bm25_compare [--dataset scifact] [--split test] [--repeats 3]

Data comes from $RAGTUNE_DATA (default ../shared/data beside the repo). Times are the
best of --repeats runs: "index" is raw text -> searchable index (analysis included),
"query" is all test queries, top 1000 each. The last column is the nDCG@10 difference
to the first row with a 95% interval over queries (paired, normal approximation): an
interval that holds 0 is within noise. bm25s rows need `pip install 'ragtune[bm25]'`.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from collections.abc import Callable

from ragtune.data.beir import load_beir
from ragtune.eval.metrics import per_query
from ragtune.retrieval.bm25 import BM25Config, BM25Index

Run = dict[str, dict[str, float]]
DEFAULT = BM25Config()

# name -> config; the first row is the reference for the delta column.
NATIVE_ROWS: dict[str, BM25Config] = {
    "ragtune native (default)": DEFAULT,
    "  stemmer=snowball (PyStemmer)": BM25Config(stemmer="snowball"),
    "  stemmer=s (plurals only)": BM25Config(stemmer="s"),
    "  stemmer=none": BM25Config(stemmer="none"),
    "  stopwords=none": BM25Config(stopwords="none"),
    r"  tokens=\w\w+ (bm25s/sklearn)": BM25Config(token_pattern=r"(?u)\b\w\w+\b"),
    "  method=robertson": BM25Config(method="robertson"),
    "  k1=0.9 b=0.4 (Anserini)": BM25Config(k1=0.9, b=0.4),
    "  k1=1.5 b=0.75 (bm25s default)": BM25Config(k1=1.5),
}


def _native(cfg: BM25Config) -> Callable[[dict[str, str], list[str], list[str]], tuple[Run, float, float]]:
    def run(queries: dict[str, str], ids: list[str], texts: list[str]) -> tuple[Run, float, float]:
        t0 = time.perf_counter()
        index = BM25Index.build(ids, texts, cfg)
        t1 = time.perf_counter()
        out = index.search(queries, top_k=1000)
        return out, t1 - t0, time.perf_counter() - t1

    return run


def _bm25s_own_pipeline(queries: dict[str, str], ids: list[str], texts: list[str]) -> tuple[Run, float, float]:
    """bm25s as its README uses it: its tokenizer, "en" stopwords, Snowball stemmer, defaults."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    t0 = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    t1 = time.perf_counter()
    qids = list(queries)
    q_tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(q_tokens, k=1000, show_progress=False)
    out = {q: {ids[d]: float(s) for d, s in zip(docs[i], scores[i], strict=True) if s > 0} for i, q in enumerate(qids)}
    return out, t1 - t0, time.perf_counter() - t1


def _delta_ci(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    diffs = [a[q] - b[q] for q in b]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, 1.96 * math.sqrt(var / len(diffs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = load_beir(args.dataset, args.split)
    ids = list(data.corpus)
    texts = [d.full_text() for d in data.corpus.values()]
    print(f"{args.dataset}/{args.split}: {len(ids)} docs, {len(data.queries)} queries; default {DEFAULT}\n")

    rows: dict[str, Callable] = {name: _native(cfg) for name, cfg in NATIVE_ROWS.items()}
    if importlib.util.find_spec("bm25s") and importlib.util.find_spec("Stemmer"):
        rows["bm25s backend (same analyzer+formula)"] = _native(BM25Config(backend="bm25s"))
        rows["bm25s own pipeline (README usage)"] = _bm25s_own_pipeline
    else:
        print("bm25s/PyStemmer not installed: skipping the bm25s and snowball rows\n")
        rows.pop("  stemmer=snowball (PyStemmer)")

    header = f"{'implementation / setting':40s} {'index s':>8s} {'query s':>8s} {'nDCG@10':>8s} {'R@100':>7s}"
    header += "  dNDCG@10 vs default"
    print(header + "\n" + "-" * len(header))
    reference = None
    for name, fn in rows.items():
        times = [fn(data.queries, ids, texts) for _ in range(args.repeats)]
        run = times[0][0]
        t_index, t_query = min(t[1] for t in times), min(t[2] for t in times)
        pq = per_query(run, data.qrels, k_values=(10, 100), metrics=("ndcg", "recall"))
        ndcg = {q: m["ndcg@10"] for q, m in pq.items()}
        recall = sum(m["recall@100"] for m in pq.values()) / len(pq)
        mean = sum(ndcg.values()) / len(ndcg)
        reference = reference or ndcg
        delta, ci = _delta_ci(ndcg, reference) if ndcg is not reference else (0.0, 0.0)
        print(
            f"{name:40s} {t_index:8.2f} {t_query:8.2f} {mean:8.4f} {recall:7.4f}  {delta:+.4f} ± {ci:.4f}", flush=True
        )


if __name__ == "__main__":
    main()
