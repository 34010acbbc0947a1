"""Zero-shot reranking by query likelihood under a causal LM (UPR; Sachan et al. 2022,
"Improving Passage Retrieval with Zero-Shot Question Generation").

    score(q, d) = 1/|q| sum_t log p(q_t | prompt(d), q_<t)

with prompt(d) = "Passage: {d}\\nPlease write a question based on this passage.\\nQuestion:".
No labels are needed, so it is both a baseline and a teacher when a domain has no qrels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

PROMPT = "Passage: {doc}\nPlease write a question based on this passage.\nQuestion:"


class QLMReranker(nn.Module):
    def __init__(self, model: nn.Module, tokenizer, doc_max_tokens: int = 192, prompt: str = PROMPT):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.doc_max_tokens = doc_max_tokens
        self.prompt = prompt

    def _ids(self, query: str, doc: str) -> tuple[list[int], list[int]]:
        """(prompt ids with the passage cut to doc_max_tokens, query ids)."""
        doc_ids = self.tokenizer(doc, add_special_tokens=False)["input_ids"][: self.doc_max_tokens]
        prompt = self.prompt.format(doc=self.tokenizer.decode(doc_ids))
        return (self.tokenizer(prompt, add_special_tokens=False)["input_ids"],
                self.tokenizer(" " + query.strip(), add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def log_likelihood(self, queries: list[str], docs: list[str]) -> torch.Tensor:
        """(B,) mean log p(query tokens | prompt(doc)) for one padded batch."""
        pairs = [self._ids(q, d) for q, d in zip(queries, docs, strict=True)]
        length = max(len(p) + len(q) for p, q in pairs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Left padding puts every query at the end, so only the last K positions need logits
        # (a (B, T, V) logit tensor over a 49k vocabulary would be most of the memory and time).
        # Rotary positions are relative, so the shift left padding causes changes no score.
        input_ids = torch.full((len(pairs), length), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        target = torch.zeros_like(input_ids, dtype=torch.bool)  # positions holding query tokens
        for i, (p, q) in enumerate(pairs):
            input_ids[i, length - len(p) - len(q):] = torch.tensor(p + q)
            attention[i, length - len(p) - len(q):] = 1
            target[i, length - len(q):] = True
        keep = max(len(q) for _, q in pairs) + 1
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                            logits_to_keep=keep).logits.float().cpu()  # (B, K, V), positions T-K..T-1
        logp = F.log_softmax(logits[:, :-1], dim=-1)  # position t predicts token t+1
        token_logp = logp.gather(-1, input_ids[:, length - keep + 1:, None]).squeeze(-1)  # (B, K-1)
        mask = target[:, length - keep + 1:].float()
        return (token_logp * mask).sum(1) / mask.sum(1).clamp(min=1)

    def score(self, queries: list[str], docs: list[str], batch_size: int = 16,
              show_progress: bool = False) -> np.ndarray:
        """(N,) float32 mean query log-likelihoods, in input order."""
        out = np.empty(len(queries), dtype=np.float32)
        for start in tqdm(range(0, len(queries), batch_size), desc="qlm", disable=not show_progress):
            end = start + batch_size
            out[start:end] = self.log_likelihood(queries[start:end], docs[start:end]).numpy()
        return out
