"""Tasks: each module builds the `Task` that the one training loop (ragtune/training/loop.py) runs.

A task module exposes `build(cfg, accelerator) -> Task`. The loop never knows what it
trains: it calls `step_fn(model, batch) -> (loss, logs)` and `evaluate(model, split)`.
Register a new task by adding one line to TASKS.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ragtune.config import ConfigError

TASKS = {
    "eval": "ragtune.tasks.dense_eval",  # zero-shot dense retrieval, no training
    "reranker": "ragtune.tasks.reranker",  # cross-encoder: train, then retrieve N -> rerank -> top K
    "rerank_eval": "ragtune.tasks.rerank_eval",  # first stage -> saved reranker or zero-shot QLM, no training
    "adapter": "ragtune.tasks.adapter",  # query-only adapter on frozen, cached embeddings
    "query_tower": "ragtune.tasks.query_tower",  # fine-tune the query encoder against a frozen corpus index
    "biencoder": "ragtune.tasks.biencoder",  # fine-tune a shared-weights bi-encoder
    "late_interaction": "ragtune.tasks.late_interaction",  # ColBERT-style multi-vector model, MaxSim
    "late_eval": "ragtune.tasks.late_eval",  # a saved late-interaction model, evaluation only
    "bm25": "ragtune.tasks.bm25",  # BM25 first stage, evaluation only
    "hybrid": "ragtune.tasks.hybrid",  # BM25 + dense fusion first stage, evaluation only
    "generator": "ragtune.tasks.generator",  # LoRA instruction tuning of a causal LM, grounded answers
}


@dataclass(frozen=True)
class Task:
    """What a run needs from a task: built once, complete, by the task's `build`."""

    model: torch.nn.Module | None  # None: nothing to train or export (e.g. BM25)
    # split -> flat metrics {'ndcg@10': ...}; 'dev' selects checkpoints, the eval split is reported.
    evaluate: Callable[[torch.nn.Module, str], dict[str, float]]
    eval_splits: list[str] = field(default_factory=lambda: ["test"])
    train_loader: Iterable | None = None  # None: an evaluation-only task
    step_fn: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, float]]] | None = None
    step_does_backward: bool = False  # True when step_fn runs backward itself (GradCache)
    # Writes the trained model in its exported form (e.g. an HF folder) under the given dir.
    export: Callable[[torch.nn.Module, Path], None] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # split -> metrics for the `baseline/` rows when "before training" is not evaluate(model) (a
    # reranker's baseline is its first stage alone); also gives evaluation-only tasks a baseline.
    baseline_evaluate: Callable[[str], dict[str, float]] | None = None
    # The documents that were training positives: the run then also reports `<split>_seen_pos` and
    # `<split>_unseen_pos` (eval queries with / without a relevant document among them), since a
    # gain on documents training saw as positives says little about new ones.
    train_positives: frozenset[str] | None = None


def task_module(task: str) -> str:
    """The module of a registered task; an unknown name is a ConfigError naming the closest one."""
    if task not in TASKS:
        import difflib

        close = difflib.get_close_matches(task, list(TASKS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown task '{task}'{hint} (known: {sorted(TASKS)})")
    return TASKS[task]


def build_task(cfg, accelerator) -> Task:
    return importlib.import_module(task_module(cfg.task)).build(cfg, accelerator)
