"""Losses against hand-computed values (math / numpy, not the torch code path)."""

import math

import numpy as np
import pytest
import torch

from ragtune.config import ConfigError, LossConfig
from ragtune.losses import (
    LOSSES,
    compute_loss,
    contrastive_margin,
    corpus_kl_distill,
    group_targets,
    grouped_scores,
    info_nce,
    kl_distill,
    listwise_ce,
    margin_mse,
    pairwise_hinge,
    pointwise_bce,
    ranknet,
    triplet,
)

E = math.e


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# Q=2, G=2: query 0 -> docs 0 (pos), 1; query 1 -> docs 2 (pos), 3.
Q2 = [[1.0, 0.0], [0.0, 1.0]]
D4 = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]


def test_group_targets():
    assert group_targets(3, 4).tolist() == [0, 4, 8]


def test_grouped_scores():
    # query 0 scores its own docs 0,1; query 1 its docs 2,3
    assert grouped_scores(t(Q2), t(D4), 2).tolist() == [[1.0, 0.0], [1.0, 0.0]]


def test_info_nce_closed_form():
    # Each query's logits over the 4 docs are a permutation of [1, 0, 0, 1] (tau=1),
    # the target is one of the 1s: loss = log(2e + 2) - 1.
    expected = math.log(2 * E + 2) - 1
    got = info_nce(t(Q2), t(D4), temperature=1.0, group_size=2)
    assert got.item() == pytest.approx(expected, abs=1e-12)
    # tau = 0.5 as a 0-dim tensor: logits double -> log(2e^2 + 2) - 2
    got = info_nce(t(Q2), t(D4), temperature=t(0.5), group_size=2)
    assert got.item() == pytest.approx(math.log(2 * E**2 + 2) - 2, abs=1e-12)


def test_info_nce_symmetric_closed_form():
    # d->q: positives [1,0],[0,1] vs queries: logits [[1,0],[0,1]] -> log(e + 1) - 1
    qd = math.log(2 * E + 2) - 1
    dq = math.log(E + 1) - 1
    got = info_nce(t(Q2), t(D4), temperature=1.0, group_size=2, symmetric=True)
    assert got.item() == pytest.approx((qd + dq) / 2, abs=1e-12)


def _np_info_nce(q, d, tau, g, offset=0):
    losses = []
    for i in range(len(q)):
        logits = [float(np.dot(q[i], d[j])) / tau for j in range(len(d))]
        lse = math.log(sum(math.exp(x) for x in logits))
        losses.append(lse - logits[i * g + offset])
    return sum(losses) / len(losses)


def test_info_nce_random_vs_numpy_and_offset():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(3, 4)), rng.normal(size=(9, 4))
    got = info_nce(t(q), t(d), temperature=0.7, group_size=3)
    assert got.item() == pytest.approx(_np_info_nce(q, d, 0.7, 3), abs=1e-10)
    # last query alone, as if it were rank 1's local batch: offset 2 * G = 6
    got = info_nce(t(q[2:]), t(d), temperature=0.7, group_size=3, target_offset=6)
    assert got.item() == pytest.approx(_np_info_nce(q[2:], d, 0.7, 3, offset=6), abs=1e-10)


def test_triplet_cosine():
    # triplet 1: d(q,p) = 1 - 1/sqrt2, d(q,n) = 1 -> hinge 1 - 1/sqrt2
    # triplet 2: d(q,p) = 0, d(q,n) = 2 -> hinge max(0, -1) = 0
    q, p, n = t([[1, 0], [1, 0]]), t([[1, 1], [2, 0]]), t([[0, 1], [-1, 0]])
    expected = (1 - 1 / math.sqrt(2)) / 2
    assert triplet(q, p, n, margin=1.0).item() == pytest.approx(expected, abs=1e-12)


