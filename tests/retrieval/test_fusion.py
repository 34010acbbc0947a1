"""RRF and score fusion against hand-computed values, with ties and missing documents."""

import math

import pytest

from ragtune.retrieval.fusion import rrf, weighted_score_fusion

# Run A ties d2/d3 (shared rank 2, so d4 is rank 4); run B misses d1, d2, d4; A misses d5.
RUN_A = {"q": {"d1": 3.0, "d2": 2.0, "d3": 2.0, "d4": 1.0}, "q2": {"d9": 0.5}}
RUN_B = {"q": {"d3": 10.0, "d5": 5.0}}


def test_rrf_hand_computed():
    fused = rrf([RUN_A, RUN_B], k=60)
    expected = {
        "d3": 1 / 62 + 1 / 61,  # rank 2 (tie) in A, rank 1 in B
        "d1": 1 / 61,
        "d5": 1 / 62,  # missing from A: contributes 0 there
        "d2": 1 / 62,
        "d4": 1 / 64,
    }
    assert fused["q"] == pytest.approx(expected)
    # Equal fused scores (d5, d2) are ordered by doc id descending, as metrics rank them.
    assert list(fused["q"]) == ["d3", "d1", "d5", "d2", "d4"]
    assert fused["q2"] == pytest.approx({"d9": 1 / 61})  # a query only one run has


def test_rrf_weights_and_top_k():
    fused = rrf([RUN_A, RUN_B], k=60, weights=[2.0, 1.0], top_k=2)
    assert fused["q"] == pytest.approx({"d3": 2 / 62 + 1 / 61, "d1": 2 / 61})
    assert list(fused["q"]) == ["d3", "d1"]
    with pytest.raises(ValueError, match="weights"):
        rrf([RUN_A, RUN_B], weights=[1.0])


def test_rrf_ignores_score_scale():
    scaled = {"q": {d: 1000 * s for d, s in RUN_A["q"].items()}}
    assert rrf([scaled, RUN_B])["q"] == pytest.approx(rrf([{"q": RUN_A["q"]}, RUN_B])["q"])


def test_score_fusion_minmax():
    fused = weighted_score_fusion([RUN_A, RUN_B], weights=[0.7, 0.3], norm="minmax")
    # A -> d1 1, d2 .5, d3 .5, d4 0;  B -> d3 1, d5 0;  missing docs get 0.
    assert fused["q"] == pytest.approx({"d1": 0.7, "d3": 0.35 + 0.3, "d2": 0.35, "d5": 0.0, "d4": 0.0})
    assert list(fused["q"]) == ["d1", "d3", "d2", "d5", "d4"]
    # A single returned doc normalizes to 1 (a constant list is all "best").
    assert fused["q2"] == pytest.approx({"d9": 0.7})


def test_score_fusion_zscore_missing_docs_get_the_run_minimum():
    fused = weighted_score_fusion([RUN_A, RUN_B], weights=[1.0, 1.0], norm="zscore", top_k=3)
    # A: mean 2, std sqrt(0.5) -> d1 +sqrt2, d2 0, d3 0, d4 -sqrt2;  B: mean 7.5, std 2.5 -> d3 +1, d5 -1.
    r2 = math.sqrt(2)
    assert fused["q"] == pytest.approx({"d3": 0 + 1, "d1": r2 - 1, "d2": 0 - 1})
    full = weighted_score_fusion([RUN_A, RUN_B], weights=[1.0, 1.0], norm="zscore")
    assert full["q"]["d5"] == pytest.approx(-r2 - 1)  # missing from A: A's minimum, -sqrt2
    assert full["q"]["d4"] == pytest.approx(-r2 - 1)
    assert full["q2"] == {"d9": 0.0}  # std 0 -> 0


def test_score_fusion_rejects_unknown_norm():
    with pytest.raises(ValueError, match="norm"):
        weighted_score_fusion([RUN_A], weights=[1.0], norm="softmax")
