"""The query-source probe's cross-fitting folds: seeded, disjoint, covering every train claim."""

from __future__ import annotations

from experiments.adapt_query_source import query_folds


def test_query_folds_are_seeded_disjoint_and_cover_every_query():
    qids = [str(i) for i in range(809)]
    folds = query_folds(qids, seed=0)
    assert [len(f) for f in folds] == [405, 404]
    assert not set(folds[0]) & set(folds[1]) and set(folds[0]) | set(folds[1]) == set(qids)
    assert query_folds(list(reversed(qids)), seed=0) == folds
    assert query_folds(qids, seed=1) != folds
