"""Hard-negative mining on hand-built runs: window, positives, false-negative filter, random, JSONL."""

import json

import numpy as np
import pytest
import torch

from ragtune.config import MiningConfig, ModelConfig
from ragtune.data.beir import BeirDataset, Doc
from ragtune.retrieval.bm25 import BM25Index
from ragtune.retrieval.mining import bm25_source, dense_candidates, mine_negatives, write_training_records

# q1: one positive p1 (0.9) that is retrieved at rank 2; a judged-non-relevant doc n0 (grade 0).
# q2: two positives; the better one (p3, 0.5) was not retrieved at all.
RUN = {
    "q1": {"a": 1.0, "p1": 0.9, "b": 0.88, "c": 0.80, "n0": 0.75, "d": 0.70, "e": 0.60, "f": 0.50},
    "q2": {"x": 0.9, "p2": 0.45, "y": 0.6, "z": 0.4, "w": 0.3},
}
QRELS = {"q1": {"p1": 1, "n0": 0}, "q2": {"p2": 1, "p3": 2}, "q3": {"g": 0}}  # q3: no positive
POS_SCORES = {("q1", "p1"): 0.9, ("q2", "p2"): 0.45, ("q2", "p3"): 0.5}


def scorer(qid, docs):
    return [POS_SCORES.get((qid, d), RUN.get(qid, {}).get(d, 0.0)) for d in docs]


def mine(stats=None, corpus_ids=(), seed=0, **kw):
    return mine_negatives(RUN, QRELS, MiningConfig(**kw), seed, scorer, corpus_ids=corpus_ids, stats=stats)


def test_window_positives_and_false_negative_filter():
    stats = {}
    out = mine(stats, rank_start=0, rank_end=5, max_score_ratio=0.95)
    # q1 non-positives by rank: a b c n0 d | e f. Threshold 0.95 * 0.9 = 0.855 drops a (1.0), b (0.88).
    assert out["q1"] == [("c", 0.80), ("n0", 0.75), ("d", 0.70)]
    # q2: best positive p3 = 0.5 (scored although not retrieved): threshold 0.475 drops x (0.9), y (0.6).
    assert out["q2"] == [("z", 0.4), ("w", 0.3)]
    assert "q3" not in out  # no positive, nothing to contrast with
    assert stats == {"queries": 2, "window": 5 + 4, "dropped_false_neg": 2 + 2, "hard": 5, "random": 0}


def test_rank_window_counts_after_removing_positives():
    out = mine(rank_start=2, rank_end=4, max_score_ratio=0.0)  # filter off
    assert out["q1"] == [("c", 0.80), ("n0", 0.75)]  # ranks 2, 3 of a b c n0 d e f (p1 removed)
    assert out["q2"] == [("z", 0.4), ("w", 0.3)]  # ranks 2, 3 of x y z w (p2 removed)
    assert mine(rank_start=10, rank_end=20, max_score_ratio=0.0) == {"q1": [], "q2": []}
    with pytest.raises(ValueError, match="rank window"):
        mine(rank_start=5, rank_end=2)


def test_sampling_is_a_seeded_subset_in_rank_order():
    full = [d for d, _ in mine(rank_end=50, max_score_ratio=0.0)["q1"]]  # a b c n0 d e f
    draws = set()
    for seed in range(30):
        got = [d for d, _ in mine(seed=seed, rank_end=50, max_score_ratio=0.0, num_negatives=3)["q1"]]
        assert len(got) == 3 and got == [d for d in full if d in got]
        assert got == [d for d, _ in mine(seed=seed, rank_end=50, max_score_ratio=0.0, num_negatives=3)["q1"]]
        draws.add(tuple(got))
    assert len(draws) > 5  # the seed matters


def test_random_negatives_never_positive_never_filtered_never_repeated():
    corpus = ["p1", "p2", "p3", "n0", "hot"] + [f"r{i}" for i in range(12)]
    POS_SCORES[("q1", "hot")] = 5.0  # a random draw scoring above the threshold must be dropped
    hot_dropped = 0
    try:
        for seed in range(20):
            stats = {}
            out = mine(stats, corpus_ids=corpus, seed=seed, rank_end=3, num_random=10)
            for qid, negs in out.items():
                random_ids = [d for d, _ in negs][-10:]
                assert len(random_ids) == 10 == len(set(random_ids))
                assert not set(random_ids) & set(QRELS[qid]) - {"n0"}
                assert not set(random_ids) & set(list(RUN[qid])[:4])  # window docs are not re-drawn
                assert qid != "q1" or "hot" not in random_ids  # "hot" scores 5.0 for q1 only
            assert stats["random"] == 20
            hot_dropped += stats["dropped_false_neg"] - 4  # 4 = a, b (q1) and x, y (q2) in the windows
    finally:
        del POS_SCORES[("q1", "hot")]
    assert hot_dropped > 0  # "hot" was drawn, filtered and counted at least once
    with pytest.raises(ValueError, match="corpus_ids"):
        mine(num_random=1)


