"""Rerank pipeline, cascade, score cache, training groups, and the query-likelihood scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ragtune.models.generator import load_generator
from ragtune.models.qlm_reranker import QLMReranker
from ragtune.rerank import (
    EpochGroups,
    cascade,
    choose_interpolation,
    interpolate,
    load_score_cache,
    rerank_run,
    save_score_cache,
    training_groups,
)

# first stage: d1 > d2 > d3 > d4 > d5 for q1
RUN = {"q1": {"d1": 5.0, "d2": 4.0, "d3": 3.0, "d4": 2.0, "d5": 1.0}, "q2": {"d1": 1.0, "d2": 2.0}}
QUERIES = {"q1": "query one", "q2": "query two"}
DOCS = {"d1": "aa", "d2": "bbbb", "d3": "ccc", "d4": "dddddd", "d5": "e"}


class LengthScorer:
    """Scores a document by its length and records every pair it saw."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def __call__(self, queries: list[str], docs: list[str]) -> np.ndarray:
        self.seen += list(zip(queries, docs, strict=True))
        return np.array([len(d) for d in docs], dtype=np.float32)


def test_rerank_run_reranks_top_n_keeps_top_k_and_caches():
    scorer = LengthScorer()
    cache: dict = {}
    out, stats = rerank_run(scorer, RUN, {"q1": QUERIES["q1"]}, DOCS, retrieve_n=3, final_k=2, cache=cache,
                            show_progress=False)
    # top 3 of the first stage = d1, d2, d3 (lengths 2, 4, 3): reranked d2, d3; d4 (longest) never seen.
    assert out == {"q1": {"d2": 4.0, "d3": 3.0}}
    assert [d for _, d in scorer.seen] == ["aa", "bbbb", "ccc"]
    assert (stats.pairs, stats.cached_pairs, len(stats.query_latencies)) == (3, 0, 1)
    assert cache == {("q1", "d1"): 2.0, ("q1", "d2"): 4.0, ("q1", "d3"): 3.0}
    summary = stats.summary()
    assert summary["rerank_pairs_per_s"] == pytest.approx(3 / stats.seconds)
    # A second first stage sharing candidates rescores only the new pairs.
    out2, stats2 = rerank_run(scorer, {"q1": {"d3": 1.0, "d4": 0.5}}, QUERIES, DOCS, 2, 2, cache=cache,
                              show_progress=False)
    assert out2 == {"q1": {"d4": 6.0, "d3": 3.0}}
    assert (stats2.pairs, stats2.cached_pairs) == (1, 1)
    assert scorer.seen[-1] == ("query one", "dddddd")


def test_rerank_run_rejects_k_above_n():
    with pytest.raises(ValueError, match="final_k=5 > retrieve_n=3"):
        rerank_run(LengthScorer(), RUN, QUERIES, DOCS, retrieve_n=3, final_k=5)


def test_cascade_second_stage_sees_only_what_the_first_kept():
    cheap, strong = LengthScorer(), LengthScorer()

    def negative_length(queries, docs):  # the strong stage prefers SHORT docs
        return -strong(queries, docs)

    out, stats = cascade([(cheap, 3), (negative_length, 1)], {"q1": RUN["q1"]}, QUERIES, DOCS, retrieve_n=5,
                         show_progress=False)
    # cheap keeps the 3 longest of 5 (d4, d2, d3); strong picks the shortest of those: d3.
    assert len(cheap.seen) == 5
    assert sorted(d for _, d in strong.seen) == ["bbbb", "ccc", "dddddd"]
    assert out == {"q1": {"d3": -3.0}}
    assert [s.pairs for s in stats] == [5, 3]


def test_score_cache_round_trip(tmp_path):
    cache = {("q1", "d1"): 0.5, ("q2", "d 2"): -1.25}
    save_score_cache(tmp_path / "c.json", cache)
    assert load_score_cache(tmp_path / "c.json") == cache
    assert load_score_cache(tmp_path / "missing.json") == {}


