"""Collective cached encoding: each process encodes a contiguous shard straight into one cache file.

Under torch.distributed with world size W > 1, every rank calls `cached_encode(..., collective=True)`
with the same N texts. Rank r encodes rows [r * N // W, (r + 1) * N // W) (shard sizes differ by at
most one), and the rows go straight into the one `.npy` entry the single-process path would have
written, at the same key:

1. every rank computes the key; `all_gather_object` checks they agree (different texts, weights or
   settings on one rank raise on all ranks instead of writing a mixed file) and whether it is a hit;
2. each rank encodes its shard (`Encoder.encode` sorts and batches within the shard);
3. rank 0 preallocates the file under a temporary name with `open_memmap` and broadcasts the name
   (the broadcast is the barrier: no rank opens the file before it exists);
4. each rank opens it `mmap_mode="r+"`, writes its rows, flushes; an `all_gather_object` of the
   outcomes is the barrier after writing, and a failure on any rank raises on all of them;
5. rank 0 renames the file into place (atomic: an entry is complete or absent), barrier.

So there is no merge copy, and no rank ever holds more than its shard. Every rank then gets the
entry memory-mapped (`load_entry`), like a single-process cache hit. Only object collectives are
used, so gloo on CPU works, and the embeddings never travel through the process group: the cache
folder must be one file system that every rank sees (one machine, or a shared mount), which step 4
checks. A rank that dies mid-encode leaves the others waiting at the next collective until the
launcher (torchrun) stops them or the group's timeout passes; the temporary file is then left over
under a `.tmp<pid>.npy` name, never mistaken for an entry.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch.distributed as dist
from numpy.lib.format import open_memmap

from ragtune.training.distributed import rank, world_size

# Copy-on-write map: reads page in lazily from the file; callers run torch.from_numpy / as_tensor on
# the result, which warn on a read-only array ("r"), and an in-place op must never reach the shared
# entry ("r+" would write it back): with "c" a written page is copied into this process only.
MMAP_MODE = "c"


def load_entry(path: Path) -> np.ndarray:
    """A cache entry memory-mapped copy-on-write: (N, H) float32, nothing read until used."""
    return np.load(path, mmap_mode=MMAP_MODE)


def shard_bounds(n: int, world: int, r: int) -> tuple[int, int]:
    """Rows [start, end) of rank `r` out of `world`: contiguous, sizes differ by at most one."""
    return r * n // world, (r + 1) * n // world


def _all_gather(obj) -> list:
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def _write_rows(tmp: Path, start: int, rows: np.ndarray | None) -> str:
    """Write this rank's rows into the preallocated file; '' or what went wrong."""
    if rows is None:
        return ""
    try:
        out = np.load(tmp, mmap_mode="r+")
        out[start:start + len(rows)] = rows
        out.flush()
        del out  # unmap now: the file is renamed once every rank is done
    except OSError as e:
        return (f"rank {rank()} cannot write {tmp} ({e}): the embedding cache must be on a file system "
                "every process sees")
    return ""


def sharded_cached_encode(encoder, texts: list[str], kind: str, path: Path, batch_size: int,
                          show_progress: bool) -> np.ndarray:
    """Collective: every rank passes the same texts and `path` (its key); returns the entry memory-mapped."""
    me, world = rank(), world_size()
    views = _all_gather((str(path), path.is_file()))
    if len({p for p, _ in views}) != 1:
        raise ValueError(f"collective cached_encode: the {world} processes disagree on the cache entry "
                         f"({sorted({Path(p).name for p, _ in views})}); each must pass the same texts, "
                         "kind, weights and model settings")
    if all(hit for _, hit in views):
        return load_entry(path)

    start, end = shard_bounds(len(texts), world, me)
    rows = encoder.encode(texts[start:end], kind=kind, batch_size=batch_size,
                          show_progress=show_progress and me == 0) if end > start else None
    widths = {w for w in _all_gather(None if rows is None else rows.shape[1]) if w is not None}
    if len(widths) != 1:
        raise ValueError(f"collective cached_encode: embedding widths {sorted(widths)} over {len(texts)} texts; "
                         "expected one width and at least one text")

    box: list[str | None] = [None]
    if me == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        out = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(texts), widths.pop()))
        del out  # header written, rows still zero (a sparse file): each rank fills its own
        box[0] = str(tmp)
    dist.broadcast_object_list(box, src=0)
    tmp = Path(box[0])
    errors = [e for e in _all_gather(_write_rows(tmp, start, rows)) if e]
    if errors:
        if me == 0:
            tmp.unlink(missing_ok=True)
        raise RuntimeError("; ".join(errors))
    if me == 0:
        os.replace(tmp, path)
    dist.barrier()
    return load_entry(path)