def tiny_dataset() -> BeirDataset:
    corpus = {
        "d1": Doc("Cats", "cats purr and sleep"), "d2": Doc("", "dogs bark loudly"),
        "d3": Doc("Birds", "birds sing and fly"), "d4": Doc("", "cats and dogs fight"),
        "d5": Doc("", "fish swim in water"),
    }
    queries = {"q1": "do cats purr", "q2": "dogs bark"}
    return BeirDataset("tiny", "train", corpus, queries, {"q1": {"d1": 1}, "q2": {"d2": 1, "d4": 0}})


def test_write_training_records_round_trip(tmp_path):
    data = tiny_dataset()
    negs = {"q1": [("d4", 0.5), ("d3", 0.25)], "q2": [("d4", 0.125)]}
    path = tmp_path / "sub" / "mined.jsonl"
    assert write_training_records(path, data, negs) == 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"qid": "q1", "query": "do cats purr", "pos_id": "d1", "pos": "Cats cats purr and sleep",
                       "neg_ids": ["d4", "d3"], "negs": ["cats and dogs fight", "Birds birds sing and fly"],
                       "neg_scores": [0.5, 0.25]}
    assert rows[1]["pos"] == "dogs bark loudly" and rows[1]["neg_ids"] == ["d4"]


class BowEncoder(torch.nn.Module):
    """L2-normalised bag of words over a fixed vocabulary: dot products are easy to compute by hand."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = {w: i for i, w in enumerate(vocab)}
        self.register_buffer("dummy", torch.zeros(1))  # the cache hashes the weights
        self.cfg = ModelConfig(name="bow")

    def encode(self, texts, kind="doc", batch_size=128, show_progress=False):
        out = np.zeros((len(texts), len(self.vocab)), dtype=np.float32)
        for row, text in enumerate(texts):
            for w in text.lower().split():
                if w in self.vocab:
                    out[row, self.vocab[w]] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def test_sources_drop_positives_and_score_like_the_retriever(tmp_path):
    data = tiny_dataset()
    enc = BowEncoder(["cats", "purr", "dogs", "bark", "birds", "fish"])
    run, score = dense_candidates(enc, data, top_k=3, cache_dir=str(tmp_path), show_progress=False)
    q = enc.encode(["do cats purr"])[0]
    docs = enc.encode([data.corpus[d].full_text() for d in data.corpus])
    expected = {d: float(s) for d, s in zip(data.corpus, docs @ q, strict=True)}
    assert "d1" not in run["q1"] and len(run["q1"]) == 3  # positive dropped, still top_k candidates
    assert list(run["q1"])[0] == "d4"  # the only other doc about cats; the rest tie at 0
    assert run["q1"] == pytest.approx({d: expected[d] for d in run["q1"]}, abs=1e-6)
    assert [float(s) for s in score("q1", ["d1", "d5"])] == pytest.approx([expected["d1"], expected["d5"]], abs=1e-6)

    run, score = bm25_source(data, top_k=10)
    index = BM25Index.from_corpus(data.corpus)
    full = index.score_all("dogs bark")
    assert set(run["q2"]) == {"d4"}  # d2 is the positive; d4 (grade 0) shares "dogs"; the rest score 0
    assert float(score("q2", ["d2"])[0]) == pytest.approx(float(full[1]))


def test_documents_without_text_are_neither_positives_nor_negatives(tmp_path):
    from ragtune.data.beir import BeirDataset, Doc
    from ragtune.data.pairs import load_records, records_from_qrels
    from ragtune.retrieval.mining import write_training_records

    corpus = {"d0": Doc(title="a", text="text"), "d1": Doc(title="", text=""), "d2": Doc(title="b", text="more")}
    dataset = BeirDataset(name="t", split="train", corpus=corpus, queries={"q": "query"},
                          qrels={"q": {"d0": 1, "d1": 2}})
    assert [r.pos_id for r in records_from_qrels(dataset)] == ["d0"]
    path = tmp_path / "mined.jsonl"
    assert write_training_records(path, dataset, {"q": [("d1", 0.9), ("d2", 0.5)]}) == 1
    (record,) = load_records(path)
    assert record.pos_id == "d0" and record.neg_ids == ("d2",) and record.negs == ("b more",)
