"""On-disk cache of embeddings, keyed by everything that changes them.

The key hashes the model weights (so a fine-tuned model never hits a stale entry), the
pooling / normalisation / prefix / max-length settings, and the texts themselves. Files are
written to a temporary name and renamed, so a crash never leaves a half-written entry.

A hit returns the entry memory-mapped copy-on-write (ragtune/retrieval/sharded.py says why that
mode), so evaluation and mining page a large corpus in as they scan it instead of reading it all
first. `collective=True` under torch.distributed (world size > 1) shares the encoding out: each
process encodes a shard straight into the same entry (ragtune/retrieval/sharded.py); the key and
the file are the ones a single process writes, so either path hits the other's entries.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ragtune.inference.backends import backend_cache_tag, source_and_backend
from ragtune.retrieval.sharded import load_entry, sharded_cached_encode
from ragtune.training.distributed import world_size

CACHE_ENV = "RAGTUNE_CACHE"


def cache_root(cache_dir: str | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get(CACHE_ENV, "~/.cache/ragtune")).expanduser()


def weights_fingerprint(model: torch.nn.Module, skip: tuple[str, ...] = ()) -> str:
    """sha256 over every parameter and buffer (~0.2 s for MiniLM's 90 MB), but those whose names
    start with one of `skip` (weights that never reach the output)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if skip and name.startswith(skip):
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-dim too
    return h.hexdigest()


def texts_fingerprint(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")  # separator: ["ab"] and ["a", "b"] must differ
    return h.hexdigest()


def cache_path(encoder, texts: list[str], kind: str, cache_dir: str | None = None,
               batch_size: int | None = None) -> Path:
    """`<cache root>/embeddings/<kind>-<key>.npy`: where `cached_encode` keeps these embeddings."""
    # Only the settings that shape this kind's embeddings: a new query length keeps the corpus entry.
    other = "doc" if kind == "query" else "query"
    settings = {k: v for k, v in encoder.cfg.__dict__.items() if k != "name" and not k.startswith(other)}
    source, backend = source_and_backend(encoder)
    key = {"weights": weights_fingerprint(source), "settings": settings, "kind": kind,
           "texts": texts_fingerprint(texts)}
    if backend != "torch":  # torch fp32 keys stay as they were before backends existed
        key["backend"] = backend_cache_tag(backend)
    if backend.endswith("int8"):  # activations are quantized per batch: the batches shape the embeddings
        key["batch_size"] = batch_size
        key["batches"] = "even"  # even_batches' split (not the earlier fixed-size one)
    key_src = json.dumps(key, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    return cache_root(cache_dir) / "embeddings" / f"{kind}-{key}.npy"


def cached_encode(encoder, texts: list[str], kind: str, cache_dir: str | None = None,
                  batch_size: int = 128, show_progress: bool = True, collective: bool = False) -> np.ndarray:
    """encoder.encode(texts, kind) through the cache; returns (N, H) float32 (memory-mapped on a hit).

    `collective=True`: every process of the torch.distributed group makes this same call and each
    encodes only its shard. Off by default, because most call sites run on the main process alone
    (final evaluation, mining) and the first collective would wait forever for the other ranks.
    Without a process group, or with one process, it is the single-process path.
    """
    path = cache_path(encoder, texts, kind, cache_dir, batch_size)
    if collective and world_size() > 1:
        return sharded_cached_encode(encoder, texts, kind, path, batch_size, show_progress)
    if path.is_file():
        return load_entry(path)
    emb = encoder.encode(texts, kind=kind, batch_size=batch_size, show_progress=show_progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, emb)
    os.replace(tmp, path)
    return emb
