"""Training length by inner cross-validation: for collections whose labels are too few for a dev tenth.

With a small labelled set (Cranfield: 180 train queries per outer fold, so a 10% dev hold-out is
18 queries) the best dev checkpoint is mostly noise. `ragtune cv --inner-folds k` instead runs the
recipe k times per outer fold, each with one of k folds of the train queries as dev
(data.dev_folds / data.dev_fold), averages the k dev curves point by point, and picks the point
(in epochs; epoch 0 = the untrained model) where the mean is highest. The outer fold's final run
then trains on every train query and stops there (train.select=last, train.stop_at_epoch), so
every train query both trains the model and helps choose its length, and no test query does.
"""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.training.curves import read_curves


def dev_curve(run_dir: Path, metric: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of dev/<metric> at each dev evaluation of a finished run, step 0 first."""
    steps_per_epoch = json.loads((run_dir / "timings.json").read_text())["steps_per_epoch"]
    steps, values = read_curves(run_dir / "metrics.jsonl", [f"dev/{metric}"])[f"dev/{metric}"]
    if not steps:
        raise ValueError(f"{run_dir / 'metrics.jsonl'}: no dev/{metric} was logged")
    return [s / steps_per_epoch for s in steps], values


def choose_length(curves: list[tuple[list[float], list[float]]]) -> dict[str, object]:
    """The evaluation point whose mean over the inner folds' dev curves is highest (the earliest on a tie,
    so the untrained model wins ties); curves are aligned by evaluation index, cut to the shortest.

    Returns {"epochs": mean epoch per point, "mean": mean dev value per point, "chosen_epoch",
    "chosen_mean", "initial_mean"}."""
    if not curves:
        raise ValueError("no inner-fold curve to choose from")
    points = min(len(epochs) for epochs, _ in curves)
    epochs = [sum(c[0][i] for c in curves) / len(curves) for i in range(points)]
    mean = [sum(c[1][i] for c in curves) / len(curves) for i in range(points)]
    best = max(range(points), key=lambda i: (mean[i], -i))
    return {"epochs": epochs, "mean": mean, "chosen_epoch": epochs[best], "chosen_mean": mean[best],
            "initial_mean": mean[0]}


def plot_inner_curves(choices: dict[int, dict[str, object]], metric: str, out_png: Path) -> Path:
    """One line per outer fold: the mean inner dev curve, with the chosen point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for fold, c in sorted(choices.items()):
        line = ax.plot(c["epochs"], c["mean"], label=f"outer fold {fold}")[0]
        ax.plot([c["chosen_epoch"]], [c["chosen_mean"]], marker="*", markersize=12, color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean inner dev {metric}")
    ax.set_title("training length by inner cross-validation (star: chosen)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
