"""MaxSim, the late-interaction score (ColBERT, Khattab & Zaharia 2020), as plain functions.

A multi-vector embedding is a (B, T, h) tensor: one vector per token, and a padding or masked
token is a ZERO row (THE convention: models, losses and the token store all keep it). A real
token's vector is L2-normalised, so it is never zero, and the masks below are read off the rows::

    s(q, d) = sum_{i in q's tokens} max_{j in d's tokens} q_i . d_j

A query's zero rows add nothing (they are left out of the sum); a document's zero rows are never
the max (they are left out of it, so a document whose tokens all score below 0 is not lifted to
0 by its padding). A document needs at least one token.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAD_SCORE = -1e4  # a padding row's similarity: below any token's (unit vectors score >= -1)


def token_mask(vectors: Tensor) -> Tensor:
    """(B, T, h) -> (B, T) bool: True for the rows that are tokens (not all zero)."""
    return vectors.abs().amax(dim=-1) > 0


def _reduce(sim: Tensor, q_mask: Tensor, d_mask: Tensor) -> Tensor:
    """sim (..., Tq, Td) with q_mask broadcastable to (..., Tq), d_mask to (..., Td) -> (...)."""
    sim = sim.masked_fill(~d_mask.unsqueeze(-2), float("-inf"))
    best = sim.amax(dim=-1)  # (..., Tq): each query token's best document token
    return best.masked_fill(~q_mask, 0.0).sum(dim=-1)


def maxsim(q: Tensor, d: Tensor) -> Tensor:
    """Every query against every document: (Q, Tq, h), (D, Td, h) -> (Q, D) scores.

    Holds a (Q, D, Tq, Td) similarity tensor: for a whole corpus use `ragtune.retrieval.late`'s
    chunked search, which calls this on blocks."""
    (num_q, q_len, dim), (num_d, d_len) = q.shape, d.shape[:2]
    # The document mask rides in the product as one more dimension (1 for every query row, 0 for a
    # token and PAD_SCORE for padding), so padding is never the max without a pass over the big
    # tensor; finite, so no inf * 0 reaches a gradient.
    q_aug = torch.cat([q, q.new_ones(num_q, q_len, 1)], dim=-1)
    d_aug = torch.cat([d, (~token_mask(d)).to(d.dtype).unsqueeze(-1) * PAD_SCORE], dim=-1)
    # one matrix product over all token pairs, viewed (Q, Tq, D, Td): no permuted copy of the big tensor
    sim = (q_aug.reshape(-1, dim + 1) @ d_aug.reshape(-1, dim + 1).T).view(num_q, q_len, num_d, d_len)
    best = sim.amax(dim=-1)  # (Q, Tq, D): each query token's best token of each document
    return best.masked_fill(~token_mask(q)[:, :, None], 0.0).sum(dim=1)


def maxsim_grouped(q: Tensor, d: Tensor, group_size: int) -> Tensor:
    """Each query against its own group only (the loss layout of ragtune.losses):
    (Q, Tq, h), (Q * G, Td, h) -> (Q, G)."""
    groups = d.reshape(q.shape[0], group_size, *d.shape[1:])  # (Q, G, Td, h)
    sim = torch.einsum("qih,qgjh->qgij", q, groups)
    return _reduce(sim, token_mask(q)[:, None, :], token_mask(groups))


def maxsim_pairs(q: Tensor, d: Tensor) -> Tensor:
    """Row i of q against row i of d: (N, Tq, h), (N, Td, h) -> (N,)."""
    sim = torch.einsum("nih,njh->nij", q, d)
    return _reduce(sim, token_mask(q), token_mask(d))
