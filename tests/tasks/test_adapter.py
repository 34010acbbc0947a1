"""Query adapter: values of each kind, export round trip, the task's batches and losses, and an
end-to-end run of experiments/run.py on a tiny in-process BERT that counts encoder calls."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel, BertTokenizerFast

from ragtune.commands.run import run
from ragtune.config import (
    AdapterConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from ragtune.data.beir import load_beir
from ragtune.eval.dense import evaluate_dense
from ragtune.eval.metrics import evaluate
from ragtune.models.adapter import AdaptedEncoder, QueryAdapter, apply_adapter, load_adapter, save_adapter
from ragtune.models.encoder import Encoder
from ragtune.retrieval.dense import dense_search
from ragtune.tasks.adapter import adapter_loss, hard_negative_pool, make_collate
from ragtune.training.curves import plot_curves, read_curves

H = 8


def _unit(n: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, H, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("kind", ["linear", "low_rank", "residual"])
def test_every_kind_starts_as_the_identity(kind):
    q = _unit(5)
    adapter = QueryAdapter(H, kind=kind, rank=3, bias=True)
    torch.testing.assert_close(adapter(q), q, rtol=0, atol=1e-6)


def test_forward_values_against_numpy():
    q = _unit(4)
    qn = q.numpy().astype(np.float64)
    rng = np.random.default_rng(1)
    lin = QueryAdapter(H, "linear", bias=True, normalize=False)
    w, b = rng.normal(size=(H, H)), rng.normal(size=H)
    lin.weight.data, lin.bias.data = torch.tensor(w, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    np.testing.assert_allclose(lin(q).detach().numpy(), qn @ w.T + b, atol=1e-5)

    low = QueryAdapter(H, "low_rank", rank=2, normalize=True)
    u, v = rng.normal(size=(H, 2)), rng.normal(size=(2, H))
    low.up.data, low.down.data = torch.tensor(u, dtype=torch.float32), torch.tensor(v, dtype=torch.float32)
    want = qn + qn @ v.T @ u.T
    np.testing.assert_allclose(low(q).detach().numpy(), want / np.linalg.norm(want, axis=1, keepdims=True),
                               atol=1e-5)

    res = QueryAdapter(H, "residual", rank=3, normalize=False)
    nn_init = [p.detach().numpy().astype(np.float64) for p in (res.down.weight, res.down.bias)]
    w2 = rng.normal(size=(H, 3))
    res.up.weight.data = torch.tensor(w2, dtype=torch.float32)
    hidden = qn @ nn_init[0].T + nn_init[1]
    gelu = 0.5 * hidden * (1 + np.vectorize(math.erf)(hidden / np.sqrt(2)))
    np.testing.assert_allclose(res(q).detach().numpy(), qn + gelu @ w2.T, atol=1e-5)


def test_bad_kind_and_rank_are_clear_errors():
    with pytest.raises(ValueError, match="adapter.kind='mlp'"):
        QueryAdapter(H, "mlp")
    with pytest.raises(ValueError, match="adapter.rank=9"):
        QueryAdapter(H, "low_rank", rank=9)


def test_save_load_apply_numpy_and_torch(tmp_path):
    adapter = QueryAdapter(H, "low_rank", rank=2, bias=True)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(torch.randn_like(p))
    save_adapter(adapter, tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "adapter.json").read_text())
    assert meta == {"kind": "low_rank", "dim": H, "rank": 2, "bias": True, "normalize": True}
    loaded = load_adapter(tmp_path / "model" / "adapter.safetensors")
    q = _unit(3)
    want = adapter(q).detach()
    out_t = apply_adapter(loaded, q)
    out_np = apply_adapter(loaded, q.numpy())
    assert isinstance(out_t, torch.Tensor) and isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    torch.testing.assert_close(out_t, want)
    np.testing.assert_allclose(out_np, want.numpy(), atol=1e-6)
    np.testing.assert_allclose(apply_adapter(loaded, q[0].numpy()), want[0].numpy(), atol=1e-6)  # (H,) in
    with pytest.raises(FileNotFoundError, match="adapter.json"):
        load_adapter(tmp_path)


def test_hard_negative_pool_is_top_ranked_minus_positives():
    d = torch.eye(5)  # doc j = e_j, so query scores are its coordinates
    q = torch.tensor([[0.9, 0.8, 0.7, 0.1, 0.0], [0.0, 0.1, 0.2, 0.3, 0.4]])
    pool = hard_negative_pool(q, d, positives=[[0], [4, 2]], top_k=2)
    assert pool.tolist() == [[1, 2], [3, 1]]


def test_collate_group_layout_and_negative_sources():
    torch.manual_seed(0)
    positives = [[3], [5, 6]]
    pool = torch.tensor([[1, 2, 4], [0, 7, 8]])
    batch = make_collate(positives, "hard", 2, 10, pool)([0, 1, 1])
    assert batch["q"].tolist() == [0, 1, 1] and batch["docs"].shape == (3, 3)
    for qi, row in zip(batch["q"].tolist(), batch["docs"].tolist(), strict=True):
        assert row[0] in positives[qi]
        assert len(set(row[1:])) == 2 and set(row[1:]) <= set(pool[qi].tolist())
    rand = make_collate(positives, "random", 4, 10, None)([0, 1])["docs"]
    assert rand.shape == (2, 5) and rand.min() >= 0 and rand.max() < 10
    assert make_collate(positives, "none", 0, 10, None)([1])["docs"].shape == (1, 1)


def test_adapter_loss_dispatch_values():
    q = _unit(3, seed=1)
    docs = _unit(6, seed=2).reshape(3, 2, H)  # (Q, G=2, H): [pos, neg]
    tau = torch.tensor(0.1)
    # info_nce over all 6 docs in the batch, target of query i = 2 i
    logits = (q @ docs.reshape(6, H).T / 0.1).double()
    want = -torch.stack([logits[i].log_softmax(0)[2 * i] for i in range(3)]).mean()
    got = adapter_loss(LossConfig(name="info_nce"), q, docs, tau)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # triplet, cosine distance, margin 1: mean relu((1 - cos(q, p)) - (1 - cos(q, n)) + 1)
    cos_p, cos_n = (q * docs[:, 0]).sum(1), (q * docs[:, 1]).sum(1)
    want = torch.relu(cos_n - cos_p + 1.0).mean()
    got = adapter_loss(LossConfig(name="triplet", margin=1.0), q, docs, tau)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(ValueError, match="needs hard negatives"):
        adapter_loss(LossConfig(name="triplet"), q, docs[:, :1], tau)


def test_plot_curves_reads_steps_and_writes_png(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "train/loss": 2.0}, {"step": 4, "dev/ndcg@10": 0.5}, {"step": 8, "dev/ndcg@10": 0.6},
            {"step": -1, "dev/ndcg@10": 9.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_curves(path, ["dev/ndcg@10"]) == {"dev/ndcg@10": ([4, 8], [0.5, 0.6])}
    png = plot_curves(path, ["dev/ndcg@10"], tmp_path / "c.png", steps_per_epoch=4, references={"dev/ndcg@10": 0.4})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path.write_text('{"step": 1}\n{oops\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_curves(path, ["dev/ndcg@10"])


# ------------------------------------------------------------------ end to end on a tiny model

WORDS = [f"w{i}" for i in range(40)]


@pytest.fixture
def tiny_setup(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    model_dir = tmp_path / "tiny_bert"
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(model_dir)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(model_dir)
    rng = random.Random(0)
    data = tmp_path / "data" / "toy"
    (data / "qrels").mkdir(parents=True)
    docs = {f"d{i}": " ".join(rng.choices(WORDS, k=12)) for i in range(30)}
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                               for k, v in docs.items()))
    queries, lines = {}, {"train": [], "test": []}
    for i in range(28):
        doc = f"d{i}"
        queries[f"q{i}"] = " ".join(rng.sample(docs[doc].split(), 4))
        lines["train" if i < 20 else "test"].append(f"q{i}\t{doc}\t1")
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    for split, rows in lines.items():
        (data / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return model_dir, tmp_path


def _cfg(model_dir, root, out: str) -> ExperimentConfig:
    return ExperimentConfig(
        task="adapter", output_dir=str(root / out), seed=0,
        model=ModelConfig(name=str(model_dir), query_max_length=16, doc_max_length=32),
        data=DataConfig(dataset="toy", data_root=str(root / "data"), dev_fraction=0.25),
        adapter=AdapterConfig(negatives="hard", num_negatives=2, hard_top_k=5, num_threads=0),
        loss=LossConfig(name="info_nce", learn_temperature=True),
        optim=OptimConfig(lr=1e-2, weight_decay=0.0),
        train=TrainConfig(epochs=2, batch_size=4),
        eval=EvalConfig(k_values=(1, 10), top_k=10, cache_dir=str(root / "cache")),
        log=LogConfig(wandb="disabled", log_every=1),
    )


def test_run_embeds_once_trains_without_encoder_and_exports(tiny_setup, monkeypatch):
    model_dir, root = tiny_setup
    calls = {"doc": 0, "query": 0, "forward": 0}
    encode, forward = Encoder.encode, Encoder.forward

    def counting_encode(self, texts, kind="doc", **kw):
        calls[kind] += 1
        return encode(self, texts, kind, **kw)

    def counting_forward(self, *args, **kw):
        calls["forward"] += 1
        return forward(self, *args, **kw)

    monkeypatch.setattr(Encoder, "encode", counting_encode)
    monkeypatch.setattr(Encoder, "forward", counting_forward)
    first = run(_cfg(model_dir, root, "run1"))
    assert calls["doc"] == 1 and calls["query"] == 2  # corpus once; train queries (incl. dev) and test once each
    calls.update(doc=0, query=0, forward=0)
    second = run(_cfg(model_dir, root, "run2"))
    assert calls == {"doc": 0, "query": 0, "forward": 0}  # same cache key: nothing embedded, no encoder in training
    assert second == first  # seeded, and the cache returns the same embeddings

    # baseline = the frozen encoder without adapter, as the plain dense evaluation computes it
    monkeypatch.setattr(Encoder, "encode", encode)
    monkeypatch.setattr(Encoder, "forward", forward)
    encoder = Encoder.from_config(ModelConfig(name=str(model_dir), query_max_length=16, doc_max_length=32))
    test_set = load_beir("toy", "test", str(root / "data"))
    eval_cfg = EvalConfig(k_values=(1, 10), top_k=10, cache_dir=str(root / "cache2"))
    zero_shot = evaluate_dense(encoder, test_set, eval_cfg, show_progress=False).metrics
    for key, value in zero_shot.items():
        assert first[f"baseline/test/{key}"] == pytest.approx(value, abs=1e-6)

    # the export reproduces final/: AdaptedEncoder.encode_query + the frozen corpus
    out = root / "run1"
    assert (out / "dev_curve.png").is_file() and (out / "model" / "adapter.safetensors").is_file()
    adapted = AdaptedEncoder.load(out / "model", encoder)
    qids, doc_ids = list(test_set.queries), list(test_set.corpus)
    q_emb = adapted.encode_query([test_set.queries[q] for q in qids])
    d_emb = adapted.encode_docs([test_set.corpus[d].full_text() for d in doc_ids], show_progress=False)
    np.testing.assert_array_equal(d_emb, encoder.encode([test_set.corpus[d].full_text() for d in doc_ids],
                                                        show_progress=False))  # docs untouched
    final = evaluate(dense_search(q_emb, d_emb, qids, doc_ids, top_k=10), test_set.qrels, (1, 10))
    for key, value in final.items():
        assert first[f"final/test/{key}"] == pytest.approx(value, abs=1e-5)
    assert json.loads((out / "timings.json").read_text())["train_seconds"] > 0
