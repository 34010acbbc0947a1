"""Sharded corpus encoding: docs/s of 2 single-thread processes vs 1, and the same embeddings.

    python -m experiments.bench.encode_scaling --docs 400 --max-length 256 [--batch-size 128]
        [--repeats 3] [--out results.json]

Encodes the first --docs SciFact documents (title + text, ragtune's BEIR loader) with the model of
configs/scifact_zeroshot.py (packaged all-MiniLM-L6-v2, fp32) through `cached_encode(...,
collective=True)`, into a fresh cache folder per trial, so every trial is a miss that writes the
entry: with 1 process that is the single-process path (encode, np.save); with 2 processes
(torch.multiprocessing, gloo) each encodes its contiguous half straight into the shared entry
(ragtune/retrieval/sharded.py). Every process runs torch.set_num_threads(1) (and
TOKENIZERS_PARALLELISM=false), the per-core setting whose 2-process result is what N GPUs give N-fold.

docs/s counts the encode alone: model loading and a warm-up batch come first, and the time runs
from a barrier to a barrier (so it includes key hashing, file writes, and the slower shard's wait).
Trials alternate 1, 2, 1, 2... and the ratio is the median of per-repeat ratios, because the
machine may be shared; the per-rank shard seconds show any imbalance between the halves. The two
cache entries must agree within 1e-5 (each half is batched on its own: rounding-level noise only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "scifact_zeroshot.py"
TOLERANCE = 1e-5


def _worker(rank: int, world: int, init_file: str, docs: int, max_length: int, batch_size: int,
            cache: str, out: str) -> None:
    """One process of a trial: load, warm up, then a timed collective `cached_encode` of the corpus."""
    import dataclasses

    import torch
    import torch.distributed as dist

    from ragtune.config import load_config
    from ragtune.data.beir import load_beir
    from ragtune.models.encoder import Encoder
    from ragtune.retrieval.cache import cache_path, cached_encode

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    corpus = load_beir("scifact", "test", None).corpus
    texts = [doc.full_text() for doc in list(corpus.values())[:docs]]
    model = dataclasses.replace(load_config(str(CONFIG)).model, doc_max_length=max_length)
    encoder = Encoder.from_config(model)
    encoder.encode(texts[:8], batch_size=8, show_progress=False)  # warm-up: lazy inits, first-call costs
    shard_seconds = []
    real = encoder.encode

    def timed_encode(shard, **kw):
        start = time.perf_counter()
        emb = real(shard, **kw)
        shard_seconds.append(time.perf_counter() - start)
        return emb

    encoder.encode = timed_encode
    dist.barrier()
    start = time.perf_counter()
    cached_encode(encoder, texts, "doc", cache, batch_size, show_progress=False, collective=True)
    dist.barrier()
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: a spawned child's ru_maxrss starts from its parent's peak
    peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))
    result = {"rank": rank, "seconds": seconds, "shard_seconds": sum(shard_seconds), "peak_rss_mb": peak / 2**20,
              "path": str(cache_path(encoder, texts, "doc", cache))}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def trial(world: int, docs: int, max_length: int, batch_size: int) -> tuple[dict, Path]:
    """One trial of `world` processes: {docs_per_s, seconds, shard_seconds per rank}, and its scratch folder."""
    import torch.multiprocessing as mp

    scratch = Path(tempfile.mkdtemp(prefix=f"encode_scaling_{world}p_"))
    mp.spawn(_worker, args=(world, str(scratch / "init"), docs, max_length, batch_size, str(scratch / "cache"),
                            str(scratch)), nprocs=world)
    ranks = [json.loads((scratch / f"rank{r}.json").read_text()) for r in range(world)]
    seconds = ranks[0]["seconds"]
    return {"processes": world, "seconds": seconds, "docs_per_s": docs / seconds,
            "shard_seconds": [r["shard_seconds"] for r in ranks], "peak_rss_mb": [r["peak_rss_mb"] for r in ranks],
            "path": ranks[0]["path"]}, scratch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128, help="eval.batch_size's default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="", help="write the results here as JSON")
    args = parser.parse_args(argv)
    import numpy as np

    # Inherited by the spawned processes: one compute thread each, tokenizers included.
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    load_before = os.getloadavg()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    max_diff = 0.0
    for r in range(args.repeats):
        entries = {}
        scratches = []
        for world in (1, 2):
            res, scratch = trial(world, args.docs, args.max_length, args.batch_size)
            scratches.append(scratch)
            entries[world] = np.load(res.pop("path"))  # the scratch folder goes
            runs[world].append(res)
            print(f"repeat {r + 1}/{args.repeats} {world} process(es): {res['docs_per_s']:.2f} docs/s "
                  f"({res['seconds']:.2f} s; shard encode s per rank "
                  f"{', '.join(f'{s:.2f}' for s in res['shard_seconds'])}; peak RSS MB per rank "
                  f"{', '.join(f'{m:.0f}' for m in res['peak_rss_mb'])})", flush=True)
        max_diff = max(max_diff, float(np.abs(entries[1] - entries[2]).max()))
        for scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)
    ratio = statistics.median(b["docs_per_s"] / a["docs_per_s"] for a, b in zip(runs[1], runs[2], strict=True))
    same = max_diff < TOLERANCE
    print(f"\n{args.docs} SciFact docs, MiniLM fp32, max_length {args.max_length}, batch {args.batch_size}, "
          f"1 thread per process, {args.repeats} interleaved repeat(s); load average before {load_before[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    for world in (1, 2):
        print(f"  {world} process(es): {statistics.median(x['docs_per_s'] for x in runs[world]):.2f} docs/s (median)")
    print(f"ratio 2 processes / 1 (median of per-repeat ratios): {ratio:.3f}x")
    print(f"embeddings: max abs difference {max_diff:.2e} ({'identical' if same else 'DIFFERENT'} "
          f"within {TOLERANCE:g})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "docs": args.docs, "max_length": args.max_length, "batch_size": args.batch_size,
            "repeats": args.repeats, "threads_per_process": 1, "load_average_before": load_before,
            "cpu_count": os.cpu_count(), "runs": {f"{w}p": runs[w] for w in runs}, "ratio_median": ratio,
            "max_abs_diff": max_diff, "identical_within": TOLERANCE, "identical": same}, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
