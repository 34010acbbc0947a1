"""k-fold cross-validation of any config over the queries of its eval split (data.cv_folds).

    ragtune cv --config configs/cranfield_adapter.py [--folds 5] [--cv-seed 0] [--inner-folds K]
        [--out DIR] [--section.key=value ...]   # overrides for every fold

For collections with one labelled split (Cranfield: test only). Fold i trains on the other k - 1
folds (its dev hold-out comes out of them) and is tested on fold i; the folds are seeded, disjoint
and cover every query (ragtune/data/folds.py). Each fold is a variant of a sweep (ragtune/commands/sweep.py):
its own run folder <out>/cv_fold=i, skipped when finished, resumed when killed. Writes <out>/cv.json and
<out>/cv.md: per metric the mean and standard deviation over folds of the baseline (the untrained
model on the fold's test part), the final model and their difference, and how many folds improved.

--inner-folds K chooses each fold's training length by inner cross-validation instead of its 10%
dev hold-out (ragtune/sweep/inner_cv.py): K runs per fold in <out>/inner, each with one of K folds
of the fold's train queries as dev; then the fold's run trains on all of them and stops at the epoch
where the K dev curves' mean is highest (epoch 0: the untrained model). The choices go to cv.json,
cv.md and inner_curves.png. For tasks whose runs are cheap (the adapter: seconds a run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ragtune.commands.sweep import run_sweep
from ragtune.config import ConfigError, parse_cli_overrides
from ragtune.sweep.inner_cv import choose_length, dev_curve, plot_inner_curves
from ragtune.sweep.spec import Sweep, collect_rows, expand_variants, fold_summary

REPO = Path(__file__).resolve().parents[2]  # the checkout: configs/ and runs/

METRICS = ("final/test/ndcg@10", "final/test/recall@10", "final/test/mrr@10", "final/test/recall@100")
# An inner run is shown and tabulated by its dev metric only: its test numbers (the outer fold's test part,
# which `ragtune run` always evaluates) choose nothing and are not shown, so nobody is tempted to.
INNER_METRICS = ("dev_initial", "dev_best", "best_step")


def cv_table(summary: dict[str, dict[str, float]]) -> str:
    """Markdown: metric | baseline | final | final - baseline (mean ± std over folds) | folds improved."""
    lines = ["| metric | baseline | final | final − baseline | folds improved |", "|---|---|---|---|---|"]
    for metric, s in summary.items():
        base = f"{s['baseline_mean']:.4f} ± {s['baseline_std']:.4f}" if "baseline_mean" in s else "–"
        delta = f"{s['delta_mean']:+.4f} ± {s['delta_std']:.4f}" if "delta_mean" in s else "–"
        improved = f"{s['improved']}/{s['folds']}" if "improved" in s else "–"
        lines.append(f"| {metric} | {base} | {s['final_mean']:.4f} ± {s['final_std']:.4f} | {delta} | {improved} |")
    return "\n".join(lines) + "\n"


def inner_table(choices: dict[int, dict[str, object]]) -> str:
    """Markdown: per outer fold, the mean inner dev metric untrained and at the chosen length."""
    lines = ["", "| outer fold | mean inner dev, epoch 0 | chosen epoch | mean inner dev there |", "|---|---|---|---|"]
    lines += [f"| {i} | {c['initial_mean']:.4f} | {c['chosen_epoch']:g} | {c['chosen_mean']:.4f} |"
              for i, c in sorted(choices.items())]
    return "\n".join(lines) + "\n"


def inner_choices(args, outer: dict, extra: dict[str, str], out: Path) -> tuple[int, dict[int, dict]]:
    """Run the inner folds of every outer fold (skipping finished ones) and choose each fold's length."""
    k = args.inner_folds
    inner = Sweep(name=f"{out.name}_inner", config=str(Path(args.config).resolve()),
                  variants=[{"data.cv_fold": list(range(args.folds)), "data.dev_fold": list(range(k))}],
                  overrides={**outer, "data.dev_folds": k}, metrics=INNER_METRICS,
                  description=f"inner folds: {k} dev folds of each outer fold's train queries")
    code = run_sweep(inner, extra, str(out / "inner"))
    if code:
        print("error: the inner folds did not all finish; rerun the same command", file=sys.stderr)
        return code, {}
    by_fold: dict[int, list] = {}
    for v in expand_variants(inner.variants):
        run_dir = out / "inner" / v.name
        metric = json.loads((run_dir / "config.json").read_text())["train"]["metric_for_best"]
        by_fold.setdefault(v.overrides["data.cv_fold"], []).append(dev_curve(run_dir, metric))
    choices = {fold: choose_length(curves) for fold, curves in sorted(by_fold.items())}
    for fold, c in choices.items():
        print(f"outer fold {fold}: mean inner dev {metric} {c['initial_mean']:.4f} untrained, "
              f"{c['chosen_mean']:.4f} at epoch {c['chosen_epoch']:g} (chosen)")
    out.mkdir(parents=True, exist_ok=True)
    plot_inner_curves(choices, metric, out / "inner_curves.png")
    return 0, choices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a Python file exposing get_config()")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cv-seed", type=int, default=0)
    parser.add_argument("--inner-folds", type=int, default=0,
                        help=">= 2: choose each fold's training length by this many inner folds of its train queries")
    parser.add_argument("--out", default="", help="default runs/cv/<config name>")
    args, rest = parser.parse_known_args(argv)
    try:
        extra = parse_cli_overrides(rest)
        if args.inner_folds == 1 or args.inner_folds < 0:
            raise ConfigError(f"--inner-folds {args.inner_folds}: must be 0 (the dev hold-out) or >= 2")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = f"{Path(args.config).stem}_cv{args.folds}" + (f"_inner{args.inner_folds}" if args.inner_folds else "")
    outer = {"data.cv_folds": args.folds, "data.cv_seed": args.cv_seed}
    out = Path(args.out or REPO / "runs" / "cv" / name)
    folds, choices = [{"data.cv_fold": list(range(args.folds))}], {}
    if args.inner_folds:
        code, choices = inner_choices(args, outer, extra, out)
        if code:
            return code
        folds = [{"data.cv_fold": [i], "train.stop_at_epoch": [round(c["chosen_epoch"], 4)]}
                 for i, c in choices.items()]
        outer = {**outer, "train.select": "last"}
    sweep = Sweep(name=name, config=str(Path(args.config).resolve()), variants=folds, overrides=outer,
                  metrics=METRICS, description=f"{args.folds}-fold cross-validation over the eval split's queries"
                  + (f", training length by {args.inner_folds} inner folds" if args.inner_folds else ""))
    code = run_sweep(sweep, extra, str(out))
    if code == 2:  # a bad config or override, already named: rerunning would not help
        return 2
    rows = collect_rows(out, expand_variants(sweep.variants))
    if code != 0 or len(rows) < args.folds:
        print(f"error: {len(rows)} of {args.folds} folds finished; rerun the same command", file=sys.stderr)
        return code or 1
    summary = fold_summary(rows, [m for m in METRICS if m in rows[0]])
    (out / "cv.json").write_text(json.dumps({**summary, "inner": choices} if choices else summary, indent=2) + "\n")
    table = cv_table(summary) + (inner_table(choices) if choices else "")
    (out / "cv.md").write_text(f"## {name}\n\n{sweep.description}, seed {args.cv_seed}\n\n{table}")
    print(f"\n{args.folds}-fold cross-validation (mean ± std over folds)\n{table}\nwrote {out / 'cv.json'}, "
          f"{out / 'cv.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