def test_triplet_euclidean_and_multi_negative():
    # triplet 1: |(3,4)| = 5, |(1,0)| = 1 -> 5 - 1 + 1 = 5; triplet 2: 1 - 3 + 1 < 0 -> 0
    q, p, n = t([[0, 0], [0, 0]]), t([[3, 4], [1, 0]]), t([[1, 0], [0, 3]])
    assert triplet(q, p, n, distance="euclidean").item() == pytest.approx(2.5)
    # (Q, K, H) negatives: query 0 gets both negatives -> mean(5, max(0, 5 - 3 + 1) = 3)
    got = triplet(q[:1], p[:1], t([[[1, 0], [0, 3]]]), distance="euclidean")
    assert got.item() == pytest.approx(4.0)
    with pytest.raises(ValueError):
        triplet(q, p, n, distance="manhattan")


def test_contrastive_margin():
    # query 0 scores [0.5 | 0.4, 0.1]: relu(.2-.5+.4)=.1, relu(.2-.5+.1)=0 -> .1
    # query 1 scores [0.1 | 0.3, 0.0]: relu(.2-.1+.3)=.4, relu(.2-.1+0)=.1 -> .5
    q = t([[1, 0], [0, 1]])
    d = t([[0.5, 0], [0.4, 0], [0.1, 0], [0, 0.1], [0, 0.3], [0, 0.0]])
    got = contrastive_margin(q, d, group_size=3, margin=0.2)
    assert got.item() == pytest.approx((0.1 + 0.5) / 2, abs=1e-12)


SCORES = [[2.0, 1.0, 2.5], [0.0, -1.0, 3.0]]


def test_pairwise_hinge():
    # pairs (pos, neg): (2,1)->0, (2,2.5)->1.5, (0,-1)->0, (0,3)->4
    assert pairwise_hinge(t(SCORES), margin=1.0).item() == pytest.approx(5.5 / 4)


def test_ranknet():
    diffs = [2 - 1, 2 - 2.5, 0 - (-1), 0 - 3]  # pos - neg
    expected = sum(math.log(1 + math.exp(-x)) for x in diffs) / 4
    assert ranknet(t(SCORES)).item() == pytest.approx(expected, abs=1e-12)


def test_listwise_ce():
    expected = 0.0
    for row in SCORES:
        expected += -row[0] + math.log(sum(math.exp(x) for x in row))
    assert listwise_ce(t(SCORES)).item() == pytest.approx(expected / 2, abs=1e-12)


def _np_bce(x, y):
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_pointwise_bce_group_layout_and_labels():
    expected = sum(_np_bce(x, 1.0 if j == 0 else 0.0) for row in SCORES for j, x in enumerate(row)) / 6
    assert pointwise_bce(t(SCORES)).item() == pytest.approx(expected, abs=1e-12)
    scores, labels = [0.5, -2.0, 1.0], [1.0, 0.0, 0.5]
    expected = sum(_np_bce(x, y) for x, y in zip(scores, labels, strict=True)) / 3
    assert pointwise_bce(t(scores), t(labels)).item() == pytest.approx(expected, abs=1e-12)


def test_margin_mse():
    # student margins [1, -0.5], [1, -3]; teacher margins [2, 3], [1, -1]
    # squared diffs 1, 12.25, 0, 4 -> mean 4.3125
    teacher = [[3.0, 1.0, 0.0], [1.0, 0.0, 2.0]]
    assert margin_mse(t(SCORES), t(teacher)).item() == pytest.approx(4.3125)


def test_kl_distill():
    teacher = [[3.0, 1.0, 0.0], [1.0, 0.0, 2.0]]

    def softmax(row, temp):
        z = sum(math.exp(x / temp) for x in row)
        return [math.exp(x / temp) / z for x in row]

    for temp in (1.0, 2.0):
        expected = 0.0
        for s_row, t_row in zip(SCORES, teacher, strict=True):
            p, q = softmax(t_row, temp), softmax(s_row, temp)
            expected += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
        got = kl_distill(t(SCORES), t(teacher), temperature=temp)
        assert got.item() == pytest.approx(expected / 2, abs=1e-12)
    assert kl_distill(t(SCORES), t(SCORES)).item() == pytest.approx(0.0, abs=1e-12)


