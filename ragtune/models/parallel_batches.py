"""The batches of one inference call, run side by side on a CPU: one batch per core, one thread per op.

torch (and onnxruntime) split every op of a batch over the cores, and the cores wait on each other at
the end of each op; on the small ops of a small encoder that waiting is a large share of the time.
Handing each core whole batches instead (a thread per core, each op single-threaded inside it) keeps
the cores busy and each batch's activations in its own core's cache. README (Inference) has the
measured difference. On a GPU, with one thread, or with a single batch, batches run one after another
with the usual intra-op threads, as before.

Results are the same either way: each batch is still one forward of the same padded tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

Batch = TypeVar("Batch")
Out = TypeVar("Out")


def even_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`order` cut into the fewest batches of at most `batch_size`, sizes differing by at most one: a
    reranker's top 50 at batch 16 is 13, 13, 12, 12 (two batches per core on two cores), not 16, 16,
    16, 2 (one core idle while the other runs its second 16)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return np.array_split(order, -(-len(order) // batch_size)) if len(order) else []


def cpu_workers(device: torch.device, n_batches: int) -> int:
    """How many batches run at once: torch's thread count on a CPU (at most one per batch), else 1."""
    return max(1, min(torch.get_num_threads(), n_batches)) if device.type == "cpu" else 1


_pools: dict[int, ThreadPoolExecutor] = {}  # by worker count, kept between calls (new threads cost a few %)


def _workers_pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="ragtune-batch")
    return _pools[workers]


def map_batches(fn: Callable[[Batch], Out], batches: Sequence[Batch], device: torch.device) -> Iterator[Out]:
    """`fn(batch)` for each batch, results in input order; on a CPU, `cpu_workers` batches at a time.

    While the workers run, torch's intra-op threads are 1 (restored after), so the workers do not
    oversubscribe the cores; onnxruntime forwards follow the same count (`backends.onnx_forward`).
    Each worker runs in inference mode, which (like grad mode) is per thread.
    """
    workers = cpu_workers(device, len(batches))
    if workers == 1:
        yield from map(fn, batches)
        return

    def run(batch: Batch) -> Out:
        with torch.inference_mode():
            return fn(batch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield from _workers_pool(workers).map(run, batches)
    finally:
        torch.set_num_threads(threads)
