"""GradCache gradients equal plain large-batch gradients on a tiny random BERT."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

from ragtune.losses import info_nce
from ragtune.training import gradcache
from ragtune.training.gradcache import grad_cache_step, split_batch

Q, G, L, CHUNK = 16, 2, 7, 4


def _model() -> BertModel:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.3,  # large, so a dropout mismatch cannot hide under the tolerance
        attention_probs_dropout_prob=0.3,
    )
    return BertModel(cfg, add_pooling_layer=False)  # the pooler is unused: no grads


def _batch(n: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 100, (n, L))
    lengths = torch.randint(3, L + 1, (n,))
    mask = (torch.arange(L) < lengths[:, None]).long()  # ragged rows, right-padded
    return {"input_ids": ids * mask, "attention_mask": mask}


def _data():
    torch.manual_seed(1)
    return _batch(Q), _batch(Q * G)


def _encoder(model: BertModel):
    def encode(batch):
        hidden = model(**batch).last_hidden_state  # (B, L, H)
        m = batch["attention_mask"].unsqueeze(-1).float()  # (B, L, 1)
        return F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)  # mean pooling, (B, H)

    return encode


def _setup():
    model, tau = _model(), torch.nn.Parameter(torch.tensor(0.05))  # learnable temperature

    def loss_fn(q_emb, d_emb):
        return info_nce(q_emb, d_emb, temperature=tau, group_size=G)

    return model, tau, loss_fn


def _grads(model, tau) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()] + [tau.grad.clone()]


def _run_grad_cache(train: bool, seed: int = 2):
    model, tau, loss_fn = _setup()
    model.train(train)
    q, d = _data()
    enc = _encoder(model)
    torch.manual_seed(seed)
    loss = grad_cache_step(enc, enc, split_batch(q, CHUNK), split_batch(d, CHUNK), loss_fn)
    return loss, _grads(model, tau), torch.get_rng_state()


def _assert_same(got, want) -> None:
    (loss, grads), (ref_loss, ref_grads) = got, want
    assert torch.allclose(loss, ref_loss, atol=1e-6), (loss, ref_loss)
    assert len(grads) == len(ref_grads)
    for g, rg in zip(grads, ref_grads, strict=True):
        assert torch.allclose(g, rg, atol=1e-5, rtol=1e-4), (g - rg).abs().max()


def test_split_batch():
    b = {"input_ids": torch.arange(10).view(5, 2), "attention_mask": torch.ones(5, 2)}
    parts = split_batch(b, 2)
    assert [len(p["input_ids"]) for p in parts] == [2, 2, 1]
    assert torch.equal(torch.cat([p["input_ids"] for p in parts]), b["input_ids"])


def test_matches_full_batch_without_dropout():
    model, tau, loss_fn = _setup()
    model.eval()
    q, d = _data()
    enc = _encoder(model)
    loss = loss_fn(enc(q), enc(d))  # the whole batch in one forward
    loss.backward()
    want = (loss.detach(), _grads(model, tau))
    got = _run_grad_cache(train=False)
    _assert_same(got[:2], want)


def _reference_with_dropout(seed: int = 2):
    """Plain backprop through the same micro-batched forwards (dropout draws in the same order)."""
    model, tau, loss_fn = _setup()
    model.train()
    q, d = _data()
    enc = _encoder(model)
    torch.manual_seed(seed)
    q_emb = torch.cat([enc(b) for b in split_batch(q, CHUNK)])  # (Q, H)
    d_emb = torch.cat([enc(b) for b in split_batch(d, CHUNK)])  # (Q*G, H)
    loss = loss_fn(q_emb, d_emb)
    loss.backward()
    return loss.detach(), _grads(model, tau), torch.get_rng_state()


def test_matches_full_batch_with_dropout():
    ref_loss, ref_grads, ref_rng = _reference_with_dropout()
    loss, grads, rng = _run_grad_cache(train=True)
    _assert_same((loss, grads), (ref_loss, ref_grads))
    # The replay ran in a forked RNG: the global stream is where plain training leaves it.
    assert torch.equal(rng, ref_rng)


def test_dropout_is_live_and_rng_replay_is_what_makes_it_match(monkeypatch):
    # Controls: a different seed changes the loss (dropout is on) ...
    ref_loss, ref_grads, _ = _reference_with_dropout()
    assert not torch.allclose(_reference_with_dropout(seed=3)[0], ref_loss)
    # ... and without the RNG replay, the re-forward's dropout masks differ -> wrong grads.
    monkeypatch.setattr(gradcache._RngState, "replay", lambda self: contextlib.nullcontext())
    loss, grads, _ = _run_grad_cache(train=True)
    assert torch.allclose(loss, ref_loss, atol=1e-6)  # step 1 is unaffected
    with pytest.raises(AssertionError):
        _assert_same((loss, grads), (ref_loss, ref_grads))
