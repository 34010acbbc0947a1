"""Serve a config's corpus from ChromaDB and query it with the fine-tuned query side; compare with exact search.

    ragtune chroma --config configs/scifact_adapter.py --adapter runs/scifact_adapter/model \\
        --db runs/chroma/scifact [--name NAME] [--top-k 100] [--ef-search 1000] [--out FILE] [--section.key=value ...]

The corpus is embedded with the BASE encoder (`model.*`, through the embedding cache) and written into
the collection once: a later run finds the same vectors (fingerprint, ids, count, HNSW settings) and
reuses them. The eval split's queries are embedded with the base encoder, queried as they are (base)
and through the saved query-only adapter (`--adapter`), against the same collection: the adapter needs
no re-embedding of the corpus. Each is also scored by exact search (`dense_search`) on the same vectors.

Prints, per query side, metric | exact | chroma | difference, the mean top-10 overlap between Chroma's
and exact search's ids, and the write and query times. Writes them to --out (default <db>/../chroma_<name>.json).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ragtune.commands import parse_config_args
from ragtune.config import ConfigError
from ragtune.data.beir import DataError
from ragtune.eval.metrics import Run, evaluate, rank_docs
from ragtune.retrieval.chroma import HnswSettings, collection_mismatch, open_client, query_collection, write_collection

OVERLAP_K = 10


def default_name(cfg) -> str:
    """'<dataset>-<model folder>', cut to Chroma's alphabet (the fingerprint, not the name, decides reuse)."""
    raw = f"{cfg.data.dataset}-{Path(cfg.model.name).name}"
    name = re.sub(r"[^a-zA-Z0-9._-]+", "-", raw).strip("._-")
    return (name or "corpus").ljust(3, "0")[:512]


def mean_overlap(a: Run, b: Run, k: int = OVERLAP_K) -> float:
    """Mean over a's queries of |top-k of a & top-k of b| / k, ranked as the metrics rank."""
    return float(np.mean([len(set(rank_docs(a[q], k)) & set(rank_docs(b.get(q, {}), k))) / k for q in a]))


def max_score_gap(a: Run, b: Run) -> float:
    """Largest |score difference| over the (query, doc) pairs both runs hold."""
    gaps = [abs(a[q][d] - b[q][d]) for q in a for d in set(a[q]) & set(b.get(q, {}))]
    return max(gaps, default=0.0)


def get_collection(db: Path, name: str, doc_ids: list[str], d_emb: np.ndarray, hnsw: HnswSettings,
                   batch_size: int, rewrite: bool) -> tuple[object, str, float]:
    """(collection, what happened, write seconds): reused when it already holds exactly these vectors."""
    client = open_client(db)
    if not rewrite and name in {c.name for c in client.list_collections()}:
        existing = client.get_collection(name, embedding_function=None)
        why = collection_mismatch(existing, doc_ids, d_emb, hnsw)
        if not why:
            return existing, f"reused: '{name}' already holds these {len(doc_ids)} vectors", 0.0
        action = f"rewritten: the existing '{name}' was not reusable ({why})"
    else:
        action = f"written: '{name}'" + (" (--rewrite)" if rewrite else " (new)")
    start = time.perf_counter()
    collection = write_collection(db, name, doc_ids, d_emb, hnsw, batch_size)
    return collection, action, time.perf_counter() - start


def compare_side(collection, q_emb: np.ndarray, query_ids: list[str], d_emb: np.ndarray, doc_ids: list[str],
                 qrels, top_k: int, k_values) -> dict:
    """Exact and Chroma runs of one query side: metrics, their differences, overlap, score gap, timings."""
    from ragtune.retrieval.dense import dense_search

    start = time.perf_counter()
    exact = dense_search(q_emb, d_emb, query_ids, doc_ids, top_k=top_k)
    exact_seconds = time.perf_counter() - start
    start = time.perf_counter()
    chroma = query_collection(collection, query_ids, q_emb, top_k)
    chroma_seconds = time.perf_counter() - start
    exact_m, chroma_m = evaluate(exact, qrels, k_values), evaluate(chroma, qrels, k_values)
    return {
        "exact": exact_m, "chroma": chroma_m, "difference": {k: chroma_m[k] - exact_m[k] for k in exact_m},
        f"top{OVERLAP_K}_overlap": mean_overlap(exact, chroma),
        f"top{top_k}_overlap": mean_overlap(exact, chroma, top_k),
        "max_score_gap": max_score_gap(exact, chroma),
        "exact_seconds": round(exact_seconds, 3), "chroma_query_seconds": round(chroma_seconds, 3),
        "queries": len(query_ids),
    }


