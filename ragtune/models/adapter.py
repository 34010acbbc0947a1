"""Query-only adapter: a small map applied to frozen query embeddings; documents are never touched.

Because only queries change, the document index (and its cache) built with the frozen encoder
stays valid, and training runs on cached embeddings alone (seconds on a CPU). Every kind starts
as the identity, so an untrained adapter reproduces the frozen encoder exactly:

- ``linear``:   ``f(q) = W q + b``, W (H, H) initialised to I (Chroma's embedding-adapters report).
- ``low_rank``: ``f(q) = q + U (V q) + b``, a rank-r update of the identity; U (H, r) starts at 0.
- ``residual``: ``f(q) = q + W2 gelu(W1 q + b1) + b2``, a bottleneck adapter (Houlsby et al. 2019;
  "Efficient Domain Adaptation of Sentence Embeddings Using Adapters", Schopf et al. 2023); W2 starts at 0.

With ``normalize`` the output is L2-normalised, matching normalised document embeddings.
Export: ``save_adapter`` writes ``adapter.safetensors`` + ``adapter.json``; ``load_adapter`` reads
them back; ``apply_adapter`` maps numpy or torch embeddings; ``AdaptedEncoder`` wraps a base encoder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

ADAPTER_KINDS = ("linear", "low_rank", "residual")
WEIGHTS_FILE = "adapter.safetensors"
META_FILE = "adapter.json"
MAX_LOGIT_SCALE = 100.0  # 1 / temperature capped as in CLIP, so a learned temperature cannot blow up


class QueryAdapter(nn.Module):
    """(B, H) frozen query embeddings -> (B, H) adapted query embeddings."""

    def __init__(self, dim: int, kind: str = "linear", rank: int = 64, bias: bool = False,
                 normalize: bool = True):
        super().__init__()
        if kind not in ADAPTER_KINDS:
            raise ValueError(f"adapter.kind='{kind}' is not one of {ADAPTER_KINDS}")
        if kind != "linear" and not 0 < rank <= dim:
            raise ValueError(f"adapter.rank={rank} must be in [1, {dim}] for kind '{kind}'")
        self.dim, self.kind, self.rank, self.normalize = dim, kind, rank, normalize
        self.has_bias = bias
        if kind == "linear":
            self.weight = nn.Parameter(torch.eye(dim))  # (H, H)
        elif kind == "low_rank":
            # U = 0 makes the update zero at init; V random so U receives a gradient from step one.
            self.down = nn.Parameter(torch.randn(rank, dim) / dim ** 0.5)  # V (r, H)
            self.up = nn.Parameter(torch.zeros(dim, rank))  # U (H, r)
        else:
            self.down = nn.Linear(dim, rank)
            self.up = nn.Linear(rank, dim, bias=False)
            nn.init.zeros_(self.up.weight)
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, q_emb: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            out = q_emb @ self.weight.T  # (B, H)
        elif self.kind == "low_rank":
            out = q_emb + (q_emb @ self.down.T) @ self.up.T  # (B, r) -> (B, H)
        else:
            out = q_emb + self.up(F.gelu(self.down(q_emb)))
        if self.bias is not None:
            out = out + self.bias
        return F.normalize(out, dim=-1) if self.normalize else out

    def meta(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "rank": self.rank, "bias": self.has_bias,
                "normalize": self.normalize}


def adapter_from_config(cfg, dim: int) -> QueryAdapter:
    """Build from an AdapterConfig for embeddings of width `dim`."""
    return QueryAdapter(dim, kind=cfg.kind, rank=cfg.rank, bias=cfg.bias, normalize=cfg.normalize)


def save_adapter(adapter: QueryAdapter, path: str | Path) -> None:
    """Write `<path>/adapter.safetensors` (weights) and `<path>/adapter.json` (kind, dims)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE))
    (path / META_FILE).write_text(json.dumps(adapter.meta(), indent=2) + "\n")


def load_adapter(path: str | Path) -> QueryAdapter:
    """Read a folder written by `save_adapter` (or the .safetensors file inside it)."""
    path = Path(path)
    folder = path.parent if path.suffix == ".safetensors" else path
    if not (folder / META_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder}: expected {META_FILE} and {WEIGHTS_FILE} (written by save_adapter)")
    meta = json.loads((folder / META_FILE).read_text())
    adapter = QueryAdapter(meta["dim"], kind=meta["kind"], rank=meta["rank"], bias=meta["bias"],
                           normalize=meta["normalize"])
    adapter.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return adapter.eval()


def apply_adapter(adapter: QueryAdapter, q_emb: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Adapt (B, H) or (H,) query embeddings; numpy in -> float32 numpy out, torch in -> torch out."""
    is_numpy = isinstance(q_emb, np.ndarray)
    q = torch.as_tensor(q_emb, dtype=torch.float32) if is_numpy else q_emb
    squeeze = q.dim() == 1
    q = q.unsqueeze(0) if squeeze else q
    param = next(adapter.parameters())
    with torch.no_grad():
        out = adapter(q.to(param.device, param.dtype))
    out = out.squeeze(0) if squeeze else out
    return out.cpu().numpy().astype(np.float32) if is_numpy else out.to(q_emb.device)


class AdaptedEncoder:
    """A base Encoder whose query side goes through the adapter; documents use the base encoder."""

    def __init__(self, encoder, adapter: QueryAdapter):
        self.encoder, self.adapter = encoder, adapter.eval()

    @classmethod
    def load(cls, adapter_path: str | Path, encoder) -> AdaptedEncoder:
        """`encoder`: an Encoder instance, or a model name / folder for Encoder.from_config."""
        from ragtune.config import ModelConfig
        from ragtune.models.encoder import Encoder

        if isinstance(encoder, str | Path):
            encoder = Encoder.from_config(ModelConfig(name=str(encoder)))
        return cls(encoder, load_adapter(adapter_path))

    def encode_query(self, texts: list[str], batch_size: int = 128, show_progress: bool = False) -> np.ndarray:
        q_emb = self.encoder.encode(texts, kind="query", batch_size=batch_size, show_progress=show_progress)
        return apply_adapter(self.adapter, q_emb)

    def encode_docs(self, texts: list[str], batch_size: int = 128, show_progress: bool = True) -> np.ndarray:
        return self.encoder.encode(texts, kind="doc", batch_size=batch_size, show_progress=show_progress)

    def encode(self, texts: list[str], kind: str = "doc", **kwargs) -> np.ndarray:
        return self.encode_query(texts, **kwargs) if kind == "query" else self.encode_docs(texts, **kwargs)


class AdapterModel(nn.Module):
    """The trained module: the adapter plus the (optionally learned) InfoNCE temperature."""

    def __init__(self, adapter: nn.Module, temperature: float, learn_temperature: bool):
        super().__init__()
        self.adapter = adapter
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def temperature(self) -> torch.Tensor:
        return 1.0 / self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, q_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(adapted query embeddings, temperature): every trainable parameter is used inside forward, so
        a DistributedDataParallel wrapper (any launch under torchrun / accelerate) syncs their gradients."""
        return self.adapter(q_emb), self.temperature()
