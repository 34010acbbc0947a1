"""Does `torch.compile` speed up the MiniLM encoder on this CPU? Eager vs compiled, same process.

    python -m experiments.bench.compile_check [--batch 16] [--length 256] [--threads 1] [--repeats 3]

Random token ids of one fixed shape (batch x length, no padding). Rows: the forward in inference
mode, and a training step (forward + backward of the summed embeddings, batch/2 sequences, dropout
on), each eager and `torch.compile(dynamic=False)`, alternated per repeat; `--dynamic` compiles
with `dynamic=True` instead. The first compiled call (the compile itself) is timed separately.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ragtune.config import ModelConfig
from ragtune.models.encoder import Encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dynamic", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = Encoder.from_config(ModelConfig(name="minilm"))
    ids = torch.randint(1000, 20000, (args.batch, args.length))
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    half = args.batch // 2

    def forward(m):
        encoder.eval()
        with torch.inference_mode():
            m(ids, mask, types)

    def train_step(m):
        encoder.train()
        m(ids[:half], mask[:half], types[:half]).sum().backward()

    for name, work in (("forward", forward), ("train step", train_step)):
        torch._dynamo.reset()
        compiled = torch.compile(encoder, dynamic=args.dynamic)
        start = time.perf_counter()
        work(compiled)
        compile_seconds = time.perf_counter() - start
        times = {"eager": [], "compiled": []}
        for _ in range(args.repeats):
            for label, m in (("eager", encoder), ("compiled", compiled)):
                start = time.perf_counter()
                work(m)
                times[label].append(time.perf_counter() - start)
        eager, comp = statistics.median(times["eager"]), statistics.median(times["compiled"])
        shown = args.batch if name == "forward" else half
        print(f"{name:10s} batch {shown} x {args.length}, {args.threads} thread(s), "
              f"dynamic={args.dynamic}: eager {eager:.3f} s, compiled {comp:.3f} s (median of {args.repeats}), "
              f"speed-up {eager / comp:.3f}x; first compiled call (compile) {compile_seconds:.1f} s")


if __name__ == "__main__":
    main()