def side_table(label: str, side: dict, top_k: int) -> str:
    rows = [f"## {label}", "", "| metric | exact | chroma | difference |", "|---|---:|---:|---:|"]
    rows += [f"| {k} | {side['exact'][k]:.4f} | {side['chroma'][k]:.4f} | {side['difference'][k]:+.6f} |"
             for k in side["exact"]]
    rows += ["", f"mean top-{OVERLAP_K} overlap chroma vs exact: {side[f'top{OVERLAP_K}_overlap']:.4f}; "
             f"top-{top_k}: {side[f'top{top_k}_overlap']:.4f}; max |score gap|: {side['max_score_gap']:.2e}",
             f"query time ({side['queries']} queries, top {top_k}): chroma {side['chroma_query_seconds']:.2f} s, "
             f"exact {side['exact_seconds']:.2f} s", ""]
    return "\n".join(rows)


def run(args: argparse.Namespace, cfg) -> dict:
    from ragtune.data.folds import load_split
    from ragtune.eval.dense import corpus_texts
    from ragtune.models.adapter import apply_adapter, load_adapter
    from ragtune.models.encoder import Encoder
    from ragtune.retrieval.cache import cached_encode

    adapter = load_adapter(args.adapter) if args.adapter else None  # a bad path fails before any encoding
    dataset = load_split(cfg, "eval")
    top_k = args.top_k or max(cfg.eval.top_k, *cfg.eval.k_values)
    hnsw = HnswSettings(args.space, args.ef_search, args.ef_construction, args.max_neighbors)
    if hnsw.ef_search < top_k:
        raise ValueError(f"--ef-search {hnsw.ef_search} < --top-k {top_k}: HNSW would return fewer good hits")
    encoder = Encoder.from_config(cfg.model)
    cache_dir, bs = cfg.eval.cache_dir or None, cfg.eval.batch_size
    doc_ids, texts = corpus_texts(dataset)
    d_emb = cached_encode(encoder, texts, "doc", cache_dir, bs)
    query_ids = list(dataset.queries)
    base_q = cached_encode(encoder, [dataset.queries[q] for q in query_ids], "query", cache_dir, bs, False)
    if adapter is not None and adapter.dim != d_emb.shape[1]:
        raise ValueError(f"adapter {args.adapter} maps dim {adapter.dim} but model '{cfg.model.name}' "
                         f"embeds dim {d_emb.shape[1]}")
    name = args.name or default_name(cfg)
    db = Path(args.db)
    collection, action, write_seconds = get_collection(db, name, doc_ids, d_emb, hnsw, args.batch_size, args.rewrite)
    sides = {"base": compare_side(collection, base_q, query_ids, d_emb, doc_ids, dataset.qrels, top_k,
                                  cfg.eval.k_values)}
    if adapter is not None:
        sides["adapter"] = compare_side(collection, apply_adapter(adapter, base_q), query_ids, d_emb, doc_ids,
                                        dataset.qrels, top_k, cfg.eval.k_values)
    return {
        "dataset": f"{dataset.name}/{dataset.split}", "model": cfg.model.name, "adapter": args.adapter or None,
        "db": str(db), "collection": name, "collection_action": action, "docs": len(doc_ids),
        "dim": int(d_emb.shape[1]), "hnsw": asdict(hnsw), "top_k": top_k,
        "write_seconds": round(write_seconds, 3), "sides": sides,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help and every config key")
    parser.add_argument("--db", required=True, help="Chroma folder (created if missing), e.g. runs/chroma/scifact")
    parser.add_argument("--adapter", default="", help="a saved query adapter folder; omitted: the base model only")
    parser.add_argument("--name", default="", help="collection name (default '<dataset>-<model folder>')")
    parser.add_argument("--top-k", type=int, default=0, help="hits per query (default max(eval.top_k, k_values))")
    defaults = HnswSettings()
    parser.add_argument("--space", default=defaults.space, choices=["ip", "cosine"])
    parser.add_argument("--ef-search", type=int, default=defaults.ef_search)
    parser.add_argument("--ef-construction", type=int, default=defaults.ef_construction)
    parser.add_argument("--max-neighbors", type=int, default=defaults.max_neighbors)
    parser.add_argument("--batch-size", type=int, default=0, help="vectors per add (default Chroma's maximum)")
    parser.add_argument("--rewrite", action="store_true", help="rewrite the collection even if it is reusable")
    parser.add_argument("--out", default="", help="results JSON (default <db>/../chroma_<name>.json)")
    try:
        parsed = parse_config_args(parser, argv)
        if parsed is None:
            return 0
        args, cfg = parsed
        result = run(args, cfg)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{result['dataset']}: {result['docs']} docs x {result['dim']} in {result['db']}; "
          f"{result['collection_action']}; write {result['write_seconds']:.2f} s; HNSW {result['hnsw']}\n")
    for label, side in result["sides"].items():
        print(side_table(f"{label} query side ({'saved adapter' if label == 'adapter' else 'no adapter'})",
                         side, result["top_k"]))
    out = Path(args.out) if args.out else Path(args.db).parent / f"chroma_{result['collection']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
