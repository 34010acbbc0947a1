"""Sweep figures: one metric per variant (bars) and training curves of all variants overlaid.

Curves come from each variant's metrics.jsonl via ragtune.training.curves.read_curves. A resumed run
appends the steps it redoes after its last checkpoint, so the last value logged per step wins.
"""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on training machines
    import matplotlib.pyplot as plt

    return plt


def last_per_step(steps: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    """Deduplicate a curve by step (the last logged value wins), sorted by step."""
    merged = dict(zip(steps, values, strict=True))
    ordered = sorted(merged)
    return ordered, [merged[s] for s in ordered]


def plot_metric_bars(rows: list[dict], metric: str, out_png: str | Path, baseline_metric: str = "",
                     title: str = "") -> Path:
    """Horizontal bars of rows[i][metric] per variant; a dashed line at the first row's baseline_metric."""
    plt = _pyplot()
    rows = [r for r in rows if isinstance(r.get(metric), float)]
    if not rows:
        raise ValueError(f"no finished variant has '{metric}' in its results.json")
    names, values = [r["variant"] for r in rows], [r[metric] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    bars = ax.barh(range(len(rows)), values, color="tab:blue", alpha=0.8)
    ax.bar_label(bars, labels=[f"{v:.4f}" for v in values], padding=3, fontsize=8)
    if baseline_metric and isinstance(rows[0].get(baseline_metric), float):
        ax.axvline(rows[0][baseline_metric], color="tab:red", linestyle="--",
                   label=f"{baseline_metric} = {rows[0][baseline_metric]:.4f}")
        ax.legend(loc="best", fontsize=8)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()  # sweep order top to bottom
    low, high = min(values), max(values)
    if baseline_metric and isinstance(rows[0].get(baseline_metric), float):
        low, high = min(low, rows[0][baseline_metric]), max(high, rows[0][baseline_metric])
    pad = max(high - low, 0.01)
    ax.set_xlim(max(0.0, low - pad), high + pad)  # zoom: ablation differences are small
    ax.set_xlabel(metric)
    ax.set_title(title or metric)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, plt, out_png)


def plot_seed_bars(summary: list[dict], metric: str, out_png: str | Path, title: str = "") -> Path:
    """One bar per variant at its mean over seeds, with its 95% interval as an error bar."""
    plt = _pyplot()
    names, means = [e["variant"] for e in summary], [e["mean"] for e in summary]
    errors = [[e["mean"] - e["ci_low"] for e in summary], [e["ci_high"] - e["mean"] for e in summary]]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(summary) + 1.4))
    ax.barh(range(len(summary)), means, xerr=errors, color="tab:blue", alpha=0.8, capsize=4)
    for i, e in enumerate(summary):
        mark = f"  p={e['p_holm']:.3f}" if "p_holm" in e else ""
        ax.text(e["ci_high"], i, f" {e['mean']:.4f}{mark}", va="center", fontsize=8)
    ax.set_yticks(range(len(summary)), names, fontsize=8)
    ax.invert_yaxis()
    low = min(e["ci_low"] for e in summary)
    high = max(e["ci_high"] for e in summary)
    pad = max(high - low, 0.01)
    ax.set_xlim(max(0.0, low - pad), high + 1.5 * pad)
    ax.set_xlabel(f"{metric}, mean over seeds, 95% CI\n(p: paired t vs the first variant, Holm)")
    ax.set_title(title or metric)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, plt, out_png)


def plot_overlaid_curves(curves_by_variant: dict[str, str | Path], keys: list[str], out_png: str | Path,
                         title: str = "") -> Path:
    """One panel per key, one line per variant, from {variant: metrics.jsonl path}."""
    from ragtune.training.curves import read_curves

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    drawn = 0
    for variant, path in curves_by_variant.items():
        if not Path(path).is_file():
            continue
        curves = read_curves(path, keys)
        for ax, key in zip(axes[0], keys, strict=True):
            steps, values = last_per_step(*curves[key])
            if steps:
                ax.plot(steps, values, marker="o" if len(steps) < 8 else None, markersize=3, label=variant)
                drawn += 1
    if not drawn:
        raise ValueError(f"none of {keys} was logged by any variant")
    from matplotlib.ticker import MaxNLocator

    for ax, key in zip(axes[0], keys, strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, out_png)


def _save(fig, plt, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
