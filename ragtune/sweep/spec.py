"""Ablation sweeps as data: expand grids of dotted overrides into named variants, collect results.

A sweep file (configs/sweeps/*.py) exposes `get_sweep() -> Sweep`. Each entry of
`Sweep.variants` is a grid {dotted key: value or list of values}; its cartesian product
is taken, and the entries are concatenated, so "a grid" and "a list of variants" are the
same thing (a list of one-value grids). ragtune/commands/sweep.py runs each variant through
experiments/run.py in its own process; this module holds the pure parts (no torch).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragtune.config import (
    ConfigError,
    apply_overrides,
    call_python_file,
    config_from_dict,
    flatten,
    load_config_file,
)

# Keys that may differ between a finished variant's config.json and the sweep without making
# its results stale: they change where/how a run is logged or resumed, not what it computes.
VOLATILE_KEYS = ("output_dir", "train.resume", "log.")


@dataclass(frozen=True)
class Sweep:
    name: str  # the W&B group and the default output folder runs/sweeps/<name>
    config: str  # base config file, relative to the repo root (or absolute)
    variants: list[dict[str, object]]  # grids; a list value is an axis, a scalar is fixed
    overrides: dict[str, object] = field(default_factory=dict)  # applied to every variant first
    metrics: tuple[str, ...] = ("final/test/ndcg@10",)  # markdown columns; the first one is plotted
    curves: tuple[str, ...] = ("train/loss", "dev/ndcg@10")  # metrics.jsonl keys overlaid per variant
    description: str = ""


@dataclass(frozen=True)
class Variant:
    name: str  # a folder name: the overrides that differ between variants, key=value joined by ','
    overrides: dict[str, object]  # the variant's own keys (sweep-wide overrides not included)


def load_sweep(path: str | Path) -> Sweep:
    """Import a sweep file and call its get_sweep()."""
    sweep = call_python_file(path, "get_sweep", Sweep)
    if not sweep.variants:
        raise ConfigError(f"{path}: Sweep.variants is empty")
    return sweep


def expand_grid(grid: dict[str, object]) -> list[dict[str, object]]:
    """{'a': [1, 2], 'b': 'x'} -> [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}] (first key varies slowest)."""
    axes = [[(k, x) for x in (v if isinstance(v, list) else [v])] for k, v in grid.items()]
    return [dict(combo) for combo in itertools.product(*axes)]


def _short(key: str, value: object) -> str:
    section, _, leaf = key.rpartition(".")
    shown = cli_value(value).replace(",", "+")  # ',' separates keys in a name
    text = f"{section if leaf == 'name' and section else leaf}={shown}"  # loss.name=x -> loss=x
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", text)  # safe as a folder name


def varying_keys(combos: list[dict[str, object]]) -> list[str]:
    """Keys that some combo lacks or sets to a different value than another (first-seen order)."""
    keys = list(dict.fromkeys(k for c in combos for k in c))
    return [k for k in keys if len({json.dumps(c.get(k, "<unset>"), sort_keys=True) for c in combos}) > 1]


def expand_variants(grids: list[dict[str, object]]) -> list[Variant]:
    """Every grid expanded and concatenated; names keep only the keys that vary across the sweep.

    A key varies when some variant lacks it or sets a different value. Duplicate variants
    (same overrides) are an error, and so are two keys whose short names collide.
    """
    combos = [c for grid in grids for c in expand_grid(grid)]
    varying = varying_keys(combos)
    variants, seen = [], {}
    for combo in combos:
        name = ",".join(_short(k, combo[k]) for k in varying if k in combo) or "base"
        if name in seen:
            raise ConfigError(f"two sweep variants are both named '{name}': {seen[name]} and {combo} "
                              "(duplicate grid entries?)")
        seen[name] = combo
        variants.append(Variant(name=name, overrides=combo))
    return variants


def cli_value(value: object) -> str:
    """A Python override value as run.py's CLI expects it (tuples comma-separated)."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def resolved_config(sweep: Sweep, variant: Variant, extra: dict[str, str] | None = None, repo: Path | None = None):
    """The ExperimentConfig a variant runs with (base file + sweep overrides + variant + CLI extras)."""
    base = Path(sweep.config) if repo is None or Path(sweep.config).is_absolute() else repo / sweep.config
    cfg = apply_overrides(load_config_file(base), {**sweep.overrides})
    cfg = apply_overrides(cfg, variant.overrides)
    return apply_overrides(cfg, extra or {})


