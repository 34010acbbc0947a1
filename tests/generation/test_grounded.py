"""Grounded SciFact-style examples: determinism, gold/abstain layout, token budget; answer parsing;
metrics on hand-made predictions with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.data.beir import BeirDataset, Doc
from ragtune.generation.grounded import (
    ABSTAIN,
    GroundedExample,
    Parsed,
    auc,
    build_examples,
    calibrated_answers,
    choose_abstain_bias,
    grounded_metrics,
    parse_answer,
)
from tests.conftest import FILLER, TOPICS
from tests.models.test_generator import tiny_tokenizer


def dataset() -> BeirDataset:
    corpus = {f"d{i}": Doc(TOPICS[i % 10], " ".join(FILLER * 2) + f" w{i}") for i in range(30)}
    queries = {f"q{i}": f"{TOPICS[i % 10]} claim w{i}" for i in range(20)}
    qrels = {f"q{i}": {f"d{i}": 1, **({f"d{i + 1}": 1} if i % 5 == 0 else {})} for i in range(20)}
    return BeirDataset("toy", "test", corpus, queries, qrels)


def candidates(ds: BeirDataset) -> dict[str, dict[str, float]]:
    """Every doc ranked by distance from the query number, the gold ones included (they are skipped)."""
    return {q: {f"d{j}": -abs(j - int(q[1:])) for j in sorted(range(30), key=lambda j: abs(j - int(q[1:])))}
            for q in ds.queries}


def build(ds, **kw):
    args = dict(k=4, passage_tokens=5, no_gold_share=0.25, seed=7, max_gold=2, negatives_depth=6)
    return build_examples(ds, candidates(ds), tiny_tokenizer(), **{**args, **kw})


def test_examples_are_deterministic_and_well_formed():
    ds = dataset()
    examples = build(ds)
    assert examples == build(ds)
    assert [e.qid for e in examples] != [e.qid for e in build(ds, seed=8)]  # the seed matters
    assert len(examples) == 20 and sum(not e.gold for e in examples) == 5  # round(0.25 * 20)
    for e in examples:
        assert len(e.passages) == len(e.doc_ids) == len(set(e.doc_ids)) == 4
        gold_docs = set(ds.qrels[e.qid])
        shown = {e.doc_ids[i - 1] for i in e.gold}
        assert shown <= gold_docs and not (set(e.doc_ids) - shown) & gold_docs  # negatives are never gold
        assert len(e.gold) == (0 if not e.gold else min(2, len(gold_docs)))
        assert all(len(p.split()) <= 5 for p in e.passages)  # 5-token budget (word-level tokenizer)
        # negatives come from the top negatives_depth=6 non-gold candidates
        ranked = [d for d in candidates(ds)[e.qid] if d not in gold_docs][:6]
        assert set(e.doc_ids) - shown <= set(ranked)
        assert e.target == (" ".join(f"[{i}]" for i in e.gold) if e.gold else ABSTAIN)
        assert e.record().contexts == e.passages and e.record().answer == e.target
    assert len({e.gold for e in examples if e.gold}) > 1  # gold ids are shuffled, not always [1]
    first_doc = ds.corpus[examples[0].doc_ids[0]].full_text()
    assert examples[0].passages[0] == " ".join(tiny_tokenizer().tokenize(first_doc)[:5])


def test_short_candidate_runs_are_topped_up_with_random_non_gold_docs():
    ds = dataset()
    examples = build_examples(ds, {q: {} for q in ds.queries}, tiny_tokenizer(), k=4, passage_tokens=5,
                              no_gold_share=0.5, seed=1)
    for e in examples:
        assert len(set(e.doc_ids)) == 4 and {e.doc_ids[i - 1] for i in e.gold} == set(e.doc_ids) & set(ds.qrels[e.qid])


def test_paired_examples_differ_only_in_the_gold_slots():
    ds = dataset()
    examples = build(ds, paired=True)
    assert len(examples) == 40 and examples == build(ds, paired=True)
    for shown, twin in zip(examples[::2], examples[1::2], strict=True):
        assert shown.qid == twin.qid and shown.gold and not twin.gold and twin.target == ABSTAIN
        gold_docs = set(ds.qrels[shown.qid])
        assert {shown.doc_ids[i - 1] for i in shown.gold} == set(shown.doc_ids) & gold_docs
        assert not set(twin.doc_ids) & gold_docs and len(set(twin.doc_ids)) == 4
        for i, (a, b) in enumerate(zip(shown.doc_ids, twin.doc_ids, strict=True), start=1):
            assert (a == b) == (i not in shown.gold)  # every other slot, and its passage, is unchanged
            assert (shown.passages[i - 1] == twin.passages[i - 1]) == (a == b)
        ranked = [d for d in candidates(ds)[twin.qid] if d not in gold_docs][:6]
        assert set(twin.doc_ids) <= set(ranked)


def test_max_examples_and_bad_share():
    ds = dataset()
    assert [e.qid for e in build(ds, max_examples=6)] == [e.qid for e in build(ds)][:6]
    with pytest.raises(ValueError, match="no_gold_share"):
        build(ds, no_gold_share=1.5)


@pytest.mark.parametrize("text, parsed", [
    ("[2]", Parsed(False, frozenset({2}), True)),
    (" [1] [3]\n", Parsed(False, frozenset({1, 3}), True)),
    ("[3], [1]", Parsed(False, frozenset({1, 3}), True)),
    (ABSTAIN, Parsed(True, frozenset(), True)),
    ("information not available in the provided context", Parsed(True, frozenset(), False)),
    ("Passage [2] supports it", Parsed(False, frozenset({2}), False)),
    ("I think so", Parsed(False, frozenset(), False)),
])
def test_parse_answer(text, parsed):
    assert parse_answer(text) == parsed


def test_metrics_on_hand_made_predictions():
    def ex(gold):
        return GroundedExample("q", "c", ("a", "b", "c"), ("d1", "d2", "d3"), gold)

    examples = [ex((1,)), ex((2,)), ex((1, 3)), ex((3,)), ex(()), ex(()), ex(())]
    outputs = ["[1]", "[1]", "[3] [1]", ABSTAIN, ABSTAIN, "[2]", "information not available in the provided context"]
    m = grounded_metrics(examples, outputs)
    # answerable: [1] right, [1] wrong, {1,3} right, abstained wrong -> 2/4
    assert m["citation_accuracy"] == pytest.approx(2 / 4)
    # predicted abstain: examples 3 (answerable), 4, 6 (no gold) -> precision 2/3; recall 2 of 3 no-gold
    assert m["abstention_precision"] == pytest.approx(2 / 3)
    assert m["abstention_recall"] == pytest.approx(2 / 3)
    # exact strings: '[1]' (ex 0) and ABSTAIN (ex 4); '[3] [1]' != '[1] [3]'
    assert m["exact_match"] == pytest.approx(2 / 7)
    assert m["valid_format"] == pytest.approx(6 / 7)
    assert grounded_metrics([ex((1,))], ["[1]"])["abstention_precision"] == 0.0  # none predicted: 0, no error
    with pytest.raises(ValueError, match="1 examples but 2 outputs"):
        grounded_metrics([ex((1,))], ["[1]", "[2]"])


def test_auc_counts_ordered_pairs_and_half_ties():
    # pairs (3,2) (3,0) (1,0) ordered, (1,2) not: 3 of 4
    assert auc(np.array([3.0, 1.0]), np.array([2.0, 0.0])) == 0.75
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([0.0, 0.0]), np.array([1.0, 2.0])) == 0.0
    with pytest.raises(ValueError, match="both classes: 0 positive"):
        auc(np.array([]), np.array([1.0]))


def test_calibrated_answers_abstain_exactly_where_margin_plus_bias_is_positive():
    cite, abstain = ["[1]", "[2]", "[3]"], [ABSTAIN] * 3
    margins = [-2.0, 0.5, -0.1]
    assert calibrated_answers(cite, abstain, margins, 0.0) == ["[1]", ABSTAIN, "[3]"]  # plain greedy
    assert calibrated_answers(cite, abstain, margins, 0.2) == ["[1]", ABSTAIN, ABSTAIN]
    assert calibrated_answers(cite, abstain, margins, -1.0) == ["[1]", "[2]", "[3]"]
    with pytest.raises(ValueError, match="2 margins"):
        calibrated_answers(cite, abstain, margins[:2], 0.0)


def test_choose_abstain_bias_maximises_dev_exact_match_with_the_smallest_shift():
    def ex(qid, gold):
        return GroundedExample(qid, "c", ("a", "b"), ("d1", "d2"), gold)

    examples = [ex("q1", (1,)), ex("q2", ()), ex("q3", ()), ex("q4", (2,))]
    cite = ["[1]", "[1]", "[2]", "[2]"]  # right for q1 and q4 when they do not abstain
    abstain = [ABSTAIN] * 4
    # margins: q2 and q3 (no gold) sit above q1 and q4 but all below 0, so greedy never abstains
    margins = [-3.0, -1.0, -0.5, -2.0]
    # abstaining on exactly q2 and q3 needs -bias between -2 and -1: the midpoint bias is 1.5
    bias = choose_abstain_bias(examples, cite, abstain, margins)
    assert bias == 1.5
    assert calibrated_answers(cite, abstain, margins, bias) == ["[1]", ABSTAIN, ABSTAIN, "[2]"]
    # already perfect at 0: 0 wins the tie over every other perfect bias
    assert choose_abstain_bias(examples, cite, abstain, [-3.0, 1.0, 0.5, -2.0]) == 0.0
