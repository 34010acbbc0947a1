"""A seeds axis in a sweep: mean and t-interval per variant, paired tests by seed, Holm correction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragtune.sweep.spec import expand_variants, holm, seed_summary, seed_table, without_seed


def test_without_seed_names_the_variant_a_seed_belongs_to():
    assert without_seed("loss=triplet,seed=3") == "loss=triplet"
    assert without_seed("seed=3,loss=triplet") == "loss=triplet"
    assert without_seed("seed=3") == "base"
    names = [v.name for v in expand_variants([{"loss.name": ["a", "b"], "seed": [1, 2]}])]
    assert names == ["loss=a,seed=1", "loss=a,seed=2", "loss=b,seed=1", "loss=b,seed=2"]


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.02 = 0.04, 1 x 0.04 = 0.04 (monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_seed_summary_by_hand():
    rows = [{"variant": f"loss=a,seed={s}", "seed": str(s), "m": v} for s, v in zip((1, 2, 3), (0.50, 0.52, 0.54),
                                                                                    strict=True)]
    rows += [{"variant": f"loss=b,seed={s}", "seed": str(s), "m": v} for s, v in zip((1, 2, 3), (0.55, 0.58, 0.58),
                                                                                     strict=True)]
    a, b = seed_summary(rows, "m")
    # a: mean 0.52, sd 0.02, t_{0.975, 2} = 4.302653 -> half width 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert a["mean"] == pytest.approx(0.52) and a["ci_high"] - a["mean"] == pytest.approx(0.049683, abs=1e-6)
    # b - a per seed: 0.05, 0.06, 0.04 -> mean 0.05, sd 0.01, t = 0.05 / (0.01 / sqrt(3)) = 8.660254
    t = 0.05 / (0.01 / math.sqrt(3))
    assert b["delta"] == pytest.approx(0.05) and t == pytest.approx(8.660254, abs=1e-6)
    # two-sided p = 2 (1 - F(t)); the t CDF at 2 dof has a closed form: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    p = 2 * (1 - (0.5 + t / (2 * math.sqrt(2 + t * t))))
    assert b["p"] == pytest.approx(p, rel=1e-6) and b["p_holm"] == pytest.approx(p, rel=1e-6)
    assert "| loss=b | 3 | 0.5700 |" in seed_table([a, b], "m")


def test_identical_variants_are_not_different():
    rows = [{"variant": f"{n},seed={s}", "seed": str(s), "m": float(s)} for n in ("x=1", "x=2") for s in (1, 2, 3)]
    _, b = seed_summary(rows, "m")
    assert b["delta"] == 0 and b["p"] == 1.0 and np.isfinite(b["ci_low"])


def test_the_sweep_report_adds_the_seed_table_and_error_bar_plot(tmp_path):
    import json

    from ragtune.commands.sweep import report
    from ragtune.sweep.spec import Sweep

    sweep = Sweep(name="s", config="c.py", variants=[{"loss.name": ["a", "b"], "seed": [1, 2, 3]}],
                  metrics=("final/test/ndcg@10",), curves=())
    variants = expand_variants(sweep.variants)
    for i, v in enumerate(variants):  # b = a + 0.05 (+- 0.01) in every seed
        (tmp_path / v.name).mkdir()
        value = 0.5 + 0.01 * (i % 3) + (0.05 + 0.01 * ((i % 3) - 1) if i >= 3 else 0.0)
        (tmp_path / v.name / "results.json").write_text(json.dumps({"final/test/ndcg@10": value}))
    report(sweep, variants, tmp_path)
    summary = json.loads((tmp_path / "seeds.json").read_text())
    assert [e["variant"] for e in summary] == ["loss=a", "loss=b"] and summary[1]["seeds"] == 3
    assert summary[1]["delta"] == pytest.approx(0.05) and summary[1]["p"] < 0.05
    assert "### Over seeds" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "seeds.png").stat().st_size > 1000


def test_a_variant_with_one_seed_gets_no_interval_and_no_test_but_still_plots(tmp_path):
    from ragtune.sweep.plots import plot_seed_bars

    rows = [{"variant": "x=1,seed=1", "seed": "1", "m": 0.5}, {"variant": "x=2,seed=1", "seed": "1", "m": 0.6}]
    a, b = seed_summary(rows, "m")
    assert a["ci_low"] == a["ci_high"] == 0.5 and b["p"] == 1.0  # one pair: a t-test is undefined
    assert plot_seed_bars([a, b], "m", tmp_path / "s.png").stat().st_size > 1000


def test_seeds_needed_matches_g_power_and_a_simulation():
    from scipy import stats

    from ragtune.sweep.spec import seeds_needed

    # G*Power, one-sample / paired t-test, two-sided, alpha 0.05, power 0.8: d = 0.5 -> 34, d = 1.0 -> 10
    assert seeds_needed(0.5, 1.0) == 34 and seeds_needed(-0.01, 0.01) == 10
    assert seeds_needed(0.0, 0.01) is None and seeds_needed(1e-6, 1.0, most=100) is None
    n = seeds_needed(0.8, 1.0)
    rng = np.random.default_rng(0)

    def simulated_power(k: int) -> float:
        diffs = rng.normal(0.8, 1.0, size=(20_000, k))
        return float(np.mean(stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05))

    assert simulated_power(n) >= 0.79 and simulated_power(n - 1) < 0.81  # n is the first to reach 0.8


def test_the_seed_table_says_how_many_seeds_a_difference_needs():
    rows = [{"variant": f"{v},seed={s}", "seed": str(s), "m": m}
            for v, vals in (("x=1", (0.50, 0.52, 0.54)), ("x=2", (0.51, 0.52, 0.56)))
            for s, m in zip((1, 2, 3), vals, strict=True)]
    a, b = seed_summary(rows, "m")
    diffs = np.array([0.01, 0.0, 0.02])
    assert b["sd_diff"] == pytest.approx(diffs.std(ddof=1))
    from ragtune.sweep.spec import seeds_needed

    assert b["seeds_for_power"] == seeds_needed(diffs.mean(), diffs.std(ddof=1))
    assert f"| {b['sd_diff']:.4f} | {b['seeds_for_power']} |" in seed_table([a, b], "m")
