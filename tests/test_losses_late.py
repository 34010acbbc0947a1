"""The losses on multi-vector (late-interaction) embeddings against a direct implementation:
MaxSim written as loops over tokens, the losses written from their docstring formulas."""

from __future__ import annotations

import math

import pytest
import torch

from ragtune.config import ConfigError, LossConfig
from ragtune.losses import compute_loss, info_nce

Q, G, TQ, TD, H = 3, 2, 4, 5, 6
TAU = 0.5


def _embeddings(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(Q, TQ, H, generator=g, dtype=torch.float64), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(Q * G, TD, H, generator=g, dtype=torch.float64), dim=-1)
    q[0, -1] = 0  # padding rows, as the model lays them out
    d[1, 3:] = 0
    d[4, -1] = 0
    return q.requires_grad_(), d.requires_grad_()


def direct_maxsim(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """s(q, d) = sum over q's tokens of the max over d's tokens, token by token."""
    total = q.new_zeros(())
    for qi in q:
        if qi.abs().sum() == 0:
            continue
        best = None
        for dj in d:
            if dj.abs().sum() == 0:
                continue
            s = (qi * dj).sum()
            best = s if best is None or s > best else best
        total = total + best
    return total


def direct_info_nce(q, d) -> torch.Tensor:
    """-1/Q sum_i log(exp(s_{i,iG}) / sum_j exp(s_ij)), s_ij = maxsim(q_i, d_j) / tau."""
    losses = []
    for i in range(len(q)):
        scores = [direct_maxsim(q[i], dj) / TAU for dj in d]
        log_denominator = torch.log(sum(torch.exp(s) for s in scores))
        losses.append(log_denominator - scores[i * G])
    return sum(losses) / len(losses)


def direct_margin_mse(q, d, teacher) -> torch.Tensor:
    """mean_{i, n} ((s_i0 - s_in) - (t_i0 - t_in))^2 over each query's own group."""
    terms = []
    for i in range(len(q)):
        s = [direct_maxsim(q[i], d[i * G + g]) / TAU for g in range(G)]
        terms += [((s[0] - s[n]) - (teacher[i, 0] - teacher[i, n])) ** 2 for n in range(1, G)]
    return sum(terms) / len(terms)


def _grads(loss, q, d):
    return torch.autograd.grad(loss, (q, d))


def test_info_nce_over_maxsim_matches_the_direct_loss_and_its_gradients():
    q, d = _embeddings()
    got = compute_loss(LossConfig(name="info_nce"), group_size=G, q_emb=q, d_emb=d, temperature=TAU)
    want = direct_info_nce(q, d)
    assert got.item() == pytest.approx(want.item(), abs=1e-10)
    for g, w in zip(_grads(got, q, d), _grads(want, q, d), strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=0)


def test_margin_mse_over_maxsim_matches_the_direct_loss_and_its_gradients():
    q, d = _embeddings(1)
    teacher = torch.tensor([[3.0, 1.0], [0.5, 2.0], [1.0, 1.0]], dtype=torch.float64)
    got = compute_loss(LossConfig(name="margin_mse"), group_size=G, q_emb=q, d_emb=d, temperature=TAU,
                       teacher=teacher)
    want = direct_margin_mse(q, d, teacher)
    assert got.item() == pytest.approx(want.item(), abs=1e-10)
    for g, w in zip(_grads(got, q, d), _grads(want, q, d), strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=0)


def test_known_positives_leave_the_denominator_with_maxsim_too():
    q, d = _embeddings(2)
    known = torch.zeros(Q, Q * G, dtype=torch.bool)
    known[0, 3] = True  # document 3 (query 1's negative) is labelled relevant to query 0
    got = info_nce(q, d, temperature=TAU, group_size=G, known_positives=known)
    rows = []
    for i in range(Q):
        scores = [direct_maxsim(q[i], dj) / TAU for dj in d]
        kept = [s for j, s in enumerate(scores) if not known[i, j]]
        rows.append(torch.log(sum(torch.exp(s) for s in kept)) - scores[i * G])
    assert got.item() == pytest.approx((sum(rows) / Q).item(), abs=1e-10)


def test_symmetric_info_nce_scores_each_positive_against_every_query_by_maxsim():
    q, d = _embeddings(3)
    got = info_nce(q, d, temperature=TAU, group_size=G, symmetric=True)
    dq = []
    for i in range(Q):  # positive p_i against the queries: s_k = maxsim(q_k, p_i) / tau
        s = [direct_maxsim(q[k], d[i * G]) / TAU for k in range(Q)]
        dq.append(torch.log(sum(torch.exp(x) for x in s)) - s[i])
    want = (direct_info_nce(q, d) + sum(dq) / Q) / 2
    assert got.item() == pytest.approx(want.item(), abs=1e-10)


def test_a_distance_loss_on_token_vectors_is_refused():
    q, d = _embeddings()
    with pytest.raises(ConfigError, match="late interaction trains with a score loss"):
        compute_loss(LossConfig(name="triplet"), group_size=G, q_emb=q, d_emb=d)


def test_maxsim_info_nce_closed_form():
    # one query token e1; docs: [e1, pad] (its positive) and [-e1, e2]: scores 1 and 0 (tau = 1)
    q = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    d = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[-1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    got = info_nce(q, d, temperature=1.0, group_size=2)
    assert got.item() == pytest.approx(math.log(math.e + 1) - 1, abs=1e-12)
