"""Label-free teachers measured against each other on the synthetic queries of a `ragtune adapt` run.

    python -m experiments.adapt_teachers --run runs/scifact_adapt_nofilter --queries 60 --threads 2

Takes a seeded sample of the run's pseudo_labels.jsonl (write it with adapt.filter=none, so no
teacher chose the sample) and scores each query's group [source document, mined negatives] with
every candidate teacher: the zero-shot dense model, BM25, the hybrid of the two (as written in the
file) and the local LM's query likelihood (QLM/UPR). No label is read: the measure is how often a
teacher scores the document the query was generated from above every mined negative, and how often
two teachers order a (source, negative) pair the same way. Writes <run>/teachers.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from ragtune.config import config_from_dict
from ragtune.data.beir import load_corpus_only
from ragtune.models.encoder import Encoder
from ragtune.models.generator import load_generator
from ragtune.models.qlm_reranker import QLMReranker
from ragtune.retrieval.bm25 import BM25Index
from ragtune.retrieval.first_stage import bm25_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a `ragtune adapt` output_dir")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--qlm-doc-tokens", type=int, default=192)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cfg = config_from_dict(json.loads((run / "config.json").read_text()))
    records = [json.loads(x) for x in (run / "pseudo_labels.jsonl").read_text().splitlines()]
    sample = random.Random(cfg.seed).sample(records, min(args.queries, len(records)))
    corpus = load_corpus_only(cfg.data.dataset, cfg.data.data_root or None).corpus
    groups = [[r["pos_id"], *r["neg_ids"]] for r in sample]
    queries = [r["query"] for r in sample]

    scores: dict[str, list[np.ndarray]] = {"hybrid": [np.array(r["teacher_scores"]) for r in sample]}
    encoder = Encoder.from_config(cfg.model)
    q = encoder.encode(queries, kind="query", batch_size=32, show_progress=False)
    scores["dense"] = [encoder.encode([corpus[d].full_text() for d in g], kind="doc", batch_size=32,
                                      show_progress=False) @ q[i] for i, g in enumerate(groups)]
    index = BM25Index.from_corpus(corpus, bm25_config(cfg.bm25))
    position = {d: i for i, d in enumerate(index.doc_ids)}
    scores["bm25"] = [index.score_all(queries[i])[[position[d] for d in g]] for i, g in enumerate(groups)]
    model, tokenizer = load_generator(cfg.synth.generator, cfg.eval.cache_dir or None)
    qlm = QLMReranker(model.eval(), tokenizer, doc_max_tokens=args.qlm_doc_tokens)
    flat_q = [queries[i] for i, g in enumerate(groups) for _ in g]
    flat_d = [corpus[d].full_text() for g in groups for d in g]
    start = time.perf_counter()
    flat = qlm.score(flat_q, flat_d, batch_size=8, show_progress=True)
    qlm_seconds = time.perf_counter() - start
    bounds = np.cumsum([0] + [len(g) for g in groups])
    scores["qlm"] = [flat[bounds[i]:bounds[i + 1]] for i in range(len(groups))]

    report = {"queries": len(sample), "negatives_per_query": len(groups[0]) - 1,
              "qlm_pairs_per_second": len(flat) / qlm_seconds, "teachers": {}}
    for name, rows in scores.items():
        report["teachers"][name] = {
            "source_above_all_negatives": float(np.mean([s[0] > s[1:].max() for s in rows])),
            "source_above_negative_pairs": float(np.mean([(s[0] > s[1:]).mean() for s in rows]))}
    names = list(scores)
    report["pair_order_agreement"] = {
        f"{a}~{b}": float(np.mean([((sa[0] - sa[1:]) * (sb[0] - sb[1:]) > 0).mean()
                                   for sa, sb in zip(scores[a], scores[b], strict=True)]))
        for i, a in enumerate(names) for b in names[i + 1:]}
    (run / "teachers.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