def stale_keys(expected_cfg, config_json: Path) -> list[str]:
    """Keys where a finished variant's saved config differs from what the sweep now asks for."""
    try:
        saved_flat = flatten(config_from_dict(json.loads(config_json.read_text())))
    except (ConfigError, OSError, ValueError) as e:  # e.g. a key the config no longer has
        return [f"{config_json} no longer loads ({e})"]
    diff = []
    for key, value in flatten(expected_cfg).items():
        if not key.startswith(VOLATILE_KEYS) and saved_flat.get(key) != value:
            diff.append(f"{key}: ran with {saved_flat.get(key)!r}, sweep says {value!r}")
    return diff


def collect_rows(sweep_dir: Path, variants: list[Variant]) -> list[dict[str, object]]:
    """One row per finished variant: variant, its overrides, every results.json key, timings."""
    rows = []
    for v in variants:
        results_path = sweep_dir / v.name / "results.json"
        if not results_path.is_file():
            continue
        row: dict[str, object] = {"variant": v.name, **{k: cli_value(x) for k, x in v.overrides.items()}}
        row.update(json.loads(results_path.read_text()))
        for extra in ("timings.json", "sweep.json"):  # train_seconds...; wall_seconds of the process
            path = sweep_dir / v.name / extra
            if path.is_file():
                row.update({k: x for k, x in json.loads(path.read_text()).items() if isinstance(x, (int, float))})
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, object]], path: Path) -> Path:
    """All columns of all rows (union, first-seen order); floats written with full precision."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows([{k: repr(x) if isinstance(x, float) else x for k, x in r.items()} for r in rows])
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def markdown_table(rows: list[dict[str, object]], keys: list[str], metrics: list[str]) -> str:
    """A GitHub table: variant, the varying keys, the chosen metrics (4 decimals), wall minutes."""
    header = ["variant", *[_short(k, "").rstrip("=") for k in keys], *metrics, "wall (min)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [str(r["variant"]), *[str(r.get(k, "")) for k in keys]]
        cells += [f"{r[m]:.4f}" if isinstance(r.get(m), float) else "" for m in metrics]
        cells.append(f"{r['wall_seconds'] / 60:.1f}" if "wall_seconds" in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fold_summary(rows: list[dict[str, object]], metrics: list[str]) -> dict[str, dict[str, float]]:
    """Over cross-validation folds (one results row each): for every `final/<split>/<metric>` in
    `metrics`, the mean and sample standard deviation (ddof=1) of the baseline, the final value and
    their per-fold difference, and how many folds improved:
    {metric: {baseline_mean, baseline_std, final_mean, final_std, delta_mean, delta_std, improved, folds}}."""
    summary = {}
    for metric in metrics:
        base_key = metric.replace("final/", "baseline/", 1)
        final = np.array([float(r[metric]) for r in rows])
        entry = {"folds": len(rows), "final_mean": float(final.mean()),
                 "final_std": float(final.std(ddof=1)) if len(rows) > 1 else 0.0}
        if all(base_key in r for r in rows):
            base = np.array([float(r[base_key]) for r in rows])
            delta = final - base
            entry.update(baseline_mean=float(base.mean()),
                         baseline_std=float(base.std(ddof=1)) if len(rows) > 1 else 0.0,
                         delta_mean=float(delta.mean()), delta_std=float(delta.std(ddof=1)) if len(rows) > 1 else 0.0,
                         improved=int((delta > 0).sum()))
        summary[metric] = entry
    return summary


SEED_PART = re.compile(r"(^|,)seed=[^,]*")


def without_seed(name: str) -> str:
    """'loss=triplet,seed=3' -> 'loss=triplet'; 'seed=3' -> 'base'."""
    return SEED_PART.sub("", name).strip(",") or "base"


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order: p_(i) -> max_{j<=i} min(1, (m - j + 1) p_(j))."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def seeds_needed(delta: float, sd_diff: float, alpha: float = 0.05, power: float = 0.8,
                 most: int = 10_000) -> int | None:
    """Seeds a paired t-test needs to detect a mean difference `delta` with power `power` at level `alpha`
    (two-sided), when the per-seed differences have standard deviation `sd_diff`: the smallest n >= 2 with
    P(|T| > t_{1-alpha/2, n-1}) >= power, T noncentral t with n - 1 degrees of freedom and noncentrality
    delta / sd_diff * sqrt(n). None when delta is 0 or needs more than `most` seeds."""
    from scipy import stats

    if delta == 0 or not np.isfinite(sd_diff):
        return None
    if sd_diff == 0:
        return 2
    effect = abs(delta) / sd_diff
    for n in range(2, most + 1):
        crit = stats.t.ppf(1 - alpha / 2, n - 1)
        nc = effect * np.sqrt(n)
        if stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc) >= power:
            return n
    return None


def seed_summary(rows: list[dict[str, object]], metric: str, level: float = 0.95) -> list[dict[str, object]]:
    """Variants run with several seeds (a `seed` axis): per variant, the mean of `metric` over its
    seeds with a Student-t `level` interval, and the paired test against the first variant: a paired
    t-test on the per-seed values (paired by seed; an exact sign-flip test cannot go below
    2 / 2^n, 0.0625 for 5 seeds), Holm-corrected over the variants.

    With its per-seed differences' spread, each comparison also says how many seeds a difference of
    the size seen would need for 80% power (`seeds_needed`): the budget at which the ablation would
    separate the variants, estimated from the seeds one could afford.

    [{variant, seeds, mean, ci_low, ci_high, delta, sd_diff, p, p_holm, seeds_for_power}] in sweep order
    (the first has no test)."""
    from scipy import stats

    groups: dict[str, dict[int, float]] = {}
    for r in rows:
        if isinstance(r.get(metric), float):
            seed = int(r.get("seed", 0))
            groups.setdefault(without_seed(str(r["variant"])), {})[seed] = float(r[metric])
    out = []
    for name, by_seed in groups.items():
        values = np.array(list(by_seed.values()))
        half = (stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
                if len(values) > 1 else 0.0)  # one seed: no interval to give (the table shows seeds = 1)
        out.append({"variant": name, "seeds": len(values), "mean": float(values.mean()),
                    "ci_low": float(values.mean() - half), "ci_high": float(values.mean() + half)})
    if not out:
        return out
    first = groups[out[0]["variant"]]
    tests = []
    for entry in out[1:]:
        shared = sorted(set(first) & set(groups[entry["variant"]]))
        a = np.array([first[s] for s in shared])
        b = np.array([groups[entry["variant"]][s] for s in shared])
        entry["delta"] = float((b - a).mean())
        entry["sd_diff"] = float((b - a).std(ddof=1)) if len(shared) > 1 else float("nan")
        entry["seeds_for_power"] = seeds_needed(entry["delta"], entry["sd_diff"]) if len(shared) > 1 else None
        tests.append(float(stats.ttest_rel(b, a).pvalue) if len(shared) > 1 and np.any(b != a) else 1.0)
    for entry, p, adjusted in zip(out[1:], tests, holm(tests), strict=True):
        entry["p"], entry["p_holm"] = p, adjusted
    return out


def seed_table(summary: list[dict[str, object]], metric: str) -> str:
    lines = [f"| variant | seeds | {metric} mean | 95% CI | Δ vs {summary[0]['variant']} | p (paired t, by seed) "
             "| p (Holm) | sd of Δ | seeds for 80% power |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in summary:
        need = e.get("seeds_for_power")
        test = (f"{e['delta']:+.4f} | {e['p']:.4f} | {e['p_holm']:.4f} | {e['sd_diff']:.4f} | "
                f"{need if need is not None else '> 10,000'}" if "p" in e else "– | – | – | – | –")
        lines.append(f"| {e['variant']} | {e['seeds']} | {e['mean']:.4f} | [{e['ci_low']:.4f}, {e['ci_high']:.4f}] | "
                     f"{test} |")
    return "\n".join(lines) + "\n"
