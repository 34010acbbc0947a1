"""Query-adapter training: ragtune's cached embeddings vs re-embedding every batch.

    OMP_NUM_THREADS=1 python -m experiments.bench.adapter_cached [--cached-steps 200]
        [--reembed-steps 3] [--batch-size 32] [--repeats 2] [--threads 1]

Both train the same linear QueryAdapter (ragtune/models/adapter.py) with the adapter task's own
collate and loss (ragtune/tasks/adapter.py: one positive + one random corpus negative per
query, in-batch InfoNCE at 0.05) on SciFact train. "cached" is what the task does: the frozen
MiniLM embeds the corpus and the queries once through `cached_encode` (a disk hit when warm),
then each step is a (B, H) x (H, H) product. "re-embed" is the naive alternative: the frozen
encoder embeds each batch's queries and documents (no grad) before the same adapter step.
"setup_s" is the time to have embeddings ready (cache load, or nothing for re-embed); samples/s
counts the training steps only. The cache must be warm (run the adapter task or the zero-shot
eval once) or setup_s includes a full corpus encode.
"""

from __future__ import annotations

import argparse
import os
import time

from experiments.bench.common import interleave, mark_loaded, median_ratio, print_table, summarize


def _setup(batch_size: int):
    import torch

    from ragtune.config import LossConfig, ModelConfig
    from ragtune.data.beir import load_beir
    from ragtune.eval.dense import corpus_texts
    from ragtune.models.adapter import QueryAdapter
    from ragtune.models.encoder import Encoder
    from ragtune.tasks.adapter import make_collate

    torch.manual_seed(0)
    train = load_beir("scifact", "train", None)
    doc_ids, texts = corpus_texts(train)
    index = {d: i for i, d in enumerate(doc_ids)}
    qids = list(train.queries)
    positives = [[index[d] for d, g in train.qrels.get(q, {}).items() if g >= 1] for q in qids]
    keep = [i for i, p in enumerate(positives) if p]
    collate = make_collate(positives, "random", 1, len(doc_ids), None)
    batches = [collate(keep[i:i + batch_size]) for i in range(0, len(keep) - batch_size + 1, batch_size)]
    encoder = Encoder.from_config(ModelConfig(name="minilm"))
    adapter = QueryAdapter(encoder.backbone.config.hidden_size, kind="linear")
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-3)
    queries = [train.queries[q] for q in qids]
    return encoder, adapter, optimizer, batches, texts, queries, LossConfig()


def _train(adapter, optimizer, loss_cfg, batches, steps: int, embed) -> float:
    """`steps` adapter steps; `embed(batch) -> (q (B, H), docs (B, G, H))`. Returns seconds."""
    import torch

    from ragtune.tasks.adapter import adapter_loss

    start = time.perf_counter()
    for s in range(steps):
        q, docs = embed(batches[s % len(batches)])
        loss = adapter_loss(loss_cfg, adapter(q), docs, torch.tensor(loss_cfg.temperature))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def worker_cached(steps: int, batch_size: int) -> dict:
    import torch

    from ragtune.retrieval.cache import cached_encode

    encoder, adapter, optimizer, batches, texts, queries, loss_cfg = _setup(batch_size)
    mark_loaded()
    start = time.perf_counter()
    d_emb = torch.from_numpy(cached_encode(encoder, texts, "doc", None, show_progress=False))  # (N, H)
    q_emb = torch.from_numpy(cached_encode(encoder, queries, "query", None, show_progress=False))  # (Q, H)
    setup = time.perf_counter() - start
    del encoder  # the task drops it too: nothing below runs it
    seconds = _train(adapter, optimizer, loss_cfg, batches, steps, lambda b: (q_emb[b["q"]], d_emb[b["docs"]]))
    return {"samples_per_s": steps * batch_size / seconds, "step_ms": 1000 * seconds / steps, "setup_s": setup}


def worker_reembed(steps: int, batch_size: int) -> dict:
    encoder, adapter, optimizer, batches, texts, queries, loss_cfg = _setup(batch_size)
    encoder.encode(texts[:4], show_progress=False)  # warm-up
    mark_loaded()

    def embed(batch):
        import torch

        q = encoder.encode([queries[i] for i in batch["q"].tolist()], "query", show_progress=False)
        docs = encoder.encode([texts[i] for i in batch["docs"].flatten().tolist()], "doc", show_progress=False)
        return torch.from_numpy(q), torch.from_numpy(docs).reshape(*batch["docs"].shape, -1)  # (B, H), (B, G, H)

    seconds = _train(adapter, optimizer, loss_cfg, batches, steps, embed)
    return {"samples_per_s": steps * batch_size / seconds, "step_ms": 1000 * seconds / steps, "setup_s": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cached-steps", type=int, default=200)
    parser.add_argument("--reembed-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if "RAGTUNE_CACHE" not in os.environ:
        print("note: RAGTUNE_CACHE is unset; the cache is ~/.cache/ragtune")
    mod = "experiments.bench.adapter_cached"
    res = interleave({"cached (ragtune)": (mod, "worker_cached", {"steps": args.cached_steps,
                                                                  "batch_size": args.batch_size}),
                      "re-embed every batch": (mod, "worker_reembed", {"steps": args.reembed_steps,
                                                                        "batch_size": args.batch_size})},
                     args.repeats, args.threads)
    keys = ["samples_per_s", "step_ms", "setup_s", "peak_mb", "loaded_mb", "activ_mb"]
    print(f"\nlinear query adapter on SciFact train, MiniLM, batch {args.batch_size} (pos + 1 random neg), "
          f"{args.threads} thread(s), median of {args.repeats} interleaved repeats")
    print_table(summarize(res, keys), ["config"] + keys)
    ratio = median_ratio(res["cached (ragtune)"], res["re-embed every batch"], "samples_per_s")
    print(f"ratio samples/s cached / re-embed: {ratio:.0f}x")


if __name__ == "__main__":
    main()
