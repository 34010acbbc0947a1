import pytest
import torch

from ragtune.models.pooling import pool

HIDDEN = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]],
                       [[5.0, 1.0], [7.0, 3.0], [2.0, 8.0]]])  # (B=2, T=3, H=2)
RIGHT_PAD = torch.tensor([[1, 1, 0], [1, 1, 1]])
LEFT_PAD = torch.tensor([[0, 1, 1], [1, 1, 1]])


def test_cls_mean_max_by_hand():
    assert torch.equal(pool(HIDDEN, RIGHT_PAD, "cls"), torch.tensor([[1.0, 2.0], [5.0, 1.0]]))
    assert torch.allclose(pool(HIDDEN, RIGHT_PAD, "mean"), torch.tensor([[2.0, 3.0], [14 / 3, 4.0]]))
    assert torch.equal(pool(HIDDEN, RIGHT_PAD, "max"), torch.tensor([[3.0, 4.0], [7.0, 8.0]]))


def test_last_token_under_right_and_left_padding():
    assert torch.equal(pool(HIDDEN, RIGHT_PAD, "last"), torch.tensor([[3.0, 4.0], [2.0, 8.0]]))
    assert torch.equal(pool(HIDDEN, LEFT_PAD, "last"), torch.tensor([[9.0, 9.0], [2.0, 8.0]]))


def test_padding_never_leaks_into_mean_or_max():
    hidden = HIDDEN.clone()
    hidden[0, 2] = 1e6  # a padded position
    assert torch.allclose(pool(hidden, RIGHT_PAD, "mean")[0], torch.tensor([2.0, 3.0]))
    assert torch.equal(pool(hidden, RIGHT_PAD, "max")[0], torch.tensor([3.0, 4.0]))


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown pooling 'avg'"):
        pool(HIDDEN, RIGHT_PAD, "avg")