def _call(name: str, q: torch.Tensor, d: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Call any registered loss from its kind alone (the uniform registry contract)."""
    fn, kind, g = LOSSES[name].fn, LOSSES[name].kind, 3
    if kind == "embedding":
        return fn(q, d, group_size=g, teacher=teacher) if "teacher" in LOSSES[name].params else fn(q, d, group_size=g)
    if kind == "triplet":
        dd = d.view(q.shape[0], g, -1)
        return fn(q, dd[:, 0], dd[:, 1:])
    if kind == "corpus":  # every query against all 6 documents, the teacher over 3 candidates of each
        return fn(q @ d.T, torch.tensor([[0, 2, 5], [1, 3, 4]]), teacher)
    scores = grouped_scores(q, d, g)
    return fn(scores) if kind == "score" else fn(scores, teacher)


def test_registry_complete_and_gradients_flow():
    expected = {
        "info_nce",
        "triplet",
        "contrastive_margin",
        "pointwise_bce",
        "pairwise_hinge",
        "ranknet",
        "listwise_ce",
        "margin_mse",
        "kl_distill",
        "debiased_info_nce",  # the examples of docs/EXTENDING.md
        "poly1_ce",
        "info_nce_kl_distill",
        "corpus_kl_distill",
    }
    assert set(LOSSES) == expected
    assert {spec.kind for spec in LOSSES.values()} == {"embedding", "triplet", "score", "distill", "corpus"}
    torch.manual_seed(0)
    teacher = torch.randn(2, 3)
    for name in LOSSES:
        # small embeddings keep every hinge active, so a zero grad means a bug
        q = (0.1 * torch.randn(2, 4)).requires_grad_()
        d = (0.1 * torch.randn(6, 4)).requires_grad_()
        loss = _call(name, q, d, teacher)
        assert loss.dim() == 0 and torch.isfinite(loss), name
        loss.backward()
        for x in (q, d):
            assert x.grad is not None and torch.isfinite(x.grad).all(), name
            assert x.grad.abs().sum() > 0, name


def test_learnable_temperature_gets_gradient():
    tau = torch.tensor(0.5, requires_grad=True)
    info_nce(torch.randn(2, 4), torch.randn(4, 4), temperature=tau, group_size=2).backward()
    assert tau.grad is not None and tau.grad != 0


def test_info_nce_leaves_known_positives_out_of_the_denominator():
    """Hand computation: 2 queries, 2 docs each ([pos, neg]); query 0's in-batch doc 3 is labelled
    relevant to it (say query 1's hard negative is also a positive of query 0)."""
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])
    tau = 0.5
    known = torch.tensor([[False, False, False, True], [False, False, False, False]])
    s = (q @ d.T / tau).tolist()
    l0 = -math.log(math.exp(s[0][0]) / sum(math.exp(s[0][j]) for j in (0, 1, 2)))  # doc 3 left out
    l1 = -math.log(math.exp(s[1][2]) / sum(math.exp(x) for x in s[1]))
    got = info_nce(q, d, temperature=tau, group_size=2, known_positives=known)
    assert got.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    assert info_nce(q, d, temperature=tau, group_size=2, known_positives=torch.zeros(2, 4, dtype=torch.bool)).item() \
        == pytest.approx(info_nce(q, d, temperature=tau, group_size=2).item(), rel=1e-7)
    # a mask on the target itself is ignored: the target always stays
    target_masked = torch.tensor([[True, False, False, True], [False, False, False, False]])
    assert info_nce(q, d, temperature=tau, group_size=2, known_positives=target_masked).item() == \
        pytest.approx(got.item(), rel=1e-7)


def test_symmetric_info_nce_masks_known_positives_in_the_doc_to_query_direction_too():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    d = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])  # group_size 1: d_i is q_i's positive
    tau = 0.5
    known = torch.zeros(3, 3, dtype=torch.bool)
    known[2, 0] = True  # d_0 (query 0's positive) is also relevant to query 2
    s = (q @ d.T / tau).tolist()  # s[i][j] = q_i . d_j
    lqd = [-math.log(math.exp(s[i][i]) / sum(math.exp(s[i][j]) for j in range(3) if not known[i, j]))
           for i in range(3)]
    # doc -> query: p_i against queries k; p_0 is not a negative of q_2
    ldq = [-math.log(math.exp(s[i][i]) / sum(math.exp(s[k][i]) for k in range(3) if not known[k, i]))
           for i in range(3)]
    got = info_nce(q, d, temperature=tau, group_size=1, symmetric=True, known_positives=known)
    assert got.item() == pytest.approx((sum(lqd) / 3 + sum(ldq) / 3) / 2, rel=1e-6)


