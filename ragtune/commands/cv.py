"""k-fold cross-validation of any config over the queries of its eval split (data.cv_folds).

    ragtune cv --config configs/cranfield_adapter.py [--folds 5] [--cv-seed 0] [--out DIR]
        [--section.key=value ...]   # overrides for every fold

For collections with one labelled split (Cranfield: test only). Fold i trains on the other k - 1
folds (its dev hold-out comes out of them) and is tested on fold i; the folds are seeded, disjoint
and cover every query (ragtune/data/folds.py). Each fold is a variant of a sweep (ragtune/commands/sweep.py):
its own run folder <out>/cv_fold=i, skipped when finished, resumed when killed. Writes <out>/cv.json and
<out>/cv.md: per metric the mean and standard deviation over folds of the baseline (the untrained
model on the fold's test part), the final model and their difference, and how many folds improved.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ragtune.commands.sweep import run_sweep
from ragtune.config import ConfigError, parse_cli_overrides
from ragtune.sweep.spec import Sweep, collect_rows, expand_variants, fold_summary

REPO = Path(__file__).resolve().parents[2]  # the checkout: configs/ and runs/

METRICS = ("final/test/ndcg@10", "final/test/recall@10", "final/test/mrr@10", "final/test/recall@100")


def cv_table(summary: dict[str, dict[str, float]]) -> str:
    """Markdown: metric | baseline | final | final - baseline (mean ± std over folds) | folds improved."""
    lines = ["| metric | baseline | final | final − baseline | folds improved |", "|---|---|---|---|---|"]
    for metric, s in summary.items():
        base = f"{s['baseline_mean']:.4f} ± {s['baseline_std']:.4f}" if "baseline_mean" in s else "–"
        delta = f"{s['delta_mean']:+.4f} ± {s['delta_std']:.4f}" if "delta_mean" in s else "–"
        improved = f"{s['improved']}/{s['folds']}" if "improved" in s else "–"
        lines.append(f"| {metric} | {base} | {s['final_mean']:.4f} ± {s['final_std']:.4f} | {delta} | {improved} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a Python file exposing get_config()")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cv-seed", type=int, default=0)
    parser.add_argument("--out", default="", help="default runs/cv/<config name>")
    args, rest = parser.parse_known_args(argv)
    try:
        extra = parse_cli_overrides(rest)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = f"{Path(args.config).stem}_cv{args.folds}"
    folds = [{"data.cv_fold": list(range(args.folds))}]
    sweep = Sweep(name=name, config=str(Path(args.config).resolve()), variants=folds,
                  overrides={"data.cv_folds": args.folds, "data.cv_seed": args.cv_seed}, metrics=METRICS,
                  description=f"{args.folds}-fold cross-validation over the eval split's queries")
    out = Path(args.out or REPO / "runs" / "cv" / name)
    code = run_sweep(sweep, extra, str(out))
    if code == 2:  # a bad config or override, already named: rerunning would not help
        return 2
    rows = collect_rows(out, expand_variants(sweep.variants))
    if code != 0 or len(rows) < args.folds:
        print(f"error: {len(rows)} of {args.folds} folds finished; rerun the same command", file=sys.stderr)
        return code or 1
    summary = fold_summary(rows, [m for m in METRICS if m in rows[0]])
    (out / "cv.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = cv_table(summary)
    (out / "cv.md").write_text(f"## {name}\n\n{sweep.description}, seed {args.cv_seed}\n\n{table}")
    print(f"\n{args.folds}-fold cross-validation (mean ± std over folds)\n{table}\nwrote {out / 'cv.json'}, "
          f"{out / 'cv.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
