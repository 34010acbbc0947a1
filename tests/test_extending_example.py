"""The worked example of docs/EXTENDING.md: the debiased contrastive loss, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ragtune.losses import LOSS_KINDS, LOSSES, debiased_info_nce, info_nce

Q_EMB = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two queries, each identical to its positive:
D_EMB = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # s = [[1, 0], [0, 1]] / tau, N = 1 negative each


def test_hand_computed_value():
    # tau = 1, tau_plus = 0.1: g = max((e^0 - 0.1 e^1) / 0.9, e^-1) = (1 - 0.1 e) / 0.9 = 0.80908
    # L = -log(e / (e + g)) = log(1 + g / e), the same for both queries by symmetry.
    g = (1 - 0.1 * math.e) / 0.9
    expected = math.log(1 + g / math.e)
    assert expected == pytest.approx(0.26056, abs=1e-5)
    assert debiased_info_nce(Q_EMB, D_EMB, temperature=1.0, tau_plus=0.1).item() == pytest.approx(expected, abs=1e-6)


def test_floor_applies_when_the_correction_goes_negative():
    # tau_plus = 0.5: (1 - 0.5 e) / 0.5 < 0, so g = e^-1 and L = log(1 + e^-1 / e) = log(1 + e^-2).
    loss = debiased_info_nce(Q_EMB, D_EMB, temperature=1.0, tau_plus=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


def test_tau_plus_zero_is_info_nce_with_hard_negatives():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)  # group_size 2: [pos, neg] per query
    got = debiased_info_nce(q, d, temperature=0.05, group_size=2, tau_plus=0.0)
    assert got.item() == pytest.approx(info_nce(q, d, temperature=0.05, group_size=2).item(), rel=1e-5)


def test_registered_as_an_embedding_loss_with_gradients():
    assert LOSSES["debiased_info_nce"] is debiased_info_nce and LOSS_KINDS["debiased_info_nce"] == "embedding"
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    loss = debiased_info_nce(q, torch.nn.functional.normalize(torch.randn(4, 8), dim=-1), temperature=0.02)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
