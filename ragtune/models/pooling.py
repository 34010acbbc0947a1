"""Pooling token states into one vector per sequence: pool(hidden, mask, method)."""

from __future__ import annotations

import torch

POOLING_METHODS = ("cls", "mean", "max", "last")


def pool(hidden: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    """(B, T, H) token states + (B, T) attention mask -> (B, H).

    cls: the first token (BERT-style; assumes right padding, as BERT tokenizers do).
    mean: average over real tokens.  max: elementwise max over real tokens.
    last: the last real token, found from the mask, so it is right under left or right padding
    (decoder embedders such as e5-mistral pad on the left).
    """
    mask = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    if method == "cls":
        return hidden[:, 0]
    if method == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if method == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(1).values
    if method == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device)  # (T,)
        last = (mask.squeeze(-1) * positions).argmax(1)  # (B,) index of the last real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling '{method}'; choose from {POOLING_METHODS}")
