"""GradCache: large-batch in-batch-negative losses in fixed-size micro-batches.

Gao, Zhang, Han, Callan 2021, "Scaling Deep Contrastive Learning Batch Size
under Memory Limited Setup" (arXiv:2101.06983). The loss over a batch of
embeddings is cheap; the encoder activations are what cost memory. So:

1. forward every micro-batch WITHOUT grad, keep only the embeddings;
2. compute the loss on the detached (leaf) embeddings and backprop to them:
   ``dL/d emb`` is the gradient cache;
3. re-forward each micro-batch WITH grad and backprop ``emb.backward(cached_grad)``.

By the chain rule step 3 accumulates exactly the full-batch parameter gradients,
with peak activation memory of one micro-batch. Step 3 must see the same dropout
masks as step 1, so each micro-batch's CPU/CUDA RNG state is saved before its
first forward and replayed (in a forked RNG, leaving the global stream where
step 1 left it) for its second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor

Batch = Mapping[str, Tensor]


def split_batch(batch: Batch, chunk_size: int) -> list[dict[str, Tensor]]:
    """Split a tokenized batch dict along dim 0 into micro-batches of at most ``chunk_size`` rows."""
    n = len(next(iter(batch.values())))
    return [{k: v[i : i + chunk_size] for k, v in batch.items()} for i in range(0, n, chunk_size)]


class _RngState:
    """CPU + CUDA RNG state at construction time, replayable later."""

    def __init__(self, batch: Batch) -> None:
        self.cpu = torch.get_rng_state()
        devices = {v.get_device() for v in batch.values() if isinstance(v, Tensor) and v.is_cuda}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            devices.add(torch.cuda.current_device())  # the model's device, if the batch is on CPU
        self.devices = sorted(devices)
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]

    @contextmanager
    def replay(self) -> Iterator[None]:
        # fork_rng restores the outer state on exit: the replay must not advance the global stream.
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.devices, self.cuda, strict=True):
                torch.cuda.set_rng_state(state, device)
            yield


def _embed_no_grad(encode_fn: Callable[[Batch], Tensor], batches: list[Batch]) -> tuple[Tensor, list[_RngState]]:
    states, embs = [], []
    with torch.no_grad():
        for batch in batches:
            states.append(_RngState(batch))
            embs.append(encode_fn(batch))
    return torch.cat(embs), states  # (sum of micro-batch rows, H)


def grad_cache_step(
    encode_fn_q: Callable[[Batch], Tensor],
    encode_fn_d: Callable[[Batch], Tensor],
    q_batches: list[Batch],
    d_batches: list[Batch],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    backward_fn: Callable[[Tensor], object] = torch.autograd.backward,
) -> Tensor:
    """Accumulate into ``.grad`` the gradients of ``loss_fn(q_emb, d_emb)`` over the full batch.

    ``q_batches`` / ``d_batches``: micro-batches (see :func:`split_batch`) whose
    embeddings, concatenated in order, form ``q_emb`` (Q, H) and ``d_emb``
    (Q*G, H) in the group layout of ``ragtune.losses``. ``encode_fn_*`` map a
    micro-batch to embeddings (the same model for a shared encoder).
    ``loss_fn`` may close over learnable parameters (temperature): they get
    their gradient in step 2. Returns the detached loss; does not step or zero.

    ``backward_fn`` runs the loss backward (step 2), e.g. ``accelerator.backward``,
    so gradient-accumulation division and fp16 loss scaling apply once: they
    flow into the cached embedding grads, and step 3 uses plain autograd.
    Under DDP each step-3 backward all-reduces; the result is still correct,
    but wrapping all but the last micro-batch in ``model.no_sync()`` saves traffic.
    Call ``encode_fn`` inside the same autocast context as the caller wants.
    """
    # 1. Embeddings without activations, remembering each micro-batch's RNG state.
    q_emb, q_states = _embed_no_grad(encode_fn_q, q_batches)
    d_emb, d_states = _embed_no_grad(encode_fn_d, d_batches)

    # 2. Loss on leaf copies -> the gradient cache dL/d_emb.
    q_emb, d_emb = q_emb.requires_grad_(), d_emb.requires_grad_()
    loss = loss_fn(q_emb, d_emb)
    backward_fn(loss)

    # 3. Re-forward with grad under the same RNG state, push the cached grads through.
    for encode_fn, batches, states, grad in (
        (encode_fn_q, q_batches, q_states, q_emb.grad),
        (encode_fn_d, d_batches, d_states, d_emb.grad),
    ):
        start = 0
        for batch, state in zip(batches, states, strict=True):
            with state.replay():
                emb = encode_fn(batch)  # (B, H)
            torch.autograd.backward(emb, grad[start : start + len(emb)])
            start += len(emb)
    return loss.detach()
