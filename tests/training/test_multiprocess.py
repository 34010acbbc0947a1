"""A real 2-process CPU training run (torchrun, gloo DDP) against one process with the same global batch.

`train.batch_size` is the global batch, split over the processes, and in-batch negatives are gathered
across them, so the two runs compute the same thing: the same loss and gradient norm at every step,
the same dev curve, the same final weights and test metrics. The tiny BERT keeps its pooler (as
MiniLM does; DDP fails on a trainable parameter the loss never reaches) and has no dropout (its masks
depend on the per-process batch shape). BM25 hard negatives are mined on the way (main process only).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.commands.test_run import CONFIG
from tests.conftest import REPO, write_tiny_bert

ARGS = ["--train.max_steps=6", "--train.batch_size=8", "--train.eval_every=3", "--optim.lr=1e-3",
        "--mining.source=bm25", "--data.num_negatives=1", "--eval.baseline=false"]


def _run(tmp_path, env, name, launcher, extra=()):
    out = tmp_path / name
    proc = subprocess.run([*launcher, str(REPO / "experiments" / "run.py"), "--config", str(tmp_path / "c.py"),
                           *ARGS, *extra, f"--output_dir={out}"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, rows


# late_interaction is marked slow (40 s): its gather is checked in CI by tests/training/test_distributed.py
@pytest.mark.parametrize("task", ["biencoder", pytest.param("late_interaction", marks=pytest.mark.slow)])
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, subprocess_env, tiny_data_root, task):
    # late_interaction: MaxSim over token vectors, documents gathered at their fixed padded length
    model = write_tiny_bert(tmp_path / "bert", pooler=True, dropout=0.0)
    (tmp_path / "c.py").write_text(CONFIG.format(task=task, out=str(tmp_path / "unused"), model=str(model),
                                                 root=str(tiny_data_root)))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    extra = ["--loss.temperature=1.0", "--late.rerank_n=10"] if task == "late_interaction" else []
    one, one_rows = _run(tmp_path, subprocess_env, "one", [sys.executable], extra)
    two, two_rows = _run(tmp_path, {**subprocess_env, "ACCELERATE_USE_CPU": "true"}, "two", torchrun, extra)

    def series(rows, key):
        return {r["step"]: r[key] for r in rows if key in r}

    for key in ("train/loss", "train/grad_norm", "dev/ndcg@10"):
        expected, got = series(one_rows, key), series(two_rows, key)
        assert got.keys() == expected.keys() and len(got) >= 2, key
        assert got == pytest.approx(expected, abs=1e-5, rel=1e-5), key  # rel: float32 sums of large norms
    # 24 train records / 8 = 3 steps per epoch: steps 4-6 are epoch 1, so the epoch reached the sampler.
    assert series(one_rows, "train/loss")[4] != pytest.approx(series(one_rows, "train/loss")[1], abs=1e-3)

    results_one = json.loads((one / "results.json").read_text())
    results_two = json.loads((two / "results.json").read_text())
    assert results_two == pytest.approx(results_one, abs=1e-6)
    best_one = torch.load(one / "best" / "weights.pt", weights_only=True)
    best_two = torch.load(two / "best" / "weights.pt", weights_only=True)
    assert best_one.keys() == best_two.keys()
    assert not any("pooler" in k for k in best_one)  # frozen: pooling never reaches it
    for name, value in best_one.items():
        torch.testing.assert_close(best_two[name], value, atol=1e-5, rtol=1e-4)


def test_a_global_batch_that_does_not_split_is_refused(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    (tmp_path / "c.py").write_text(CONFIG.format(task="biencoder", out=str(tmp_path / "out"), model=str(tiny_model_dir),
                                                 root=str(tiny_data_root)))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO / "experiments" / "run.py"), "--config", str(tmp_path / "c.py"),
                           "--train.batch_size=7"], env={**subprocess_env, "ACCELERATE_USE_CPU": "true"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--train.batch_size=7 is the global batch: it must split evenly over the 2 processes" in proc.stderr


def test_the_adapter_trains_under_torchrun_and_its_two_processes_encode_the_corpus_in_halves(
        tmp_path, subprocess_env, tiny_data_root):
    import numpy as np

    from ragtune.config import ModelConfig
    from ragtune.models.encoder import Encoder

    model = write_tiny_bert(tmp_path / "bert", pooler=True, dropout=0.0)
    (tmp_path / "c.py").write_text(CONFIG.format(task="adapter", out=str(tmp_path / "unused"), model=str(model),
                                                 root=str(tiny_data_root)))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    out, cache = tmp_path / "two", tmp_path / "cache"
    # It failed before: step_fn reached model.adapter past the DDP wrapper any torchrun launch puts on.
    proc = subprocess.run([*torchrun, str(REPO / "experiments" / "run.py"), "--config", str(tmp_path / "c.py"),
                           "--train.batch_size=4", "--train.epochs=2", "--adapter.negatives=random",
                           "--adapter.num_negatives=2", f"--output_dir={out}"],
                          env={**subprocess_env, "ACCELERATE_USE_CPU": "true", "RAGTUNE_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "dev/ndcg@10" in r][0] == 0 and any("train/loss" in r for r in rows)
    [entry] = (cache / "embeddings").glob("doc-*.npy")  # written by both processes, one half each
    encoder = Encoder.from_config(ModelConfig(name=str(model), query_max_length=16, doc_max_length=32))
    from ragtune.data.beir import load_beir
    from ragtune.eval.dense import corpus_texts

    texts = corpus_texts(load_beir("tiny", "test", str(tiny_data_root)))[1]
    np.testing.assert_allclose(np.load(entry), encoder.encode(texts, kind="doc", show_progress=False), atol=1e-6)


def test_the_query_tower_trains_under_torchrun_like_one_process(tmp_path, subprocess_env, tiny_data_root):
    """Every query scores the whole frozen corpus, so nothing crosses processes but the gradient mean:
    two processes with the same global batch give one process's losses, weights and test metrics."""
    import random

    model = write_tiny_bert(tmp_path / "bert", pooler=True, dropout=0.0)
    doc_ids = [json.loads(line)["_id"] for line in (tiny_data_root / "tiny" / "corpus.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    lists = tmp_path / "lists.jsonl"
    lists.write_text("".join(json.dumps({"qid": f"q{i}", "query": f"protein galaxy river {i}",
                                         "cand_ids": rng.sample(doc_ids, 4),
                                         "cand_scores": [rng.uniform(0, 10) for _ in range(4)]}) + "\n"
                             for i in range(16)))
    (tmp_path / "c.py").write_text(CONFIG.format(task="query_tower", out=str(tmp_path / "unused"), model=str(model),
                                                 root=str(tiny_data_root)))
    args = ["--train.max_steps=4", "--train.batch_size=8", "--optim.lr=1e-3", "--train.select=last",
            "--loss.name=corpus_kl_distill", f"--data.train_file={lists}", "--data.train_split=none"]

    def run(name, launcher, env):
        out = tmp_path / name
        proc = subprocess.run([*launcher, str(REPO / "experiments" / "run.py"), "--config", str(tmp_path / "c.py"),
                               *args, f"--output_dir={out}"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}, json.loads(
            (out / "results.json").read_text())

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    one_loss, one = run("one", [sys.executable], subprocess_env)
    two_loss, two = run("two", torchrun, {**subprocess_env, "ACCELERATE_USE_CPU": "true"})
    assert len(one_loss) == 4 and two_loss == pytest.approx(one_loss, abs=1e-5, rel=1e-5)
    assert one_loss[4] < one_loss[1]  # the query tower learned the lists
    assert two == pytest.approx(one, abs=1e-6)
