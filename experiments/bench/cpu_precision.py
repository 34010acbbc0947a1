#!/usr/bin/env python
"""fp32 vs bf16 autocast for one bi-encoder training step on this machine's CPU, in one process.

    python -m experiments.bench.cpu_precision [--model minilm --batch 16 --doc-len 256 --steps 3]

The number behind the warning `train.mixed_precision=bf16 on a CPU` (experiments/run.py): each
step is InfoNCE forward + backward + AdamW over `--batch` queries and their positives, timed after
one warm-up step; prints the median seconds per step of each and the ratio bf16 / fp32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from ragtune.config import ModelConfig
from ragtune.losses import info_nce
from ragtune.models.encoder import Encoder


def step_seconds(encoder: Encoder, q: dict, d: dict, dtype: torch.dtype | None, steps: int) -> float:
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = info_nce(encoder(**q).float(), encoder(**d).float(), temperature=0.05)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:  # the first step warms up kernels and allocations
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--doc-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder = Encoder.from_config(ModelConfig(name=args.model, doc_max_length=args.doc_len))
    words = "protein expression in the cell membrane regulates signalling pathways".split()
    docs = [" ".join(words[(i + j) % len(words)] for j in range(args.doc_len)) for i in range(args.batch)]
    q, d = encoder.tokenize([f"query {i} about proteins" for i in range(args.batch)], "query"), \
        encoder.tokenize(docs, "doc")
    print(f"{args.model}: batch {args.batch}, doc tokens {d['input_ids'].shape[1]}, "
          f"{torch.get_num_threads()} threads")
    fp32 = step_seconds(encoder, q, d, None, args.steps)
    bf16 = step_seconds(encoder, q, d, torch.bfloat16, args.steps)
    print(f"fp32 {fp32:.2f} s/step, bf16 autocast {bf16:.2f} s/step: bf16 / fp32 = {bf16 / fp32:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
