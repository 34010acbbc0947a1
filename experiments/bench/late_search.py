"""Single-query latency of late-interaction search on SciFact, beside dense search in the same run.

    python -m experiments.bench.late_search [--model runs/scifact_late_interaction/model]
        [--queries 30] [--threads 2] [--rerank-n 100]

One query at a time, as a RAG service answers them: encoding the query, exact MaxSim over the
whole token store (ragtune/retrieval/late.py; the store comes from the embedding cache, filled by
the run or by `task=late_eval`), MaxSim over the hybrid first stage's top n, and, for scale, the
exact dot-product search of the MiniLM bi-encoder over its cached embeddings. Median and 90th
percentile milliseconds over the queries, after one untimed warm-up query.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from experiments.bench.common import REPO, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "scifact_late_interaction" / "model")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rerank-n", type=int, default=100)
    parser.add_argument("--store", default="", help="a token store's path prefix (<cache>/tokens/<key>) to read "
                                                    "instead of the cache entry of --model")
    args = parser.parse_args()

    import numpy as np
    import torch

    from ragtune.config import ExperimentConfig, ModelConfig
    from ragtune.data.beir import load_beir
    from ragtune.models.encoder import Encoder
    from ragtune.models.late_interaction import LateInteraction
    from ragtune.retrieval.cache import cached_encode
    from ragtune.retrieval.first_stage import first_stage_run
    from ragtune.retrieval.late import TokenStore, cached_token_store, late_rerank, maxsim_search

    torch.set_num_threads(args.threads)
    test = load_beir("scifact", "test")
    doc_ids = list(test.corpus)
    texts = [test.corpus[d].full_text() for d in doc_ids]
    model = LateInteraction.load(args.model).eval()
    store = TokenStore(np.load(f"{args.store}.vectors.npy", mmap_mode="r"), np.load(f"{args.store}.offsets.npy")) \
        if args.store else cached_token_store(model, texts)
    if len(store) != len(texts):
        raise SystemExit(f"the store holds {len(store)} documents, SciFact test {len(texts)}")
    dense = Encoder.from_config(ModelConfig())
    d_emb = torch.from_numpy(np.asarray(cached_encode(dense, texts, "doc")))
    qids = list(test.queries)[:args.queries + 1]
    hybrid, _ = first_stage_run("hybrid", test, ExperimentConfig(), encoder=dense, top_k=args.rerank_n,
                                show_progress=False)

    timings: dict[str, list[float]] = {"encode query (late)": [], "exact MaxSim over the corpus": [],
                                       f"MaxSim rerank of the hybrid top {args.rerank_n}": [],
                                       "encode query (dense)": [], "exact dense search over the corpus": []}

    class Timer:
        """Adds the block's milliseconds to timings[name] (not for the warm-up query)."""

        def __init__(self, name: str, warm: bool):
            self.name, self.warm = name, warm

        def __enter__(self):
            self.start = time.perf_counter()

        def __exit__(self, *exc):
            if not self.warm:
                timings[self.name].append((time.perf_counter() - self.start) * 1000)

    rerank_name = f"MaxSim rerank of the hybrid top {args.rerank_n}"
    for i, qid in enumerate(qids):
        warm = i == 0
        with Timer("encode query (late)", warm):
            q = model.encode_queries([test.queries[qid]])
        with Timer("exact MaxSim over the corpus", warm):
            maxsim_search(q, store, 100)
        with Timer(rerank_name, warm):
            late_rerank(q, store, [qid], doc_ids, {qid: hybrid[qid]}, args.rerank_n)
        with Timer("encode query (dense)", warm):
            e = torch.from_numpy(dense.encode([test.queries[qid]], "query", show_progress=False))
        with Timer("exact dense search over the corpus", warm):
            torch.topk(e @ d_emb.T, 100)

    rows = [{"step": name, "median ms": statistics.median(ms), "p90 ms": float(np.percentile(ms, 90))}
            for name, ms in timings.items()]
    print(f"SciFact test, {len(qids) - 1} queries one at a time, {args.threads} threads; store "
          f"{store.vectors.nbytes / 2**20:.0f} MB ({store.bytes_per_doc():.0f} B/doc), dense "
          f"{d_emb.numel() * 4 / 2**20:.1f} MB")
    print_table(rows, ["step", "median ms", "p90 ms"])


if __name__ == "__main__":
    main()
