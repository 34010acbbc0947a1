"""Sharded cached encoding over 2 real gloo processes, against one process's `encoder.encode`.

Each test launches 2 CPU processes once: `torch.multiprocessing.spawn` for the `cached_encode`
API (shard sizes, hit, memmap, uneven and empty shards, ranks that disagree), and torchrun (as
tests/training/test_multiprocess.py launches training) for the `ragtune encode` command. The key
is checked against the pre-sharding formula, written out here, so old cache entries still hit.

Tolerance 1e-6: each shard is length-sorted and batched on its own, so a text can share a batch
(and a padded length) with other texts than in one process; masked padding changes nothing in
exact arithmetic, but other matmul shapes may sum in another order, a float32 rounding-level
difference on unit-norm embeddings.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ragtune.config import ModelConfig
from ragtune.models.encoder import Encoder
from ragtune.retrieval.cache import cache_path, cached_encode
from ragtune.retrieval.sharded import shard_bounds
from tests.commands.test_run import CONFIG

TEXTS = ["protein", "the galaxy of river engine data", "a violin", "study shows new results about forest data and",
         "glacier", "orbit of the vaccine study", "market", "engine engine data with new results", "forest"]  # 9: odd
BATCH = 2  # small: the shards' batches differ from one process's


def _encoder(model_dir, seed: int = 0, **settings) -> Encoder:
    """The tiny BERT has no pooler, so AutoModel initialises one at random: every process seeds alike to
    load the same weights (real checkpoints ship theirs; `ragtune encode` seeds with cfg.seed)."""
    torch.manual_seed(seed)
    return Encoder.from_config(ModelConfig(name=str(model_dir), **{"doc_max_length": 8, **settings}))


def _independent_path(encoder, texts, kind, root) -> str:
    """The cache path written out independently: the weights, the settings of this kind (a query
    setting never keys a document entry, nor the reverse), the kind and the texts."""
    weights = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    text_hash = hashlib.sha256(b"".join(t.encode() + b"\x00" for t in texts)).hexdigest()
    other = {"doc": "query", "query": "doc"}[kind]
    settings = {k: v for k, v in vars(encoder.cfg).items() if k != "name" and not k.startswith(other)}
    src = json.dumps({"weights": weights.hexdigest(), "settings": settings, "kind": kind, "texts": text_hash},
                     sort_keys=True)
    return f"{root}/embeddings/{kind}-{hashlib.sha256(src.encode()).hexdigest()[:32]}.npy"


def _worker(rank: int, world: int, init_file: str, model_dir: str, cache: str, out: str) -> None:
    """One rank: collective calls, recording what this rank encoded and what it got back."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    encoder = _encoder(model_dir)
    encoded: list[int] = []  # texts per encoder.encode call on this rank
    real = encoder.encode
    encoder.encode = lambda texts, **kw: encoded.append(len(texts)) or real(texts, **kw)
    record: dict = {}
    first = cached_encode(encoder, TEXTS, "doc", cache, BATCH, show_progress=False, collective=True)
    record["first"] = {"encoded": list(encoded), "memmap": isinstance(first, np.memmap), "mode": first.mode,
                       "filename": str(first.filename), "rows": first.tolist()}
    second = cached_encode(encoder, TEXTS, "doc", cache, BATCH, show_progress=False, collective=True)
    record["second"] = {"encoded": list(encoded), "memmap": isinstance(second, np.memmap),
                        "filename": str(second.filename)}
    one = cached_encode(encoder, TEXTS[:1], "query", cache, BATCH, show_progress=False, collective=True)
    record["one_text"] = {"encoded": list(encoded), "filename": str(one.filename)}  # rank 0's shard is empty
    try:
        cached_encode(encoder, TEXTS[rank:], "doc", cache, BATCH, show_progress=False, collective=True)
        record["disagree"] = "no error"
    except ValueError as e:
        record["disagree"] = str(e)
    dist.barrier()
    dist.destroy_process_group()
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(record, f)


