"""first_stage_run on a tiny corpus: each source against a direct computation, hybrid against
a hand-written fusion of the two component runs (independent of ragtune.retrieval.fusion)."""

import numpy as np
import pytest
import torch

from ragtune.config import EvalConfig, ExperimentConfig, HybridConfig, ModelConfig
from ragtune.data.beir import BeirDataset, Doc
from ragtune.retrieval.bm25 import BM25Index
from ragtune.retrieval.first_stage import first_stage_run

VOCAB = ["solar", "panel", "energy", "wind", "turbine", "battery", "storage", "grid"]


class BowEncoder(torch.nn.Module):
    """L2-normalised bag of words over VOCAB: dense scores are cosines we can compute by hand."""

    def __init__(self):
        super().__init__()
        self.register_buffer("dummy", torch.zeros(1))  # the embedding cache hashes the weights
        self.cfg = ModelConfig(name="bow")

    def encode(self, texts, kind="doc", batch_size=128, show_progress=False):
        out = np.array([[t.lower().split().count(w) for w in VOCAB] for t in texts], dtype=np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


CORPUS = {
    "d1": Doc("Solar", "solar panel energy output"),
    "d2": Doc("", "wind turbine energy energy"),
    "d3": Doc("Storage", "battery storage for the grid"),
    "d4": Doc("", "solar energy storage battery battery"),
    "d5": Doc("", "grid grid wind"),
    "d6": Doc("", "unrelated text about cooking"),
}
QUERIES = {"q1": "solar energy storage", "q2": "wind grid battery"}
DATA = BeirDataset("tiny", "test", CORPUS, QUERIES, {"q1": {"d4": 1}, "q2": {"d5": 1}})


def config(tmp_path, **hybrid) -> ExperimentConfig:
    return ExperimentConfig(eval=EvalConfig(k_values=(1, 3), top_k=6, cache_dir=str(tmp_path)),
                            hybrid=HybridConfig(depth=6, **hybrid))


def ranks(scores: dict[str, float]) -> dict[str, int]:
    ordered = sorted(scores.values(), reverse=True)
    return {d: ordered.index(s) + 1 for d, s in scores.items()}  # ties share the best rank


def test_sources_match_direct_computation(tmp_path):
    cfg, enc = config(tmp_path), BowEncoder()
    dense, timings = first_stage_run("dense", DATA, cfg, encoder=enc)
    d_emb = enc.encode([d.full_text() for d in CORPUS.values()])
    for qid, text in QUERIES.items():
        cos = d_emb @ enc.encode([text])[0]
        assert dense[qid] == pytest.approx(dict(zip(CORPUS, cos.tolist(), strict=True)), abs=1e-6)
    assert timings["queries"] == 2 and timings["docs"] == 6 and "dense_query_seconds" in timings
    bm25, timings = first_stage_run("bm25", DATA, cfg)
    assert bm25 == BM25Index.from_corpus(CORPUS).search(QUERIES, top_k=6)
    assert "d6" not in bm25["q1"] and "bm25_index_seconds" in timings  # BM25 returns only matching docs


@pytest.mark.parametrize("weight", [0.3, 0.5])
def test_hybrid_rrf_equals_hand_fusion(tmp_path, weight):
    cfg, enc = config(tmp_path, fusion="rrf", weight=weight, rrf_k=10.0), BowEncoder()
    bm25, _ = first_stage_run("bm25", DATA, cfg)
    dense, _ = first_stage_run("dense", DATA, cfg, encoder=enc)
    hybrid, timings = first_stage_run("hybrid", DATA, cfg, encoder=enc)
    for qid in QUERIES:
        rb, rd = ranks(bm25[qid]), ranks(dense[qid])
        # a doc missing from a run contributes 0 from that run
        expected = {d: ((1 - weight) / (10 + rb[d]) if d in rb else 0.0) + (weight / (10 + rd[d]) if d in rd else 0.0)
                    for d in set(rb) | set(rd)}
        assert set(rb) != set(rd)  # the case where a doc is missing from BM25 is exercised
        assert hybrid[qid] == pytest.approx(expected)
    assert "fusion_seconds" in timings and "bm25_index_seconds" in timings and "dense_query_seconds" in timings


def test_hybrid_weighted_equals_hand_fusion(tmp_path):
    cfg, enc = config(tmp_path, fusion="weighted", weight=0.7), BowEncoder()
    bm25, _ = first_stage_run("bm25", DATA, cfg)
    dense, _ = first_stage_run("dense", DATA, cfg, encoder=enc)
    hybrid, _ = first_stage_run("hybrid", DATA, cfg, encoder=enc, top_k=3)
    for qid in QUERIES:
        b, d = bm25[qid], dense[qid]
        lo_b, hi_b, lo_d, hi_d = min(b.values()), max(b.values()), min(d.values()), max(d.values())
        # a doc BM25 did not return gets BM25's lowest normalised score, 0
        expected = {x: 0.3 * ((b[x] - lo_b) / (hi_b - lo_b) if x in b else 0.0) + 0.7 * (d[x] - lo_d) / (hi_d - lo_d)
                    for x in d}
        top3 = sorted(expected, key=lambda x: (expected[x], x), reverse=True)[:3]
        assert hybrid[qid] == pytest.approx({x: expected[x] for x in top3})
        assert list(hybrid[qid]) == top3  # ranked best first, cut to top_k


def test_bad_arguments_are_clear(tmp_path):
    cfg = config(tmp_path)
    with pytest.raises(ValueError, match="needs an encoder"):
        first_stage_run("hybrid", DATA, cfg)
    with pytest.raises(ValueError, match="one of"):
        first_stage_run("sparse", DATA, cfg)
    with pytest.raises(ValueError, match=r"weight must be in \[0, 1\]"):
        first_stage_run("hybrid", DATA, config(tmp_path, weight=1.5), encoder=BowEncoder())
    with pytest.raises(ValueError, match="fusion must be one of"):
        first_stage_run("hybrid", DATA, config(tmp_path, fusion="max"), encoder=BowEncoder())