def test_training_groups_mix_hard_and_random_negatives():
    run = {"q1": {f"d{i}": 100.0 - i for i in range(10)}}  # d0 best .. d9
    qrels = {"q1": {"d0": 1, "d2": 1, "d5": 0}}  # grade 0 is not relevant: it may be a negative
    corpus = [f"d{i}" for i in range(100)]
    groups = training_groups(run, qrels, corpus, group_size=5, hard_fraction=0.5, hard_depth=4, seed=3)
    assert [(q, p) for q, p, _ in groups] == [("q1", "d0"), ("q1", "d2")]  # one group per positive
    hard_pool = {"d1", "d3"}  # top 4 = d0..d3 minus the positives d0, d2
    for _, _, negs in groups:
        assert len(negs) == 4 and len(set(negs)) == 4
        assert not {"d0", "d2"} & set(negs)
        assert set(negs[:2]) == hard_pool  # round(0.5 * 4) = 2 hard negatives first
    assert groups == training_groups(run, qrels, corpus, 5, 0.5, 4, seed=3)  # seeded
    only_random = training_groups(run, qrels, corpus, 5, 0.0, 4, seed=3)
    assert all(len(negs) == 4 for _, _, negs in only_random)
    with pytest.raises(ValueError, match="hard_fraction"):
        training_groups(run, qrels, corpus, 5, 1.5, 4)


# ------------------------------------------------------------------ query likelihood


