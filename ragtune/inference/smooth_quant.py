"""SmoothQuant-style scales before int8 Linear layers, calibrated on unlabelled pairs.

Dynamic int8 quantizes a Linear's whole input with one scale per batch, so a few outlier channels
(BERT's LayerNorm outputs carry some with many times the median channel's range) leave the other
channels a handful of levels. SmoothQuant (Xiao et al., 2023) moves that range into the weights:

    y = x W^T = (x / s) (W diag(s))^T,    s_j = max|x_j|^alpha / max_i |W_ij|^(1 - alpha)

with max|x_j| the largest |input| of channel j over calibration batches. alpha = 1 flattens the
activations and puts all their range in the weights (quantized per output channel, so a large
column costs every output); smaller alphas split it. In fp32 the product is unchanged.

BERT is post-LN: a LayerNorm's output is also the residual, so `1 / s` cannot be folded into its
gain as in pre-LN models. Each smoothed Linear multiplies its input by `1 / s` itself (one
elementwise product, small next to the matmul).

alpha is chosen from a grid by fidelity to the fp32 model: the mean |int8 logit - fp32 logit| on
pairs other than the calibration ones. The pairs need no labels (ragtune/inference/calibration.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

Pairs = tuple[list[str], list[str]]  # (queries, docs): pair i is (queries[i], docs[i])


class SmoothedLinear(nn.Module):
    """`linear(x * inv_scale)`, where `linear`'s columns were multiplied by `1 / inv_scale`."""

    def __init__(self, linear: nn.Linear, inv_scale: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("inv_scale", inv_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale)


def smoothable(name: str, module: nn.Module) -> bool:
    """The Linear layers of the transformer blocks: the head's (pooler, classifier) see one vector
    per sequence and cost nothing."""
    return isinstance(module, nn.Linear) and ".layer." in f".{name}."


@torch.inference_mode()
def input_channel_absmax(model: nn.Module, run_batches: Callable[[nn.Module], object]) -> dict[str, torch.Tensor]:
    """{Linear name: (in_features,) largest |input| per channel} while `run_batches(model)` runs."""
    absmax: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_module, inputs, _output):
            x = inputs[0].detach()
            peak = x.abs().reshape(-1, x.shape[-1]).amax(0).float()
            absmax[name] = torch.maximum(absmax[name], peak) if name in absmax else peak
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if smoothable(n, m)]
    try:
        run_batches(model)
    finally:
        for h in handles:
            h.remove()
    return absmax


def smoothing_scales(absmax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_j = max|x_j|^alpha / max_i |W_ij|^(1 - alpha); channels never seen (0) keep s = 1."""
    w = weight.detach().abs().amax(0).float().clamp(min=1e-5)
    s = absmax.clamp(min=1e-5) ** alpha / w ** (1 - alpha)
    return torch.where(absmax > 0, s, torch.ones_like(s)).clamp(min=1e-5)


def smoothed_copy(model: nn.Module, absmax: dict[str, torch.Tensor], alpha: float) -> nn.Module:
    """A copy of `model` whose calibrated Linear layers are SmoothedLinear (same fp32 outputs)."""
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    for name, peak in absmax.items():
        linear = modules[name]
        s = smoothing_scales(peak, linear.weight, alpha).to(linear.weight.dtype)
        with torch.no_grad():
            linear.weight.mul_(s)
        parent, attr = name.rsplit(".", 1)
        setattr(modules[parent], attr, SmoothedLinear(linear, 1 / s))
    return out


@dataclass(frozen=True)
class Calibration:
    """What `calibrate` chose and why: mean |int8 - fp32| per alpha on the fidelity pairs; the key 0.0 is
    plain int8 (no smoothing), not the formula at alpha = 0."""

    alpha: float
    mean_abs_error: dict[float, float]
    calibration_pairs: int
    fidelity_pairs: int
    seconds: float = 0.0  # the whole calibration, pairs included (set by its caller)
    cached: bool = False  # read back from the cache rather than measured in this run

    def summary(self) -> dict[str, float]:
        return {"int8_smooth_alpha": self.alpha, "int8_calibration_pairs": self.calibration_pairs,
                "int8_fidelity_pairs": self.fidelity_pairs, "int8_calibration_seconds": self.seconds,
                "int8_calibration_cached": self.cached,
                **{f"int8_mean_abs_error_alpha{a}": e for a, e in self.mean_abs_error.items()}}


def calibrate(model: nn.Module, score: Callable[[nn.Module, Sequence], np.ndarray], calibration: Sequence,
              fidelity: Sequence, alphas: Iterable[float], quantize: Callable[[nn.Module], nn.Module],
              absmax_out: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, Calibration]:
    """The int8 model (from `quantize`) with the alpha whose outputs on `fidelity` are closest to fp32's.

    `score(model, pairs) -> (N,) float32` runs a model on pairs; channel ranges come from `calibration`.
    Plain int8 (key 0.0) is always a candidate, so the result is never further from fp32 than plain int8
    on the fidelity pairs. `absmax_out`, if given, receives the channel ranges (to keep them)."""
    reference = score(model, fidelity)
    calibration_scores = []
    absmax = input_channel_absmax(model, lambda m: calibration_scores.append(score(m, calibration)))
    if absmax_out is not None:
        absmax_out.update(absmax)
    errors, best = {}, None
    for alpha in (0.0, *sorted(set(alphas) - {0.0})):  # 0.0 = plain int8
        candidate = quantize(smoothed_copy(model, absmax, alpha) if alpha else model)
        errors[alpha] = float(np.abs(score(candidate, fidelity) - reference).mean())
        if best is None or errors[alpha] < errors[best[0]]:
            best = (alpha, candidate)
    return best[1], Calibration(best[0], errors, len(calibration_scores[0]), len(reference))
