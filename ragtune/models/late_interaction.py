"""A late-interaction (ColBERT-style) model: one vector per token, scored by MaxSim.

    token states (B, T, H) of any HF encoder -> Linear(H, dim, no bias) -> L2 norm per token
    -> zero rows for tokens that get no vector (padding; document punctuation, as an option)
    -> padded with zero rows to the kind's max length, so every batch of a kind has one shape

The fixed length is what lets GradCache concatenate micro-batches and DDP all-gather documents
from every process unchanged; MaxSim reads padding off the zero rows (ragtune/retrieval/maxsim.py).
Query expansion (ColBERT): a query is padded to late.query_length with [MASK] tokens, whose
vectors score like any other (a learned soft query expansion); by default the encoder's attention
does not see them (late.attend_to_expansion), as in PyLate.

Queries and documents share the weights; the temperature lives here, as in the bi-encoder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import string
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from ragtune.config import ConfigError, LateConfig, ModelConfig
from ragtune.models.encoder import resolve_model_path

LATE_META = "ragtune_late_interaction.json"
PROJECTION_FILE = "projection.safetensors"


class LateInteraction(nn.Module):
    def __init__(self, backbone: nn.Module, tokenizer, model_cfg: ModelConfig, late_cfg: LateConfig,
                 temperature: float = 1.0, learn_temperature: bool = False):
        super().__init__()
        if late_cfg.query_expansion and tokenizer.mask_token_id is None:
            raise ConfigError("late.query_expansion needs a tokenizer with a mask token; set it to false")
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):  # token states only: the pooler never reaches a loss (see Encoder)
            pooler.requires_grad_(False)
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.cfg = model_cfg
        self.late = late_cfg
        self.projection = nn.Linear(backbone.config.hidden_size, late_cfg.dim, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)
        punctuation = tokenizer.convert_tokens_to_ids(list(string.punctuation))
        unk = tokenizer.unk_token_id
        self.register_buffer("punctuation_ids", torch.tensor(sorted({i for i in punctuation if i != unk}),
                                                             dtype=torch.long), persistent=False)

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, late_cfg: LateConfig, seed: int = 0, **kwargs) -> LateInteraction:
        """The encoder's pretrained weights and a projection drawn from `seed` (nn.Linear's init), or the
        trained projection when model.name is a folder this class saved (training goes on from it)."""
        path = resolve_model_path(model_cfg.name)
        backbone = AutoModel.from_pretrained(path, dtype=torch.float32)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = cls(backbone, AutoTokenizer.from_pretrained(path), model_cfg, late_cfg, **kwargs)
        if (path / PROJECTION_FILE).is_file():
            from safetensors.torch import load_file

            weight = load_file(str(path / PROJECTION_FILE))["weight"]
            if weight.shape != model.projection.weight.shape:
                raise ConfigError(f"late.dim={late_cfg.dim}: {path} was trained with {weight.shape[0]}-dim "
                                  "token vectors")
            model.projection.weight.data.copy_(weight)
        return model

    @property
    def temperature(self) -> torch.Tensor:
        return torch.exp(-self.log_scale)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def max_length(self, kind: str) -> int:
        if kind not in ("query", "doc"):
            raise ValueError(f"kind must be 'query' or 'doc', got {kind!r}")
        return self.late.query_length if kind == "query" else self.cfg.doc_max_length

    def forward(self, input_ids, attention_mask, token_type_ids=None, vector_mask=None,
                kind: str = "doc") -> torch.Tensor:
        """(B, T) tokens -> (B, max_length(kind), dim) token vectors, zero rows where no token.

        `vector_mask` (B, T): the tokens that get a vector (from `tokenize`); default the attention mask."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state  # (B, T, H)
        vectors = F.normalize(self.projection(hidden), dim=-1)
        keep = attention_mask if vector_mask is None else vector_mask
        vectors = vectors * keep.unsqueeze(-1).to(vectors.dtype)
        return F.pad(vectors, (0, 0, 0, self.max_length(kind) - vectors.shape[1]))

    def tokenize(self, texts: list[str], kind: str) -> dict[str, torch.Tensor]:
        """Tokens for `forward`, with `vector_mask` saying which get a vector.

        Queries with expansion: padded to late.query_length with [MASK] (all get a vector, the
        expansion is attended to only with late.attend_to_expansion). Documents: padding, and
        punctuation with late.mask_punctuation, get none."""
        prefix = self.cfg.query_prefix if kind == "query" else self.cfg.doc_prefix
        expand = kind == "query" and self.late.query_expansion
        batch = dict(self.tokenizer([prefix + t for t in texts], truncation=True, max_length=self.max_length(kind),
                                    padding="max_length" if expand else True, return_tensors="pt"))
        real = batch["attention_mask"].bool()
        if expand:
            batch["input_ids"] = batch["input_ids"].masked_fill(~real, self.tokenizer.mask_token_id)
            batch["vector_mask"] = torch.ones_like(batch["attention_mask"])
            if self.late.attend_to_expansion:
                batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
        elif kind == "doc" and self.late.mask_punctuation:
            punct = torch.isin(batch["input_ids"], self.punctuation_ids.cpu())
            batch["vector_mask"] = (real & ~punct).long()
        return batch

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: str = "doc", batch_size: int = 64,
               show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (N_tokens, dim) float16, offsets (N + 1,) int64): text i's token vectors are
        vectors[offsets[i]:offsets[i + 1]], zero rows dropped. Texts run sorted by length (less padding)."""
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True,
                                                      max_length=self.max_length(kind))["input_ids"]]
        order = np.argsort([-n for n in lengths], kind="stable")
        was_training = self.training
        self.eval()
        parts: list[np.ndarray | None] = [None] * len(texts)
        for start in tqdm(range(0, len(texts), batch_size), desc=f"encode {kind} tokens",
                          disable=not show_progress, unit="batch"):
            idx = order[start:start + batch_size]
            batch = {k: v.to(self.device) for k, v in self.tokenize([texts[i] for i in idx], kind).items()}
            out = self(**batch, kind=kind).float()
            keep = out.abs().amax(dim=-1) > 0
            for row, i in enumerate(idx):
                parts[i] = out[row][keep[row]].to(torch.float16).cpu().numpy()
        self.train(was_training)
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in parts])
        dim = self.late.dim
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), np.float16)
        return vectors.reshape(-1, dim), offsets

    def encode_queries(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(Q, late.query_length, dim) float32 query vectors, zero rows where no token."""
        with torch.inference_mode():
            was_training = self.training
            self.eval()
            out = [self(**{k: v.to(self.device) for k, v in self.tokenize(texts[i:i + batch_size], "query").items()},
                        kind="query").float().cpu() for i in range(0, len(texts), batch_size)]
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.late.query_length, self.late.dim)

    def save(self, path: str | Path) -> None:
        """HF weights + tokenizer, the projection, and the settings `load` reads back."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        save_file({"weight": self.projection.weight.detach().cpu().contiguous()}, str(path / PROJECTION_FILE))
        meta = {"model": {k: v for k, v in dataclasses.asdict(self.cfg).items() if k != "name"},
                "late": dataclasses.asdict(self.late), "temperature": float(self.temperature)}
        (path / LATE_META).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LateInteraction:
        """A folder written by `save` (or by ragtune.models.export.export_late_interaction)."""
        from safetensors.torch import load_file

        path = Path(path)
        meta_file = path / LATE_META
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path}: no {LATE_META}; not a late-interaction folder written by ragtune")
        meta = json.loads(meta_file.read_text())
        model_cfg = ModelConfig(**{**meta["model"], "name": str(path)})
        late_cfg = LateConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["late"].items()})
        model = cls(AutoModel.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path),
                    model_cfg, late_cfg, temperature=meta.get("temperature", 1.0))
        model.projection.weight.data.copy_(load_file(str(path / PROJECTION_FILE))["weight"])
        return model