def tiny_lm() -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    words = ["<pad>", "<unk>", "Passage", ":", "Please", "write", "a", "question", "based", "on", "this",
             "passage", ".", "Question", "x", "y", "z", "what", "is"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval(), tokenizer


def reference_log_likelihood(qlm: QLMReranker, query: str, doc: str) -> float:
    """Independent: one unpadded sequence, full logits, mean log p over the query tokens."""
    prompt_ids, query_ids = qlm._ids(query, doc)
    ids = torch.tensor([prompt_ids + query_ids])
    with torch.no_grad():
        logp = torch.log_softmax(qlm.model(input_ids=ids).logits[0].double(), dim=-1)  # (T, V)
    start = len(prompt_ids)
    return float(np.mean([logp[t - 1, ids[0, t]].item() for t in range(start, ids.shape[1])]))


def test_qlm_matches_unpadded_reference_and_cuts_the_passage():
    qlm = QLMReranker(*tiny_lm(), doc_max_tokens=3)
    queries = ["what is x", "y", "what is z z z"]
    docs = ["x y z x y z", "z", "y y"]
    scores = qlm.score(queries, docs, batch_size=3)  # left-padded batch of different lengths
    expected = [reference_log_likelihood(qlm, q, d) for q, d in zip(queries, docs, strict=True)]
    assert scores.tolist() == pytest.approx(expected, abs=1e-4)
    prompt_ids, _ = qlm._ids("x", "x y z x y z")
    assert qlm.tokenizer.decode(prompt_ids).count("x") == 1  # passage cut to 3 tokens: "x y z"
    assert (scores < 0).all()


def test_load_generator_from_local_folder_and_clear_error(tmp_path):
    model, tokenizer = tiny_lm()
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    loaded, _ = load_generator(str(tmp_path / "lm"))
    ids = torch.tensor([[2, 3, 14]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="neither an alias"):
        load_generator(str(tmp_path / "nope"))


def test_interpolate_zscores_over_the_reranked_docs():
    reranked = {"q": {"a": 3.0, "b": 1.0}}
    first = {"q": {"a": 0.0, "b": 2.0, "c": 5.0}}  # c was not reranked: ignored
    # z(reranker) = a +1, b -1; z(first over a, b) = a -1, b +1.
    assert interpolate(reranked, first, 0.25) == {"q": {"a": 0.5, "b": -0.5}}
    assert interpolate(reranked, first, 0.0) is reranked
    assert list(interpolate(reranked, first, 0.75)["q"]) == ["b", "a"]


def test_epoch_groups_resample_negatives_per_epoch_and_replay_an_epoch():
    run = {"q1": {f"d{i}": float(10 - i) for i in range(8)}}
    qrels = {"q1": {"d0": 1}}
    corpus = [f"d{i}" for i in range(40)]
    groups = EpochGroups(lambda seed: training_groups(run, qrels, corpus, 5, 0.5, 6, seed=seed), seed=7)
    epoch0 = list(groups)
    assert epoch0 == training_groups(run, qrels, corpus, 5, 0.5, 6, seed=7)
    groups.set_epoch(1)
    assert len(groups) == 1 and groups[0] == training_groups(run, qrels, corpus, 5, 0.5, 6, seed=8)[0]
    assert groups[0] != epoch0[0]  # fresh negatives
    groups.set_epoch(0)
    assert list(groups) == epoch0  # a resumed epoch replays its negatives
    fixed = EpochGroups(lambda seed: training_groups(run, qrels, corpus, 5, 0.5, 6, seed=seed), seed=7,
                        resample=False)
    fixed.set_epoch(3)
    assert list(fixed) == epoch0


def test_choose_interpolation_picks_the_best_dev_weight_smallest_on_ties():
    # q1: the reranker is right (a), the first stage wrong: a stays on top iff w < 0.5.
    # q3: x is right; alone, the reranker puts z first and the first stage y first, and only a mix
    # puts x first. Centred scores (every z-score shares its query's std, so the order needs no std):
    # reranker x +1/3, y -7/6, z +5/6; first stage x +1/3, y +5/6, z -7/6. At w = 0.4: x 1/3 >
    # z 1/30 > y -11/30; at w = 0.6: x 1/3 > y 1/30 > z -11/30; at w = 0: z first; w = 1: y first.
    reranked = {"q1": {"a": 3.0, "b": 1.0}, "q3": {"x": 1.5, "y": 0.0, "z": 2.0}}
    first = {"q1": {"a": 0.0, "b": 2.0}, "q3": {"x": 1.5, "y": 2.0, "z": 0.0}}
    qrels = {"q1": {"a": 1}, "q3": {"x": 1}}
    w, scores = choose_interpolation(reranked, first, qrels, (1.0, 0.6, 0.4, 0.0), "ndcg@1")
    assert w == 0.4
    assert scores == {0.0: 0.5, 0.4: 1.0, 0.6: 0.5, 1.0: 0.0}  # ndcg@1 = share of queries with x/a first
    only_q3 = {"q3": reranked["q3"]}
    assert choose_interpolation(only_q3, first, {"q3": qrels["q3"]}, (0.6, 0.4, 1.0), "ndcg@1")[0] == 0.4  # tie
    with pytest.raises(ValueError, match="like 'ndcg@10'"):
        choose_interpolation(reranked, first, qrels, (0.5,), "ndcg")
    with pytest.raises(ValueError, match="empty"):
        choose_interpolation(reranked, first, qrels, (), "ndcg@1")


def test_the_training_loop_reaches_epoch_groups_through_accelerates_loader():
    # experiments/run.py calls loader.set_epoch on the PREPARED loader; accelerate must forward it
    # to the dataset, or every epoch would silently reuse epoch 0's negatives.
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    run = {"q1": {f"d{i}": float(10 - i) for i in range(8)}}
    corpus = [f"d{i}" for i in range(40)]
    groups = EpochGroups(lambda seed: training_groups(run, {"q1": {"d0": 1}}, corpus, 5, 0.5, 6, seed=seed), seed=7)
    loader = Accelerator(cpu=True).prepare(DataLoader(groups, batch_size=1, collate_fn=lambda b: b))
    loader.set_epoch(2)
    assert [b[0] for b in loader] == training_groups(run, {"q1": {"d0": 1}}, corpus, 5, 0.5, 6, seed=9)
