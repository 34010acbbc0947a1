"""Peak memory of one training step: GradCache at batch 512 vs plain at batch 32 (MiniLM, fp32).

    OMP_NUM_THREADS=1 python -m experiments.bench.gradcache_memory [--big-batch 512] [--chunk 32]
        [--small-batch 32] [--query-max-length 64] [--doc-max-length 256] [--threads 1]

Each configuration is one optimizer step (forward, backward, AdamW) in its own process, on
SciFact train pairs with unique positives (UniquePositiveBatchSampler), in-batch InfoNCE.
GradCache (ragtune/training/gradcache.py) keeps only one chunk's activations alive, so its peak should
stay near the plain batch-`chunk` step: target peak ratio <= 1.5. "activ_mb" = peak minus RSS
after the model and optimizer are built (activations, gradients, AdamW state, the batch).
A GradCache step at batch 512 costs about (512 / 32) * 4/3 plain steps of compute.
"""

from __future__ import annotations

import argparse
import time

from experiments.bench.common import interleave, mark_loaded, print_table


def worker(batch_size: int, chunk: int, query_max_length: int, doc_max_length: int) -> dict:
    import torch

    from ragtune.config import ModelConfig
    from ragtune.data.beir import load_beir
    from ragtune.data.collate import GroupCollator, UniquePositiveBatchSampler
    from ragtune.data.pairs import records_from_qrels
    from ragtune.losses import info_nce
    from ragtune.models.biencoder import BiEncoder
    from ragtune.models.encoder import Encoder
    from ragtune.training.gradcache import grad_cache_step, split_batch

    records = records_from_qrels(load_beir("scifact", "train", None))
    cfg = ModelConfig(name="minilm", query_max_length=query_max_length, doc_max_length=doc_max_length)
    model = BiEncoder(Encoder.from_config(cfg)).train()
    first = next(iter(UniquePositiveBatchSampler(records, batch_size, seed=0)))
    batch = GroupCollator(model.encoder.tokenize, 0)([(records[i], e) for i, e in first])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    mark_loaded()
    start = time.perf_counter()
    if chunk > 0:
        loss = grad_cache_step(lambda b: model(**b), lambda b: model(**b), split_batch(batch["q"], chunk),
                               split_batch(batch["d"], chunk), lambda q, d: info_nce(q, d, model.temperature))
    else:
        loss = info_nce(model(**batch["q"]), model(**batch["d"]), model.temperature)
        loss.backward()
    optimizer.step()
    return {"seconds": time.perf_counter() - start, "loss": loss.item(),
            "d_tokens": batch["d"]["input_ids"].shape[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-batch", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--small-batch", type=int, default=32)
    parser.add_argument("--query-max-length", type=int, default=64)
    parser.add_argument("--doc-max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    lengths = {"query_max_length": args.query_max_length, "doc_max_length": args.doc_max_length}
    mod = "experiments.bench.gradcache_memory"
    names = (f"plain batch {args.small_batch}", f"GradCache batch {args.big_batch} (chunk {args.chunk})")
    res = interleave({names[0]: (mod, "worker", {"batch_size": args.small_batch, "chunk": 0, **lengths}),
                      names[1]: (mod, "worker", {"batch_size": args.big_batch, "chunk": args.chunk, **lengths})},
                     1, args.threads)
    keys = ["peak_mb", "loaded_mb", "activ_mb", "seconds", "d_tokens"]
    print(f"\none step, MiniLM fp32, max length q {args.query_max_length} / d {args.doc_max_length}, "
          f"{args.threads} thread(s)")
    print_table([{"config": n, **res[n][0]} for n in names], ["config"] + keys)
    plain, gc = res[names[0]][0], res[names[1]][0]
    print(f"peak ratio GradCache/plain: {gc['peak_mb'] / plain['peak_mb']:.3f} (target <= 1.5); "
          f"activation ratio (peak minus loaded): {gc['activ_mb'] / plain['activ_mb']:.3f}")


if __name__ == "__main__":
    main()
