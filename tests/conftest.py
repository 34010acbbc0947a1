"""Shared fixtures: a tiny random BERT on disk and a tiny BEIR dataset folder."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TOPICS = ["protein", "galaxy", "river", "engine", "violin", "glacier", "vaccine", "orbit", "forest", "market"]
FILLER = ["the", "a", "of", "study", "shows", "new", "results", "about", "with", "data", "and", "in"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own embedding cache, and W&B never starts."""
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.manual_seed(0)


def write_tiny_bert(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0, pooler: bool = False,
                    dropout: float = 0.1, extra_tokens: tuple[str, ...] = ()) -> Path:
    """A random BERT with a word-level vocabulary covering the tiny corpus, saved HF-style.

    `pooler=True` keeps BERT's pooler like real checkpoints (MiniLM) do; `dropout=0` makes runs with
    different per-process batch shapes comparable to the last digit."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in TOPICS for w in (t, t + "s")} | set(FILLER) | {f"w{i}" for i in range(40)})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + list(extra_tokens)
    # transformers 5 takes the vocabulary as a dict (`vocab=`), not a vocab_file path.
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    BertModel(config, add_pooling_layer=pooler).save_pretrained(path)
    return path


def write_tiny_beir(root: Path, name: str = "tiny", n_docs: int = 40, seed: int = 0) -> Path:
    """Docs about one topic each; queries name the topic; train and test splits."""
    rng = random.Random(seed)
    folder = root / name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs, queries, qrels = [], [], {"train": [], "test": []}
    for i in range(n_docs):
        topic = TOPICS[i % len(TOPICS)]
        words = [topic] * 3 + rng.sample(FILLER, 5) + [f"w{i % 40}"]
        rng.shuffle(words)
        docs.append({"_id": f"d{i}", "title": f"{topic} w{i % 40}", "text": " ".join(words)})
        split = "test" if i % 4 == 0 else "train"
        queries.append({"_id": f"q{i}", "text": f"{topic} w{i % 40} {rng.choice(FILLER)}"})
        qrels[split].append((f"q{i}", f"d{i}", 1))
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture
def tiny_data_root(tmp_path) -> Path:
    return write_tiny_beir(tmp_path / "data")


@pytest.fixture
def subprocess_env() -> dict:
    """Environment for running the real entry points in a child process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env