def test_info_nce_kl_distill_is_info_nce_plus_the_groups_kl_by_hand():
    import torch.nn.functional as F

    from ragtune.config import ConfigError, LossConfig
    from ragtune.losses import compute_loss, info_nce_kl_distill

    torch.manual_seed(0)
    q = F.normalize(torch.randn(3, 8), dim=-1)
    d = F.normalize(torch.randn(6, 8), dim=-1)  # groups [pos, neg] per query
    t = torch.tensor([[4.0, 1.0], [2.0, 2.5], [0.0, -3.0]])
    tau, lam = 0.05, 0.7
    logits = q @ d.T / tau
    contrast = -sum(torch.log_softmax(logits[i], 0)[2 * i] for i in range(3)) / 3
    kl = 0.0
    for i in range(3):
        s = torch.stack([q[i] @ d[2 * i], q[i] @ d[2 * i + 1]]) / tau
        p = torch.softmax(t[i], 0)
        kl += (p * (torch.log(p) - torch.log_softmax(s, 0))).sum()
    expected = contrast + lam * kl / 3
    got = info_nce_kl_distill(q, d, t, temperature=tau, group_size=2, distill_weight=lam)
    torch.testing.assert_close(got, expected)
    via = compute_loss(LossConfig(name="info_nce_kl_distill", distill_weight=lam), group_size=2, q_emb=q, d_emb=d,
                       temperature=tau, teacher=t)
    torch.testing.assert_close(via, expected)
    # under DDP the local groups sit at target_offset among every process's documents
    other = F.normalize(torch.randn(4, 8), dim=-1)
    gathered = torch.cat([other, d])
    shifted = info_nce_kl_distill(q, gathered, t, temperature=tau, group_size=2, distill_weight=lam, target_offset=4)
    contrast_g = -sum(torch.log_softmax(q[i] @ gathered.T / tau, 0)[4 + 2 * i] for i in range(3)) / 3
    torch.testing.assert_close(shifted, contrast_g + lam * kl / 3)
    with pytest.raises(ConfigError, match="needs teacher scores"):
        compute_loss(LossConfig(name="info_nce_kl_distill"), group_size=2, q_emb=q, d_emb=d, temperature=tau)


def test_corpus_kl_distill_is_the_formula_summed_by_hand():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 7), torch.randn(3, 2)
    cand = torch.tensor([[0, 4], [6, 1], [2, 3]])
    expected = 0.0
    for i in range(3):
        z = sum(math.exp(v) for v in student[i].tolist())  # the student's softmax spans all 7 documents
        zt = sum(math.exp(v) for v in teacher[i].tolist())  # the teacher's only its 2 candidates
        for k in range(2):
            p = math.exp(teacher[i, k].item()) / zt
            q = math.exp(student[i, cand[i, k]].item()) / z
            expected += p * (math.log(p) - math.log(q)) / 3
    assert corpus_kl_distill(student, cand, teacher).item() == pytest.approx(expected, rel=1e-5)
    cfg = LossConfig(name="corpus_kl_distill")
    via = compute_loss(cfg, group_size=1, scores=student, candidates=cand, teacher=teacher)
    assert via.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="whole corpus"):
        compute_loss(cfg, group_size=1, scores=student, teacher=teacher)


def test_corpus_kl_distill_is_zero_only_when_nothing_outside_the_list_has_mass():
    teacher, cand = torch.tensor([[2.0, 0.0]]), torch.tensor([[0, 1]])
    inside = torch.tensor([[2.0, 0.0, -1e4, -1e4]])  # the teacher's logits on its list, nothing elsewhere
    flat_tail = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    assert corpus_kl_distill(inside, cand, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert corpus_kl_distill(flat_tail, cand, teacher).item() > 0.1
