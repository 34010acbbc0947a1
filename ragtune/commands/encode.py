"""Fill the embedding cache with the config's corpus (and eval queries), over as many processes as launched.

    ragtune encode --config configs/scifact_zeroshot.py [--queries] [--section.key=value ...]
    torchrun --nproc_per_node 2 -m ragtune.commands.encode --config configs/scifact_zeroshot.py

Under torchrun (WORLD_SIZE > 1) the command joins a gloo process group from the launcher's
environment and every process encodes a contiguous shard of the corpus straight into the one cache
entry (ragtune/retrieval/sharded.py); alone, it is the single-process `cached_encode`. Either way the
entry is the one evaluation, mining and the adapter task look up (same key: weights, `model.*`
settings, texts), so they find it warm. The model runs on this process's GPU (LOCAL_RANK) when
there is one, else on the CPU; gloo only carries small control messages, never embeddings.
Prints, on the main process, docs/s (wall time between barriers, model loading excluded) and the entry.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

from ragtune.commands import parse_config_args
from ragtune.config import ConfigError
from ragtune.data.beir import DataError
from ragtune.training.distributed import is_main_process, world_size


def join_process_group() -> bool:
    """Initialise gloo from torchrun's env (RANK, WORLD_SIZE, MASTER_ADDR/PORT); True if this call did it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group("gloo")
    return True


def encode_into_cache(encoder, texts: list[str], kind: str, cfg) -> dict:
    """One collective `cached_encode`; {texts, seconds, texts_per_s, hit, path} as seen by this process."""
    from ragtune.retrieval.cache import cache_path, cached_encode

    path = cache_path(encoder, texts, kind, cfg.eval.cache_dir or None, cfg.eval.batch_size)
    hit = path.is_file()
    if world_size() > 1:
        dist.barrier()  # every process loaded its model: time the encoding alone
    start = time.perf_counter()
    cached_encode(encoder, texts, kind, cfg.eval.cache_dir or None, cfg.eval.batch_size,
                  show_progress=is_main_process(), collective=True)
    if world_size() > 1:
        dist.barrier()
    seconds = time.perf_counter() - start
    return {"texts": len(texts), "seconds": seconds, "texts_per_s": len(texts) / seconds if seconds else 0.0,
            "hit": hit, "path": str(path)}


def _report(name: str, unit: str, r: dict) -> None:
    if r["hit"]:
        print(f"{name}: {r['texts']} {unit}, cache hit -> {r['path']}")
    else:
        print(f"{name}: {r['texts']} {unit} in {r['seconds']:.2f} s = {r['texts_per_s']:.1f} {unit}/s "
              f"over {world_size()} process(es) -> {r['path']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help and every config key")
    parser.add_argument("--queries", action="store_true",
                        help="also the eval split's queries (the entry the adapter task reads)")
    joined = False
    try:
        parsed = parse_config_args(parser, argv)
        if parsed is None:
            return 0
        args, cfg = parsed
        from ragtune.data.folds import load_split
        from ragtune.eval.dense import corpus_texts
        from ragtune.inference.backends import for_inference
        from ragtune.models.encoder import Encoder

        dataset = load_split(cfg, "eval")
        _, texts = corpus_texts(dataset)
        joined = join_process_group()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
        # Weights a checkpoint lacks (a pooler) are initialised at random: seeded as `ragtune run` seeds, every
        # process loads the same weights, so they agree on the key (and a run of this config finds it).
        torch.manual_seed(cfg.seed)
        encoder = for_inference(Encoder.from_config(cfg.model).to(device), cfg.eval.backend, cfg.eval.cache_dir or None)
        corpus = encode_into_cache(encoder, texts, "doc", cfg)
        queries = encode_into_cache(encoder, [dataset.queries[q] for q in dataset.queries], "query", cfg) \
            if args.queries else None
        if is_main_process():  # before the group is gone: afterwards every process would say rank 0
            _report(f"corpus {dataset.name}", "docs", corpus)
            if queries is not None:
                _report(f"queries {dataset.name}/{dataset.split}", "queries", queries)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if joined:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
