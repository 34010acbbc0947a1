"""Interop with the ecosystem: sentence-transformers loads our bi-encoder export, transformers loads
our reranker, and pytrec_eval scores our TREC run files as ragtune.eval.metrics does."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from ragtune.config import ModelConfig
from ragtune.eval.metrics import evaluate
from ragtune.models.encoder import Encoder
from ragtune.models.export import export_sentence_transformers
from ragtune.retrieval.dense import read_trec_run, write_trec_run

TEXTS = ["protein study shows new results", "the galaxy and the river", "engine", "violin w3 w7 data about a forest",
         "glacier " * 20 + "orbit"]


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("cls", False), ("max", True)])
def test_sentence_transformers_loads_export(tiny_model_dir, tmp_path, pooling, normalize):
    st = pytest.importorskip("sentence_transformers")
    cfg = ModelConfig(name=str(tiny_model_dir), pooling=pooling, normalize=normalize, query_max_length=64,
                      doc_max_length=64)
    encoder = Encoder.from_config(cfg)
    path = export_sentence_transformers(encoder, tmp_path / "st")
    ours = encoder.encode(TEXTS, kind="doc", batch_size=2, show_progress=False)  # (5, H)

    model = st.SentenceTransformer(str(path), device="cpu")
    theirs = model.encode(TEXTS, batch_size=2, convert_to_numpy=True)  # (5, H)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
    assert model.max_seq_length == 64
    if normalize:  # the Normalize module is there: unit norms
        np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)
    # ragtune reads its own export back as well
    np.testing.assert_allclose(Encoder.load(path).encode(TEXTS, show_progress=False), ours, atol=1e-6)


def test_export_prefixes_become_prompts(tiny_model_dir, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    cfg = ModelConfig(name=str(tiny_model_dir), query_prefix="query: ", doc_prefix="passage: ")
    encoder = Encoder.from_config(cfg)
    path = export_sentence_transformers(encoder, tmp_path / "st")
    meta = json.loads((path / "config_sentence_transformers.json").read_text())
    assert meta["prompts"] == {"query": "query: ", "document": "passage: "}

    model = st.SentenceTransformer(str(path), device="cpu")
    for kind, prompt in (("query", "query"), ("doc", "document")):
        ours = encoder.encode(TEXTS, kind=kind, show_progress=False)
        theirs = model.encode(TEXTS, prompt_name=prompt, convert_to_numpy=True)
        np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_reranker_reloads_with_auto_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from ragtune.models.cross_encoder import CrossEncoder

    torch.manual_seed(1)
    reranker = CrossEncoder.from_pretrained(str(tiny_model_dir), max_length=32, query_max_length=8).eval()
    torch.nn.init.normal_(reranker.model.classifier.weight, std=1.0)  # a head far from init, as after training
    reranker.save(tmp_path / "rr")
    batch = reranker.tokenize(["protein study", "galaxy orbit"], ["protein results data", "river and forest"])
    with torch.no_grad():
        ours = reranker(**batch)  # (2,)
        hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rr").eval()
        theirs = hf(**batch).logits  # (2, 1)
    assert hf.config.num_labels == 1
    torch.testing.assert_close(theirs.squeeze(-1), ours, atol=1e-6, rtol=0)
    assert ours.abs().max() > 1e-3  # a real, non-degenerate score


def test_trec_run_scored_by_pytrec_eval_matches(tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(0)
    qrels = {f"q{i}": {f"d{j}": rng.choice([1, 1, 2]) for j in rng.sample(range(60), rng.randint(1, 6))}
             for i in range(25)}
    # Scores on a coarse grid so that ties occur: the file must keep trec_eval's tie order.
    run = {q: {f"d{j}": round(rng.random(), 1) for j in rng.sample(range(60), 40)} for q in qrels}
    path = tmp_path / "run.trec"
    write_trec_run(run, path)
    assert read_trec_run(path) == run

    with path.open() as f:
        parsed = pytrec_eval.parse_run(f)
    measures = {"ndcg_cut.1,10,100", "recall.1,10,100", "P.1,10,100", "map_cut.1,10,100"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(parsed)
    ours = evaluate(read_trec_run(path), qrels, k_values=(1, 10, 100))
    names = {"ndcg": "ndcg_cut", "recall": "recall", "precision": "P", "map": "map_cut"}
    for metric, trec_name in names.items():
        for k in (1, 10, 100):
            theirs = np.mean([row[f"{trec_name}_{k}"] for row in per_query.values()])
            assert ours[f"{metric}@{k}"] == pytest.approx(theirs, abs=1e-9), f"{metric}@{k}"
