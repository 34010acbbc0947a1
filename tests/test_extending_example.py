"""docs/EXTENDING.md's examples: Poly-1 (a score loss with a new knob) checked by hand and reached,
knob included, by the bi-encoder, adapter and reranker tasks; the debiased contrastive loss by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from ragtune.config import (
    AdapterConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    MiningConfig,
    ModelConfig,
    RerankConfig,
    TrainConfig,
)
from ragtune.losses import LOSSES, LossSpec, compute_loss, debiased_info_nce, info_nce, listwise_ce, poly1_ce

Q_EMB = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two queries, each identical to its positive:
D_EMB = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # s = [[1, 0], [0, 1]] / tau, N = 1 negative each


# ---------------------------------------------------------------- Poly-1, by hand


def test_poly1_hand_computed_value():
    # scores [2, 0, 0]: p = e^2 / (e^2 + 2) = 0.78699; L = -log p + 0.5 (1 - p) = 0.23955 + 0.10651
    p = math.exp(2) / (math.exp(2) + 2)
    expected = -math.log(p) + 0.5 * (1 - p)
    assert expected == pytest.approx(0.34605, abs=1e-5)
    assert poly1_ce(torch.tensor([[2.0, 0.0, 0.0]]), poly_epsilon=0.5).item() == pytest.approx(expected, abs=1e-6)


def test_poly1_with_epsilon_zero_is_listwise_ce():
    scores = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    assert poly1_ce(scores, poly_epsilon=0.0).item() == pytest.approx(listwise_ce(scores).item(), abs=1e-6)


def test_the_knob_reaches_the_loss_through_the_dispatcher():
    scores = torch.tensor([[2.0, 0.0, 0.0]])
    for eps in (0.0, 0.5, 3.0):
        got = compute_loss(LossConfig(name="poly1_ce", poly_epsilon=eps), group_size=3, scores=scores)
        assert got.item() == pytest.approx(poly1_ce(scores, poly_epsilon=eps).item(), abs=1e-7)


# ---------------------------------------------------------------- the same loss in three tasks

EPSILON = 0.37  # not the default: the test sees whether the config's value arrives


@pytest.fixture
def spy(monkeypatch):
    """Replaces poly1_ce in the registry by a recorder that still computes the real loss."""
    calls = []

    def recording(scores, poly_epsilon=1.0):
        calls.append((scores.detach().double().numpy(), poly_epsilon))
        return poly1_ce(scores, poly_epsilon)

    monkeypatch.setitem(LOSSES, "poly1_ce", LossSpec(recording, "score"))
    return calls


def by_hand(scores: np.ndarray, eps: float) -> float:
    p = np.exp(scores[:, 0]) / np.exp(scores).sum(axis=1)
    return float(np.mean(-np.log(p) + eps * (1 - p)))


def task_config(task, model_dir, root, tmp_path, **sections) -> ExperimentConfig:
    return ExperimentConfig(
        task=task, output_dir=str(tmp_path / task), seed=3,
        model=ModelConfig(name=str(model_dir), query_max_length=16, doc_max_length=32),
        data=DataConfig(dataset="tiny", data_root=str(root), dev_fraction=0.2, num_negatives=2),
        loss=LossConfig(name="poly1_ce", poly_epsilon=EPSILON),
        train=TrainConfig(epochs=1, batch_size=4),
        eval=EvalConfig(k_values=(1, 5, 10), batch_size=8, dev_pool_top_k=10, cache_dir=str(tmp_path / "cache")),
        log=LogConfig(wandb="disabled"), **sections)


@pytest.mark.parametrize("task, sections", [
    ("biencoder", {"mining": MiningConfig(source="bm25", top_k=20, rank_end=10, num_negatives=4)}),
    ("adapter", {"adapter": AdapterConfig(negatives="hard", num_negatives=2, hard_top_k=10)}),
    ("reranker", {"rerank": RerankConfig(first_stage="dense", group_size=3, hard_depth=10, max_length=48,
                                         query_max_length=16, retrieve_n=10, final_k=10, dev_n=10)}),
])
def test_poly1_trains_unchanged_in_every_task(task, sections, spy, tiny_model_dir, tiny_data_root, tmp_path):
    import importlib

    cfg = task_config(task, tiny_model_dir, tiny_data_root, tmp_path, **sections)
    parts = importlib.import_module(f"ragtune.tasks.{task}").build(cfg, Accelerator(cpu=True))
    loss, _ = parts.step_fn(parts.model, next(iter(parts.train_loader)))
    (scores, eps), = spy
    assert eps == EPSILON and scores.shape == (4, 3)  # 4 queries x [positive, 2 negatives]
    assert loss.item() == pytest.approx(by_hand(scores, EPSILON), rel=1e-5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in parts.model.parameters())


# ---------------------------------------------------------------- the debiased contrastive loss, by hand


def test_debiased_hand_computed_value():
    # tau = 1, tau_plus = 0.1: g = max((e^0 - 0.1 e^1) / 0.9, e^-1) = (1 - 0.1 e) / 0.9 = 0.80908
    # L = -log(e / (e + g)) = log(1 + g / e), the same for both queries by symmetry.
    g = (1 - 0.1 * math.e) / 0.9
    expected = math.log(1 + g / math.e)
    assert expected == pytest.approx(0.26056, abs=1e-5)
    assert debiased_info_nce(Q_EMB, D_EMB, temperature=1.0, tau_plus=0.1).item() == pytest.approx(expected, abs=1e-6)


def test_debiased_floor_applies_when_the_correction_goes_negative():
    # tau_plus = 0.5: (1 - 0.5 e) / 0.5 < 0, so g = e^-1 and L = log(1 + e^-1 / e) = log(1 + e^-2).
    loss = debiased_info_nce(Q_EMB, D_EMB, temperature=1.0, tau_plus=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


def test_debiased_tau_plus_zero_is_info_nce_with_hard_negatives():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)  # group_size 2: [pos, neg] per query
    got = debiased_info_nce(q, d, temperature=0.05, group_size=2, tau_plus=0.0)
    assert got.item() == pytest.approx(info_nce(q, d, temperature=0.05, group_size=2).item(), rel=1e-5)


def test_registered_by_kind_and_gathering_follows_the_signature():
    assert LOSSES["debiased_info_nce"].fn is debiased_info_nce and LOSSES["debiased_info_nce"].kind == "embedding"
    assert LOSSES["poly1_ce"].kind == "score"
    # target_offset in the signature = sees every process's documents under DDP
    assert LOSSES["debiased_info_nce"].gathers and LOSSES["info_nce"].gathers
    assert not LOSSES["contrastive_margin"].gathers and not LOSSES["poly1_ce"].gathers
    got = compute_loss(LossConfig(name="debiased_info_nce", tau_plus=0.5), group_size=1, q_emb=Q_EMB, d_emb=D_EMB,
                       temperature=1.0)
    assert got.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)  # tau_plus came from the config
