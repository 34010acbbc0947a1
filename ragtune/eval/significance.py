"""Is a difference between two runs real? A paired randomization test and a bootstrap interval.

Both work on per-query metric values of the same queries under two systems (a: before / the
reference, b: after / the candidate), d_q = b_q - a_q:

- Paired two-sided randomization test (Fisher's sign-flip test; Smucker, Allan & Carterette,
  CIKM 2007, recommend it for IR): under H0 each d_q is as likely to be -d_q, so
  p = (1 + #{flips s : |mean(s * d)| >= |mean(d)|}) / (1 + R) over R random sign vectors s,
  or exactly (all 2^n flips, no +1) when 2^n <= R.
- Bootstrap 95% CI of mean(d): the 2.5% and 97.5% percentiles of mean(d*) over R resamples of
  the queries with replacement (percentile method).

Both are seeded: the same inputs and seed give the same p and interval.
"""

from __future__ import annotations

import itertools

import numpy as np

EXACT_MAX_QUERIES = 16  # 2^16 sign vectors: exact enumeration is cheap up to here


def randomization_p(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0) -> float:
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    observed = abs(d.mean())
    tolerance = 1e-12 * max(observed, 1.0)  # float noise must not decide a tie
    n = len(d)
    if n <= EXACT_MAX_QUERIES and 2 ** n <= resamples:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return float(np.mean(np.abs(signs @ d / n) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, resamples, 1000):  # chunks bound memory at 1000 x n
        signs = rng.choice((-1.0, 1.0), size=(min(1000, resamples - start), n))
        hits += int(np.sum(np.abs(signs @ d / n) >= observed - tolerance))
    return (1 + hits) / (1 + resamples)


def bootstrap_ci(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):
        idx = rng.integers(0, len(d), size=(min(1000, resamples - start), len(d)))
        means[start:start + len(idx)] = d[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def compare_per_query(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metrics: list[str] | None = None,
                      resamples: int = 10_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """{metric: {a, b, delta, ci_low, ci_high, p, queries}} over the queries both runs scored."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    qids = sorted(set(a) & set(b))
    if not qids:
        raise ValueError("the two runs share no query")
    metrics = metrics or [m for m in next(iter(a.values())) if m in next(iter(b.values()))]
    out = {}
    for metric in metrics:
        x = np.array([a[q][metric] for q in qids])
        y = np.array([b[q][metric] for q in qids])
        low, high = bootstrap_ci(x, y, resamples, seed)
        out[metric] = {"a": float(x.mean()), "b": float(y.mean()), "delta": float((y - x).mean()),
                       "ci_low": low, "ci_high": high, "p": randomization_p(x, y, resamples, seed),
                       "queries": len(qids)}
    return out


def comparison_table(result: dict[str, dict[str, float]], a_name: str = "a", b_name: str = "b") -> str:
    lines = [f"| metric | {a_name} | {b_name} | Δ | 95% CI of Δ | p (paired randomization) | queries |",
             "|---|---|---|---|---|---|---|"]
    for metric, r in result.items():
        lines.append(f"| {metric} | {r['a']:.4f} | {r['b']:.4f} | {r['delta']:+.4f} | "
                     f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['p']:.4f} | {r['queries']} |")
    return "\n".join(lines) + "\n"
