"""Bi-encoder training throughput: ragtune vs sentence-transformers MultipleNegativesRankingLoss.

    OMP_NUM_THREADS=1 python -m experiments.bench.train_throughput [--steps 4] [--batch-size 32]
        [--query-max-length 64] [--doc-max-length 256] [--repeats 2] [--threads 1]

Same model (packaged MiniLM, fp32), same data (the same seeded subset of steps * batch_size
SciFact train (query, positive) pairs), same batch size, max lengths, AdamW (lr 2e-5) and
loss (in-batch InfoNCE at temperature 0.05 = MNRL at scale 20). Configurations:

- ragtune: UniquePositiveBatchSampler + GroupCollator (dynamic padding) + BiEncoder + info_nce,
  the hot path of the biencoder task (ragtune/tasks/biencoder.py) without the loop's logging;
- ragtune+bucket: the same with length-bucketed batches (`--train.bucket_size` in the biencoder
  task), which pads less when positives are shorter than the doc max length;
- sentence-transformers: its tokenize + forward + MultipleNegativesRankingLoss in the same plain
  loop (its Trainer adds its own overhead on top, so this favours the peer).

--paired-only loads both in one process and alternates them per step (ABBA) on identical batches:
the least noisy ratio. Samples/s = timed records / time, after one untimed warm-up batch of other records.
The peer has one max_seq_length: queries are truncated at the doc length there (SciFact train
queries have at most ~64 tokens, so this changes nothing measurable).
"""

from __future__ import annotations

import argparse
import random
import time

from experiments.bench.common import interleave, mark_loaded, median_ratio, print_table, run_trial, summarize

MODEL, LR, TEMPERATURE, SEED = "minilm", 2e-5, 0.05, 0


def _records(n: int):
    from ragtune.data.beir import load_beir
    from ragtune.data.pairs import records_from_qrels

    records = records_from_qrels(load_beir("scifact", "train", None))
    return random.Random(SEED).sample(records, n)


def _split(records: list, n: int) -> tuple[list, list]:
    """The timed records and a separate warm-up batch (so warm-up never takes a timed batch)."""
    return records[:n], records[n:]


def worker_ragtune(steps: int, batch_size: int, query_max_length: int, doc_max_length: int,
                   bucket_size: int = 0) -> dict:
    import torch

    from ragtune.config import ModelConfig
    from ragtune.data.collate import GroupCollator, UniquePositiveBatchSampler
    from ragtune.losses import info_nce
    from ragtune.models.biencoder import BiEncoder
    from ragtune.models.encoder import Encoder
    from ragtune.tasks.biencoder import positive_lengths

    records, warm = _split(_records((steps + 1) * batch_size), steps * batch_size)
    cfg = ModelConfig(name=MODEL, query_max_length=query_max_length, doc_max_length=doc_max_length)
    model = BiEncoder(Encoder.from_config(cfg), TEMPERATURE).train()
    lengths = positive_lengths(model.encoder, records) if bucket_size else None  # as train.bucket_size does
    # drop_last=False: every timed record is trained on, by both libraries.
    sampler = UniquePositiveBatchSampler(records, batch_size, SEED, drop_last=False, lengths=lengths,
                                         bucket_size=bucket_size)
    collate = GroupCollator(model.encoder.tokenize, 0, SEED)
    batches = [collate([(records[i], epoch) for i, epoch in b]) for b in sampler]  # tokenized like the loader
    warm_batch = collate([(r, 0) for r in warm])
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    mark_loaded()

    def step(batch) -> float:
        loss = info_nce(model(**batch["q"]), model(**batch["d"]), model.temperature)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step(warm_batch)  # warm-up, untimed
    tokens = sum(b["q"]["input_ids"].numel() + b["d"]["input_ids"].numel() for b in batches)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    seconds = time.perf_counter() - start
    return {"samples_per_s": len(records) / seconds, "seconds": seconds, "padded_tokens": tokens}


