"""Calibration pairs come from the corpus alone: seeded, split in two, each pseudo-query with its own document."""

from __future__ import annotations

from ragtune.data.beir import Doc
from ragtune.inference.calibration import PSEUDO_QUERY_WORDS, corpus_pairs, pseudo_query

CORPUS = {
    "d1": Doc("protein folding", "protein structures fold in water"),
    "d2": Doc("galaxy survey", "a survey of distant galaxy clusters"),
    "d3": Doc("", " ".join(f"w{i}" for i in range(30))),
    "d4": Doc("river data", "river flow data over ten years"),
    "d5": Doc("engine wear", "engine wear under heat and load"),
    "d6": Doc("protein engine", "a protein that works as a molecular engine"),
}


def test_a_pseudo_query_is_the_title_or_the_first_words():
    assert pseudo_query(CORPUS["d1"]) == "protein folding"
    assert pseudo_query(CORPUS["d3"]) == " ".join(f"w{i}" for i in range(PSEUDO_QUERY_WORDS))


def test_pairs_are_seeded_split_and_hold_each_querys_own_document():
    calibration, fidelity = corpus_pairs(CORPUS, n_queries=4, per_query=3, seed=7)
    assert (calibration, fidelity) == corpus_pairs(CORPUS, n_queries=4, per_query=3, seed=7)
    assert set(calibration[0]).isdisjoint(fidelity[0]) and len(set(calibration[0])) == len(set(fidelity[0])) == 2
    titles = {pseudo_query(doc): f"{doc.title} {doc.text}".strip() for doc in CORPUS.values()}
    for queries, docs in (calibration, fidelity):
        assert len(queries) == len(docs)
        for q in set(queries):
            group = [d for qq, d in zip(queries, docs, strict=True) if qq == q]
            assert 1 <= len(group) <= 3 and titles[q] in group  # BM25 finds the document the query came from
    assert corpus_pairs(CORPUS, n_queries=4, per_query=3, seed=8) != (calibration, fidelity)