def test_two_processes_write_the_single_process_entry(tmp_path, tiny_model_dir):
    cache = tmp_path / "shared_cache"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tiny_model_dir), str(cache), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    encoder = _encoder(tiny_model_dir)
    expected = encoder.encode(TEXTS, kind="doc", batch_size=BATCH, show_progress=False)
    path = _independent_path(encoder, TEXTS, "doc", cache)
    assert str(cache_path(encoder, TEXTS, "doc", str(cache))) == path  # sharded and single-process: one key

    # Each rank encoded only its contiguous shard (4 + 5 of 9), into the single-process entry.
    assert [r["first"]["encoded"] for r in ranks] == [[4], [5]]
    assert [shard_bounds(9, 2, r) for r in range(2)] == [(0, 4), (4, 9)]
    on_disk = np.load(path)
    assert on_disk.dtype == np.float32 and on_disk.shape == expected.shape
    assert np.abs(on_disk - expected).max() < 1e-6
    for r in ranks:
        assert r["first"]["memmap"] and r["first"]["mode"] == "c" and r["first"]["filename"] == path
        assert np.array_equal(np.asarray(r["first"]["rows"], dtype=np.float32), on_disk)  # every rank sees all rows
        # The second collective call is a hit: nothing more encoded, the entry memory-mapped again.
        assert r["second"]["encoded"] == r["first"]["encoded"] and r["second"]["memmap"]
        assert r["second"]["filename"] == path
    # One text over two ranks: rank 0's shard is empty (it encodes nothing), rank 1 encodes the text.
    assert [shard_bounds(1, 2, r) for r in range(2)] == [(0, 0), (0, 1)]
    assert [r["one_text"]["encoded"][1:] for r in ranks] == [[], [1]]
    query_path = _independent_path(encoder, TEXTS[:1], "query", cache)
    assert ranks[0]["one_text"]["filename"] == query_path
    assert np.abs(np.load(query_path) - encoder.encode(TEXTS[:1], kind="query", show_progress=False)).max() < 1e-6
    # Ranks passing different texts fail together (no hang, no mixed entry).
    assert all("disagree on the cache entry" in r["disagree"] for r in ranks)
    assert sorted(p.name for p in (cache / "embeddings").iterdir()) == sorted(
        [path.rsplit("/", 1)[1], query_path.rsplit("/", 1)[1]])  # no temporary file left over

    # A single process finds the entry by the same key: a hit, memory-mapped, nothing encoded.
    calls = []
    real = encoder.encode
    encoder.encode = lambda *a, **k: calls.append(1) or real(*a, **k)
    hit = cached_encode(encoder, TEXTS, "doc", str(cache), show_progress=False)
    assert calls == [] and isinstance(hit, np.memmap) and np.array_equal(hit, on_disk)


def test_single_process_hit_is_copy_on_write(tiny_model_dir, tmp_path):
    encoder = _encoder(tiny_model_dir)
    miss = cached_encode(encoder, TEXTS, "doc", str(tmp_path), BATCH, show_progress=False)
    path = _independent_path(encoder, TEXTS, "doc", tmp_path)
    assert not isinstance(miss, np.memmap) and np.array_equal(np.load(path), miss)  # written where it always was
    hit = cached_encode(encoder, TEXTS, "doc", str(tmp_path), BATCH, show_progress=False)
    torch.from_numpy(hit).mul_(0.0)  # writable (no read-only warning), and the file never sees the write
    assert not hit.any() and np.array_equal(np.load(path), miss)


def test_encode_command_under_torchrun_fills_the_cache(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    from ragtune.data.beir import load_beir
    from ragtune.eval.dense import corpus_texts

    (tmp_path / "c.py").write_text(CONFIG.format(task="eval", out=str(tmp_path / "out"), model=str(tiny_model_dir),
                                                 root=str(tiny_data_root)))
    cache = tmp_path / "cmd_cache"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run([*torchrun, "-m", "ragtune.commands.encode", "--config", str(tmp_path / "c.py"),
                           "--queries", f"--eval.cache_dir={cache}"], env=subprocess_env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    encoder = _encoder(tiny_model_dir, seed=7, query_max_length=16, doc_max_length=32)  # CONFIG's seed and lengths
    dataset = load_beir("tiny", "test", str(tiny_data_root))
    _, texts = corpus_texts(dataset)
    queries = [dataset.queries[q] for q in dataset.queries]
    doc_path = _independent_path(encoder, texts, "doc", cache)
    query_path = _independent_path(encoder, queries, "query", cache)
    assert "corpus tiny: 40 docs in " in proc.stdout and "over 2 process(es) -> " + doc_path in proc.stdout
    assert proc.stdout.count("corpus tiny") == 1  # the main process reports, once
    assert f"queries tiny/test: {len(queries)} queries" in proc.stdout and query_path in proc.stdout
    expected = encoder.encode(texts, kind="doc", batch_size=8, show_progress=False)
    assert np.abs(np.load(doc_path) - expected).max() < 1e-6
    assert np.abs(np.load(query_path) - encoder.encode(queries, kind="query", show_progress=False)).max() < 1e-6
