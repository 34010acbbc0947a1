"""The PyLate side of experiments/bench/late_interaction.py; runs in .venv-pylate (scripts/setup_pylate.sh).

Imports PyLate, sentence-transformers and torch only, never ragtune: what it measures is PyLate's
own training and encoding. Workers (called through experiments.bench.common's trial runner):

- train: PyLate's ColBERT + Contrastive loss + ColBERTCollator through sentence-transformers'
  Trainer (its documented training path), on the batches the driver wrote, in their order;
- encode: a saved model's token vectors of texts (documents: PyLate drops padding and
  skiplist tokens itself), written as flat float16 vectors + offsets for the driver to score.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def _colbert(path: str, query_length: int, document_length: int, dim: int | None = None):
    from pylate import models

    kwargs = {"embedding_size": dim} if dim else {}
    return models.ColBERT(model_name_or_path=path, device="cpu", query_prefix="", document_prefix="",
                          query_length=query_length, document_length=document_length, do_query_expansion=True,
                          attend_to_expansion_tokens=False, **kwargs)


def train(batches_file: str, model_path: str, out: str, steps: int, lr: float, warmup_ratio: float,
          query_length: int, document_length: int, dim: int, temperature: float, seed: int,
          timed_from_step: int = 2, save_at: tuple[int, ...] = ()) -> dict:
    """Train on the first `steps` batches of `batches_file` (JSONL, one batch per line:
    {"q": [...], "pos": [...], "neg": [...]}); pairs/s over the steps from `timed_from_step` on.
    The model is saved at the end (`<out>/model`) and after each step in `save_at` (`<out>/model-step<n>`)."""
    import torch
    from datasets import Dataset
    from pylate import losses, utils
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from torch.utils.data import BatchSampler, SequentialSampler
    from transformers import TrainerCallback

    from experiments.bench.common import mark_loaded

    torch.manual_seed(seed)
    batches = [json.loads(line) for line in Path(batches_file).read_text().splitlines()][:steps]
    batch_size = len(batches[0]["q"])
    data = Dataset.from_dict({"query": [q for b in batches for q in b["q"]],
                              "positive": [p for b in batches for p in b["pos"]],
                              "negative": [n for b in batches for n in b["neg"]]})
    model = _colbert(model_path, query_length, document_length, dim)
    mark_loaded()

    class SequentialTrainer(SentenceTransformerTrainer):
        """The driver's batches, in the driver's order (ragtune's sampler made them)."""

        def get_batch_sampler(self, dataset, batch_size, drop_last, *args, **kwargs):
            return BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last)

    class Clock(TrainerCallback):
        start = end = None

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == timed_from_step - 1:
                Clock.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            Clock.end = time.perf_counter()
            if state.global_step in save_at:
                model.save(str(Path(out) / f"model-step{state.global_step}"))

    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(out) / "trainer"), per_device_train_batch_size=batch_size, learning_rate=lr,
        warmup_ratio=warmup_ratio, lr_scheduler_type="linear", weight_decay=0.01, max_grad_norm=1.0,
        max_steps=len(batches), logging_steps=10, save_strategy="no", report_to="none", seed=seed,
        dataloader_drop_last=True, use_cpu=True, disable_tqdm=True)
    trainer = SequentialTrainer(model=model, args=args, train_dataset=data,
                                loss=losses.Contrastive(model=model, temperature=temperature),
                                data_collator=utils.ColBERTCollator(model.tokenize), callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    model.save(str(Path(out) / "model"))
    timed_steps = len(batches) - (timed_from_step - 1)
    return {"steps": len(batches), "train_seconds": total, "timed_seconds": Clock.end - Clock.start,
            "pairs_per_s": timed_steps * batch_size / (Clock.end - Clock.start)}


def encode(model_path: str, texts_file: str, out_prefix: str, is_query: bool, query_length: int,
           document_length: int, batch_size: int = 64) -> dict:
    """Token vectors of the texts (JSON list) as flat float16 `<out_prefix>.vectors.npy` + `.offsets.npy`."""
    texts = json.loads(Path(texts_file).read_text())
    model = _colbert(model_path, query_length, document_length)
    start = time.perf_counter()
    parts = model.encode(texts, is_query=is_query, batch_size=batch_size, show_progress_bar=False,
                         convert_to_numpy=True)
    seconds = time.perf_counter() - start
    parts = [np.asarray(p, dtype=np.float32) for p in parts]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    np.save(f"{out_prefix}.vectors.npy", np.concatenate(parts).astype(np.float16))
    np.save(f"{out_prefix}.offsets.npy", offsets)
    return {"texts": len(texts), "encode_seconds": seconds, "texts_per_s": len(texts) / seconds}
