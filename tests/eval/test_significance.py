"""The paired randomization test and the bootstrap CI against scipy's independent implementations."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.eval.significance import bootstrap_ci, compare_per_query, randomization_p

scipy_stats = pytest.importorskip("scipy.stats")


def paired(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, n)
    return a, np.clip(a + shift + rng.normal(0, 0.2, n), 0, 1)


def scipy_exact_p(a, b) -> float:
    res = scipy_stats.permutation_test((a, b), lambda x, y: np.mean(y - x), permutation_type="samples",
                                       alternative="two-sided", n_resamples=np.inf)
    return res.pvalue


@pytest.mark.parametrize("n, shift", [(8, 0.0), (10, 0.1), (12, 0.25)])
def test_exact_p_equals_scipy_exact_permutation_test(n, shift):
    a, b = paired(n, shift, seed=n)
    assert randomization_p(a, b, resamples=10_000) == pytest.approx(scipy_exact_p(a, b), abs=1e-12)


def test_hand_computed_exact_p():
    # d = [1, 1, 1]: of the 8 sign vectors only (+,+,+) and (-,-,-) reach |mean| = 1 -> p = 2/8
    assert randomization_p(np.zeros(3), np.ones(3), resamples=100) == pytest.approx(0.25)
    # d = [1, 0]: |mean| = 0.5 for every flip -> p = 1
    assert randomization_p(np.zeros(2), np.array([1.0, 0.0])) == 1.0


def test_sampled_p_is_close_to_exact_and_seeded():
    a, b = paired(14, 0.08, seed=3)  # 2^14 = 16384 flips: exact is known, sampled with 4000
    exact = randomization_p(a, b, resamples=20_000)
    sampled = randomization_p(a, b, resamples=4000, seed=1)
    assert abs(sampled - exact) < 4 * np.sqrt(exact * (1 - exact) / 4000) + 1e-3
    assert randomization_p(a, b, resamples=4000, seed=1) == sampled


def test_sampled_p_on_many_queries_matches_scipy_monte_carlo():
    a, b = paired(300, 0.03, seed=5)
    ours = randomization_p(a, b, resamples=20_000, seed=0)
    res = scipy_stats.permutation_test((a, b), lambda x, y, axis=-1: np.mean(y - x, axis=axis), vectorized=True,
                                       permutation_type="samples", alternative="two-sided", n_resamples=20_000,
                                       random_state=1)
    assert abs(ours - res.pvalue) < 0.01


def test_bootstrap_ci_matches_scipy_percentile_interval():
    a, b = paired(300, 0.05, seed=7)
    low, high = bootstrap_ci(a, b, resamples=20_000, seed=0)
    res = scipy_stats.bootstrap((b - a,), np.mean, method="percentile", n_resamples=20_000, random_state=2)
    width = high - low
    assert abs(low - res.confidence_interval.low) < 0.05 * width
    assert abs(high - res.confidence_interval.high) < 0.05 * width
    assert low < (b - a).mean() < high


def test_compare_per_query_uses_shared_queries_and_every_common_metric():
    a = {f"q{i}": {"ndcg@10": 0.2 * i, "recall@10": 0.1} for i in range(4)}
    b = {f"q{i}": {"ndcg@10": 0.2 * i + 0.1, "recall@10": 0.1} for i in range(1, 5)}
    out = compare_per_query(a, b, resamples=1000)
    assert out["ndcg@10"]["queries"] == 3 and out["ndcg@10"]["delta"] == pytest.approx(0.1)
    # all three differences equal +0.1: only the two constant sign vectors reach it -> p = 2/8
    assert out["ndcg@10"]["p"] == pytest.approx(0.25) and out["recall@10"]["p"] == 1.0
    assert list(out) == ["ndcg@10", "recall@10"]
