"""The reranker task never ships worse than its first stage on dev: w = 1.0 is always a candidate."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ragtune.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    ModelConfig,
    RerankConfig,
)
from ragtune.data.beir import load_beir
from ragtune.models.cross_encoder import CrossEncoder, format_doc
from ragtune.tasks import reranker


def config(model_dir, root, tmp_path) -> ExperimentConfig:
    return ExperimentConfig(
        task="reranker", output_dir=str(tmp_path / "run"), seed=7,
        model=ModelConfig(name=str(model_dir), query_max_length=16, doc_max_length=32),
        data=DataConfig(dataset="tiny", data_root=str(root), dev_fraction=0.2),
        eval=EvalConfig(k_values=(1, 5, 10), batch_size=8, cache_dir=str(tmp_path / "cache")),
        log=LogConfig(wandb="disabled"), loss=LossConfig(name="listwise_ce"),
        rerank=RerankConfig(first_stage="dense", retrieve_n=10, final_k=10, dev_n=10, max_length=48,
                            query_max_length=16, group_size=4, hard_depth=10))


def judged_scorer(model_dir, root, sign: float, seed: int) -> CrossEncoder:
    """A cross-encoder whose scores are `sign` x (judged relevant), a tiny per-document offset breaking ties.

    sign -1 puts every relevant document last (a reranker that only hurts), +1 first (an oracle).
    Each gets its own head weights, so the on-disk score cache (keyed by the weights) keeps them apart.
    """
    model = CrossEncoder.from_pretrained(str(model_dir), max_length=48, query_max_length=16)
    with torch.no_grad():
        torch.manual_seed(seed)
        for p in model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    relevant, text_to_doc, text_to_query = {}, {}, {}
    for split in ("train", "test"):
        data = load_beir("tiny", split, str(root))
        relevant.update(data.qrels)
        text_to_query.update({text: qid for qid, text in data.queries.items()})
        text_to_doc.update({format_doc(doc, model.doc_template): d for d, doc in data.corpus.items()})

    def score(queries, docs, batch_size=32, show_progress=False):
        out = []
        for q, d in zip(queries, docs, strict=True):
            doc_id = text_to_doc[d]
            out.append(sign * float(doc_id in relevant[text_to_query[q]]) + 1e-4 * int(doc_id[1:]))
        return out

    model.score = score
    return model


@pytest.mark.parametrize("sign, expected_w", [(-1.0, 1.0), (1.0, 0.0)])
def test_the_first_stage_alone_is_a_candidate_on_dev(tmp_path, tiny_model_dir, tiny_data_root, sign, expected_w,
                                                     capsys):
    cfg = config(tiny_model_dir, tiny_data_root, tmp_path)
    parts = reranker.build(cfg, SimpleNamespace(is_main_process=False))
    model = judged_scorer(tiny_model_dir, tiny_data_root, sign, seed=int(sign > 0))
    first_dev, first_test = parts.baseline_evaluate("dev"), parts.baseline_evaluate("test")
    dev, test = parts.evaluate(model, "dev"), parts.evaluate(model, "test")
    assert dev["interpolate"] == test["interpolate"] == expected_w
    assert dev["ndcg@10"] >= first_dev["ndcg@10"]
    if expected_w == 1.0:  # the hurting reranker is dropped: dev and test are exactly the first stage's
        assert {k: dev[k] for k in first_dev} == pytest.approx(first_dev, abs=1e-12)
        assert {k: test[k] for k in first_test} == pytest.approx(first_test, abs=1e-12)
        assert "final/test is the first stage alone" in capsys.readouterr().out
    else:  # the oracle reranks every relevant document in the top 10 to rank 1
        assert dev["mrr@10"] == pytest.approx(dev["recall@10"])
        assert test["ndcg@10"] > first_test["ndcg@10"]
    assert parts.timings["interpolate_chosen"] == expected_w
    assert parts.timings["dev_source"].startswith("0.2 of the train queries")
