"""MaxSim and its masks against hand computation."""

from __future__ import annotations

import torch

from ragtune.retrieval.maxsim import maxsim, maxsim_grouped, maxsim_pairs, token_mask


def unit(*rows):
    t = torch.tensor(rows, dtype=torch.float32)
    norms = t.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, t / norms.clamp(min=1e-12), t)


# two queries of 2-d tokens (the second has one padding row), three documents (padding rows too)
Q = torch.stack([unit([1, 0], [0, 1]), unit([1, 1], [0, 0])])
D = torch.stack([unit([1, 0], [0, 0], [0, 0]), unit([0, 1], [-1, 0], [0, 0]), unit([-1, 0], [0, -1], [0, 0])])
R = 2 ** -0.5


def test_maxsim_by_hand():
    expected = torch.tensor([
        # q0 = [e1, e2]: d0 = [e1] -> max(1) + max(0) ; d1 = [e2, -e1] -> 0 + 1 ; d2 = [-e1, -e2] -> 0 + 0
        [1 + 0, 0 + 1, 0 + 0],
        # q1 = [(e1+e2)/sqrt2, pad]: d0 -> R ; d1 -> max(R, -R) = R ; d2 -> max(-R, -R) = -R; the pad adds 0
        [R, R, -R],
    ])
    torch.testing.assert_close(maxsim(Q, D), expected)


def test_padding_is_never_the_max_and_query_padding_adds_nothing():
    # d2's tokens all score -R against q1: its zero padding row (dot 0) must not lift it to 0
    assert maxsim(Q[1:], D[2:])[0, 0] < 0
    # q1's padding row is left out: its score equals the score of q1 without the row
    torch.testing.assert_close(maxsim(Q[1:], D), maxsim(Q[1:, :1], D))


def test_token_mask_reads_zero_rows():
    assert token_mask(D).tolist() == [[True, False, False], [True, True, False], [True, True, False]]


def test_grouped_and_pairs_agree_with_the_full_matrix():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 4, 8, generator=g), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(6, 5, 8, generator=g), dim=-1)
    d[1, 3:] = 0
    q[2, 2:] = 0
    full = maxsim(q, d)
    grouped = maxsim_grouped(q, d, group_size=2)  # query i against documents 2i, 2i+1
    torch.testing.assert_close(grouped, torch.stack([full[i, 2 * i:2 * i + 2] for i in range(3)]))
    torch.testing.assert_close(maxsim_pairs(q, d[::2]), torch.stack([full[i, 2 * i] for i in range(3)]))


def test_gradient_flows_to_the_max_token_only():
    q = Q[:1].clone().requires_grad_()
    d = D[:1].clone().requires_grad_()
    maxsim(q, d).sum().backward()
    # s = q0 . d0 + max_j q1 . d_j; d0 is the only token: each query token's gradient is d0
    torch.testing.assert_close(q.grad[0], torch.stack([D[0, 0], D[0, 0]]))
    torch.testing.assert_close(d.grad[0, 0], Q[0, 0] + Q[0, 1])
    assert d.grad[0, 1:].abs().sum() == 0  # padding rows get no gradient
