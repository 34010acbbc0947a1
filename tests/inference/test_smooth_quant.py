"""SmoothQuant scales: the formula, fp32 outputs kept, and calibration choosing the alpha closest to fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ragtune.inference.backends import quantize_linear_int8
from ragtune.inference.smooth_quant import (
    SmoothedLinear,
    calibrate,
    input_channel_absmax,
    smoothed_copy,
    smoothing_scales,
)
from tests.models.test_cross_encoder import tiny_cross_encoder


class Blocks(nn.Module):
    """Two Linear layers named like a transformer's (`layer.i`), and a head that is never smoothed."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.ModuleList([nn.Linear(64, 48), nn.Linear(48, 8)])
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer[1](torch.relu(self.layer[0](x)))).squeeze(-1)


def outlier_inputs(n: int, seed: int) -> torch.Tensor:
    """(n, 10, 64) activations whose channel 3 runs 40x the others' range, as BERT's LayerNorm outputs do."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, 64, generator=g)
    x[..., 3] *= 40
    return x


def test_scales_follow_the_formula():
    absmax = torch.tensor([4.0, 1.0, 0.0])
    weight = torch.tensor([[2.0, 0.5, 1.0], [1.0, -1.0, 3.0]])  # column maxima 2, 1, 3
    s = smoothing_scales(absmax, weight, alpha=0.5)
    # s_j = max|x_j|^0.5 / max|W_j|^0.5; a channel never seen keeps s = 1
    assert torch.allclose(s, torch.tensor([(4 / 2) ** 0.5, 1.0, 1.0]))
    assert torch.allclose(smoothing_scales(absmax, weight, alpha=1.0)[:2], torch.tensor([4.0, 1.0]))


def test_absmax_is_the_largest_input_per_channel():
    model, x = Blocks(), outlier_inputs(3, seed=1)
    absmax = input_channel_absmax(model, lambda m: [m(batch) for batch in x.split(1)])
    assert set(absmax) == {"layer.0", "layer.1"}  # the head is left alone
    assert torch.equal(absmax["layer.0"], x.abs().reshape(-1, 64).amax(0))
    hidden = torch.relu(model.layer[0](x))
    assert torch.allclose(absmax["layer.1"], hidden.abs().reshape(-1, 48).amax(0))


def test_smoothing_keeps_fp32_outputs_of_a_bert():
    model = tiny_cross_encoder()
    batch = model.tokenize(["w1 w2", "w3"], ["w4 w5 w6", "w7 w8"])
    absmax = input_channel_absmax(model, lambda m: m(**batch))
    assert len(absmax) == 2 * 6  # q, k, v, attention out, FFN in, FFN out in each of the 2 layers
    smoothed = smoothed_copy(model, absmax, alpha=0.8)
    assert sum(isinstance(m, SmoothedLinear) for m in smoothed.modules()) == 12
    with torch.no_grad():
        assert torch.allclose(smoothed(**batch), model(**batch), atol=1e-5)
        assert not any(isinstance(m, SmoothedLinear) for m in model.modules())  # the source is untouched


def test_smoothing_brings_int8_closer_to_fp32_on_outlier_channels():
    model = Blocks().eval()
    calibration, held = outlier_inputs(8, seed=2), outlier_inputs(8, seed=3)
    absmax = input_channel_absmax(model, lambda m: m(calibration))
    with torch.no_grad():
        reference = model(held)
        plain = (quantize_linear_int8(model)(held) - reference).abs().mean()
        smooth = (quantize_linear_int8(smoothed_copy(model, absmax, 0.8))(held) - reference).abs().mean()
    assert smooth < plain / 2


def test_calibration_picks_the_alpha_closest_to_fp32():
    model = Blocks().eval()
    calibration, held = outlier_inputs(8, seed=2), outlier_inputs(8, seed=3)

    def score(m: nn.Module, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return m(x).reshape(-1).numpy()

    quantized, report = calibrate(model, score, calibration, held, (0.5, 0.8, 1.0), quantize_linear_int8)
    assert set(report.mean_abs_error) == {0.0, 0.5, 0.8, 1.0} and report.alpha != 0.0
    assert report.mean_abs_error[report.alpha] == min(report.mean_abs_error.values())
    # each error is what that alpha's int8 model gives on the held pairs, measured here afresh
    reference = score(model, held)
    absmax = input_channel_absmax(model, lambda m: m(calibration))
    for alpha, error in report.mean_abs_error.items():
        candidate = quantize_linear_int8(smoothed_copy(model, absmax, alpha) if alpha else model)
        assert error == pytest.approx(float(np.abs(score(candidate, held) - reference).mean()), rel=1e-6)
    assert np.abs(score(quantized, held) - reference).mean() == pytest.approx(report.mean_abs_error[report.alpha])
    assert (report.calibration_pairs, report.fidelity_pairs) == (80, 80)
