"""Cross-device negatives: an all-gather that keeps gradients, and rank helpers.

Loss scaling under DDP (verified in tests/training/test_distributed.py to 1e-6)
----------------------------------------------------------------------
``N`` ranks each hold ``Q_l`` queries and their ``Q_l * G`` docs (equal sizes:
use ``drop_last=True``). The single-process loss over the global batch is
``L = 1/(N Q_l) sum_i l_i`` where ``l_i`` depends on query ``i`` and ALL docs.

Recipe: rank ``r`` gathers ``d_emb`` with :func:`gather_with_grad` and computes
the loss over its LOCAL queries against all docs, with targets shifted by
``local_target_offset(Q_l, G)`` (``info_nce(..., target_offset=...)``)::

    L_r = 1/Q_l sum_{i on r} l_i

Why this is exact, with no extra factor: the gather's backward all-reduces
(sums) the gradient w.r.t. the gathered tensor over ranks, so rank ``r``'s docs
receive ``sum_r' dL_r'/d(d_r)`` -- every rank's use of them. The local backward
on rank ``r`` therefore yields the total derivative ``d/dtheta sum_r' L_r'``
restricted to the parameters' uses on rank ``r``; DDP then AVERAGES over ranks::

    g = 1/N sum_r (rank r's grads) = 1/N d/dtheta sum_r L_r = d/dtheta mean_r L_r = dL/dtheta

since ``mean_r L_r = L``. The logged loss is ``mean_r L_r`` (``accelerator.reduce``
with mean), also equal to ``L``. General rule: DDP + this gather gives the
gradient of ``mean_r L_r``, whatever each ``L_r`` is. So computing the FULL
global loss on every rank (gather q_emb too, ``target_offset=0``; needed for the
exact ``symmetric`` InfoNCE) is also exact: ``mean_r L = L``.

Pitfalls: a gather whose backward only keeps this rank's slice WITHOUT the
all-reduce (or ``accelerator.gather``, which has no backward at all) drops the
cross-rank terms ``dL_r'/d(d_r)`` -- not a constant factor, just a wrong
gradient. Manually multiplying the loss by ``N`` (as some code does to undo
DDP's averaging) is only correct for a gather without the all-reduce AND a
loss that is the full global loss on every rank (open_clip's ``local_loss=False``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group is initialised (world size may still be 1)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0: the one process that logs and saves."""
    return rank() == 0


def local_target_offset(num_local_queries: int, group_size: int) -> int:
    """Row of this rank's first positive in the gathered ``d_emb``: ``rank * Q_l * G``."""
    return rank() * num_local_queries * group_size


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0; backward sums grads over ranks, returns this rank's rows."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        ctx.rows = t.shape[0]
        return torch.cat(parts, dim=0)  # (N * B, ...)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # Every rank's loss used our rows: their gradients must all reach us.
        # all_reduce works on every backend (gloo has no reduce_scatter).
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` (B, ...) from all ranks in rank order -> (N * B, ...), keeping gradients.

    Identity when not distributed or world size 1. Every rank must pass the
    same shape. See the module docstring for why the resulting DDP gradient is
    exactly the single-process gradient.
    """
    if world_size() == 1:
        return t
    return _GatherWithGrad.apply(t)