def worker_peer(steps: int, batch_size: int, query_max_length: int, doc_max_length: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer, losses

    from ragtune.models.encoder import resolve_model_path

    records, warm = _split(_records((steps + 1) * batch_size), steps * batch_size)
    model = SentenceTransformer(str(resolve_model_path(MODEL)), device="cpu")
    model.max_seq_length = doc_max_length
    model.train()
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE)
    chunks = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    batches = [[model.tokenize([r.query for r in c]), model.tokenize([r.pos for r in c])] for c in chunks]
    warm_batch = [model.tokenize([r.query for r in warm]), model.tokenize([r.pos for r in warm])]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    mark_loaded()

    def step(features) -> float:
        loss = loss_fn([dict(f) for f in features], None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step(warm_batch)
    tokens = sum(f["input_ids"].numel() for b in batches for f in b)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    seconds = time.perf_counter() - start
    return {"samples_per_s": len(records) / seconds, "seconds": seconds, "padded_tokens": tokens}


def worker_paired(steps: int, batch_size: int, query_max_length: int, doc_max_length: int) -> dict:
    """Both libraries in one process on the SAME batches (same records, same padding), alternating
    per step in ABBA order; the median per-step time ratio cancels background load."""
    import statistics as stats

    import torch
    from sentence_transformers import SentenceTransformer, losses

    from ragtune.config import ModelConfig
    from ragtune.data.collate import GroupCollator
    from ragtune.losses import info_nce
    from ragtune.models.biencoder import BiEncoder
    from ragtune.models.encoder import Encoder, resolve_model_path

    records = _records((steps + 1) * batch_size)
    chunks = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    cfg = ModelConfig(name=MODEL, query_max_length=query_max_length, doc_max_length=doc_max_length)
    ours = BiEncoder(Encoder.from_config(cfg), TEMPERATURE).train()
    collate = GroupCollator(ours.encoder.tokenize, 0, SEED)
    ours_batches = [collate([(r, 0) for r in c]) for c in chunks]
    peer = SentenceTransformer(str(resolve_model_path(MODEL)), device="cpu")
    peer.max_seq_length = doc_max_length
    peer.train()
    peer_loss = losses.MultipleNegativesRankingLoss(peer, scale=1 / TEMPERATURE)
    peer_batches = [[peer.tokenize([r.query for r in c]), peer.tokenize([r.pos for r in c])] for c in chunks]
    opts = {"ragtune": torch.optim.AdamW(ours.parameters(), lr=LR), "peer": torch.optim.AdamW(peer.parameters(), lr=LR)}
    loss_fns = {"ragtune": lambda b: info_nce(ours(**b["q"]), ours(**b["d"]), ours.temperature),
                "peer": lambda b: peer_loss([dict(f) for f in b], None)}
    batches = {"ragtune": ours_batches, "peer": peer_batches}
    mark_loaded()

    def step(name: str, i: int) -> float:
        start = time.perf_counter()
        loss_fns[name](batches[name][i]).backward()
        opts[name].step()
        opts[name].zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step("ragtune", steps), step("peer", steps)  # warm-up on the last (untimed) batch
    ratios = []
    for i in range(steps):
        secs = {name: step(name, i) for name in (("ragtune", "peer") if i % 2 == 0 else ("peer", "ragtune"))}
        ratios.append(secs["peer"] / secs["ragtune"])  # > 1: ragtune faster
    return {"median_speed_ratio": stats.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--query-max-length", type=int, default=64)
    parser.add_argument("--doc-max-length", type=int, default=256)
    parser.add_argument("--bucket-size", type=int, default=8, help="batches per length bucket (ragtune+bucket)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-plain", action="store_true", help="skip the unbucketed ragtune row (saves time)")
    parser.add_argument("--paired-only", action="store_true",
                        help="only the in-process ABBA ratio on identical batches (no memory rows)")
    args = parser.parse_args()
    kw = {"steps": args.steps, "batch_size": args.batch_size, "query_max_length": args.query_max_length,
          "doc_max_length": args.doc_max_length}
    mod = "experiments.bench.train_throughput"
    if args.paired_only:
        p = run_trial(mod, "worker_paired", kw, args.threads)
        print(f"paired in one process, same batches, ABBA over {args.steps} steps: ragtune speed / peer = "
              f"{p['median_speed_ratio']:.3f}x (median; range {p['min_ratio']:.3f}-{p['max_ratio']:.3f}), "
              f"peak {p['peak_mb']:.0f} MB for both models")
        return
    configs = {"ragtune+bucket": (mod, "worker_ragtune", {**kw, "bucket_size": args.bucket_size}),
               "sentence-transformers": (mod, "worker_peer", kw)}
    if not args.no_plain:
        configs["ragtune"] = (mod, "worker_ragtune", kw)
    res = interleave(configs, args.repeats, args.threads)
    keys = ["samples_per_s", "seconds", "padded_tokens", "peak_mb", "loaded_mb", "activ_mb"]
    print(f"\ntrain {args.steps} steps x batch {args.batch_size}, MiniLM fp32, max length q {args.query_max_length} / "
          f"d {args.doc_max_length}, {args.threads} thread(s), median of {args.repeats} interleaved repeats")
    print_table(summarize(res, keys), ["config"] + keys)
    peer = res["sentence-transformers"]
    for name in configs:
        if name != "sentence-transformers":
            ratio = median_ratio(res[name], peer, "samples_per_s")
            print(f"ratio samples/s {name} / sentence-transformers: {ratio:.3f}x")


if __name__ == "__main__":
    main()
