"""Optimizer parameter groups and learning-rate schedules (pure functions)."""

from __future__ import annotations

import math

import torch

# Weight decay on biases and normalisation weights only shrinks them toward zero for no
# regularisation benefit (the practice of BERT and most fine-tuning recipes).
NO_DECAY_MARKERS = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "ln_")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights, and biases / norm weights / 1-d params without decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or any(marker in name for marker in NO_DECAY_MARKERS):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(step: int, warmup_steps: int, total_steps: int, kind: str = "linear") -> float:
    """Multiplier of the base LR at optimizer step `step` (0-based).

    Linear warmup from 0 to 1 over `warmup_steps`, then
      linear:   1 -> 0 at total_steps,
      cosine:   0.5 * (1 + cos(pi * progress)),
      constant: 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps  # never 0 at step 0: the first update must move the weights
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule '{kind}'; choose linear, cosine or constant")
