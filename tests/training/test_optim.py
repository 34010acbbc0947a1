import math

import pytest
import torch

from ragtune.training.optim import lr_lambda, param_groups


def test_warmup_then_linear_decay():
    values = [lr_lambda(s, warmup_steps=4, total_steps=12) for s in range(13)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert values[4] == 1.0 and values[8] == pytest.approx(0.5) and values[12] == 0.0


def test_cosine_and_constant():
    assert lr_lambda(2, 2, 10, "cosine") == 1.0
    assert lr_lambda(6, 2, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_lambda(10, 2, 10, "cosine") == pytest.approx(0.0)
    assert lr_lambda(9, 2, 10, "constant") == 1.0
    assert lr_lambda(0, 0, 10, "linear") == 1.0  # no warmup: full LR at once
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_lambda(5, 0, 10, "step")


def test_no_weight_decay_on_bias_and_layernorm():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert len(no_decay["params"]) == 3  # linear bias, LayerNorm weight and bias
