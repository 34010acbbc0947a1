"""A shared-weights bi-encoder: one Encoder for queries and documents, plus the temperature.

The temperature lives here, not in the loss, because it can be learned (CLIP-style,
parameterised as log(1/t) so it stays positive). Losses receive it as a tensor.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ragtune.models.encoder import Encoder


class BiEncoder(nn.Module):
    def __init__(self, encoder: Encoder, temperature: float = 0.05, learn_temperature: bool = False):
        super().__init__()
        self.encoder = encoder
        log_scale = torch.tensor(math.log(1.0 / temperature))
        self.log_scale = nn.Parameter(log_scale, requires_grad=learn_temperature)

    @property
    def temperature(self) -> torch.Tensor:
        return torch.exp(-self.log_scale)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(B, T) tokens -> (B, H) embeddings; queries and documents share the weights."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
