"""A cross-encoder reranker: `[CLS] q [SEP] d [SEP]` -> one relevance logit.

The model IS an HF `AutoModelForSequenceClassification` with `num_labels=1`, initialised from
any encoder's weights (e.g. the packaged MiniLM) with a fresh one-logit head. So export is
free: `AutoModelForSequenceClassification.from_pretrained(saved_dir)` gives the same logits.
Truncation keeps the query whole (up to `query_max_length` tokens) and cuts the document.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ragtune.data.beir import Doc
from ragtune.models.encoder import resolve_model_path
from ragtune.models.parallel_batches import even_batches, map_batches

CROSS_ENCODER_META = "ragtune_cross_encoder.json"


def format_doc(doc: Doc, template: str = "{title} {text}") -> str:
    """Render a document for the reranker; a missing title leaves no dangling separator."""
    if not doc.title:
        return doc.text
    return template.format(title=doc.title, text=doc.text).strip()


class CrossEncoder(nn.Module):
    """Scores (query, document) pairs jointly; returns logits, never losses."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 256, query_max_length: int = 64,
                 doc_template: str = "{title} {text}"):
        super().__init__()
        if query_max_length + 3 >= max_length:  # [CLS] q [SEP] d [SEP] needs room for d
            raise ValueError(f"query_max_length={query_max_length} leaves no room for the document "
                             f"within max_length={max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.doc_template = doc_template

    @classmethod
    def from_pretrained(cls, name: str, **kwargs) -> CrossEncoder:
        """From an alias ('minilm'), an HF encoder folder (fresh head) or a saved reranker."""
        path = resolve_model_path(name)
        meta = path / CROSS_ENCODER_META
        if meta.is_file():  # a saved reranker keeps its own formatting unless overridden
            kwargs = {**json.loads(meta.read_text()), **kwargs}
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        return cls(model, AutoTokenizer.from_pretrained(path), **kwargs)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        meta = {"max_length": self.max_length, "query_max_length": self.query_max_length,
                "doc_template": self.doc_template}
        (path / CROSS_ENCODER_META).write_text(json.dumps(meta, indent=2) + "\n")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(B, T) pair tokens -> (B,) logits."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits.squeeze(-1)

    def _pair_ids(self, queries: list[str], docs: list[str]) -> dict[str, list]:
        """Unpadded pair encodings: the query is cut to query_max_length first, so that
        `only_second` truncation can always fit it and cuts the document alone."""
        q_ids = self.tokenizer(queries, add_special_tokens=False)["input_ids"]
        # Only over-long queries go through a decode round trip (rare; keeps the text exact otherwise).
        q_text = [q if len(ids) <= self.query_max_length else self.tokenizer.decode(ids[:self.query_max_length])
                  for q, ids in zip(queries, q_ids, strict=True)]
        return self.tokenizer(q_text, docs, truncation="only_second", max_length=self.max_length)

    def tokenize(self, queries: list[str], docs: list[str]) -> dict[str, torch.Tensor]:
        """Pairs padded to the longest in the batch: {'input_ids': (B, T), ...}."""
        return dict(self.tokenizer.pad(self._pair_ids(queries, docs), return_tensors="pt"))

    @torch.inference_mode()
    def score(self, queries: list[str], docs: list[str], batch_size: int = 16,
              show_progress: bool = False) -> np.ndarray:
        """(N,) float32 logits for the pairs (queries[i], docs[i]), in input order.

        Pairs are sorted by length so each batch pads to a similar length.
        """
        def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
            return self(**{k: v.to(self.device) for k, v in batch.items()}).float().cpu().numpy()

        was_training = self.training
        self.eval()
        out = self.score_with(forward, queries, docs, batch_size, show_progress)
        self.train(was_training)
        return out

    def score_with(self, forward, queries: list[str], docs: list[str], batch_size: int,
                   show_progress: bool, device: torch.device | None = None) -> np.ndarray:
        """`score`'s batching with another forward: `forward(padded batch of CPU tensors) -> (B,) float32`
        (the int8 and ONNX backends of ragtune/inference/backends.py). `device` is where the forward
        runs (default: the model's); on a CPU the batches run one per core."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries for {len(docs)} docs")
        tokens = self._pair_ids(queries, docs)
        order = np.argsort([-len(ids) for ids in tokens["input_ids"]], kind="stable")
        out = np.empty(len(queries), dtype=np.float32)
        batches = even_batches(order, batch_size)

        def run(idx: np.ndarray) -> np.ndarray:
            return forward(dict(self.tokenizer.pad({k: [tokens[k][i] for i in idx] for k in tokens.keys()},
                                                   return_tensors="pt")))

        results = map_batches(run, batches, device or self.device)
        for idx, scores in tqdm(zip(batches, results, strict=True), total=len(batches), desc="rerank",
                                disable=not show_progress, unit="batch"):
            out[idx] = scores
        return out
