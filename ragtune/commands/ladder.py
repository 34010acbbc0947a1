"""The whole ladder on any BEIR folder in one command: zero-shot, BM25, hybrid, adapter, bi-encoder.

    ragtune ladder --data.data_root=DIR --data.dataset=NAME [--folds 5 [--inner-folds 5]] [--out DIR]
        [--rungs zeroshot,bm25,hybrid,adapter,biencoder] [--section.key=value ...]

Each rung is a shipped recipe (configs/scifact_<rung>.py) run unchanged but for the overrides
given here, so this is how the recipes carry to your collection. A collection with a train split
runs each rung once (experiments/run.py); `--folds K` cross-validates each rung over the eval
split's queries instead (ragtune/commands/cv.py; for a collection with one labelled split), and
the adapter rung then chooses its training length by K inner folds (`--inner-folds`, default K; its
runs take seconds; the bi-encoder's would take K + 1 times as long, so it keeps its dev hold-out). Finished
rungs are skipped on a rerun. Writes <out>/ladder.md (one row per rung: test metrics, mean ± std
over folds with --folds) and <out>/ladder_ndcg_at_10.png (one bar per rung).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ragtune.config import ConfigError, load_config, parse_cli_overrides

REPO = Path(__file__).resolve().parents[2]  # the checkout: configs/ and runs/

RUNGS = ("zeroshot", "bm25", "hybrid", "adapter", "biencoder")
INNER_CV_RUNGS = ("adapter",)  # cheap enough to run K + 1 times per fold
METRICS = ("ndcg@10", "recall@10", "mrr@10", "recall@100")


def rung_command(rung: str, overrides: dict[str, str], out: Path, folds: int, inner_folds: int = 0) -> list[str]:
    config = str(REPO / "configs" / f"scifact_{rung}.py")
    extra = [f"--{k}={v}" for k, v in overrides.items()]
    if not folds and (out / "config.json").is_file():  # an earlier launch died before results.json: start over
        extra.append("--overwrite")
    if folds:
        inner = ["--inner-folds", str(inner_folds)] if inner_folds and rung in INNER_CV_RUNGS else []
        return [sys.executable, "-m", "ragtune", "cv", "--config", config, "--folds", str(folds), *inner,
                "--out", str(out), *extra]
    return [sys.executable, "-m", "ragtune", "run", "--config", config, *extra, f"--output_dir={out}"]


def rung_row(rung: str, out: Path, folds: int) -> dict[str, object]:
    """{'variant': rung, 'final/test/<metric>': value or fold mean, '<...>_std': fold std}."""
    row: dict[str, object] = {"variant": rung}
    if folds:
        for key, s in json.loads((out / "cv.json").read_text()).items():
            if "final_mean" in s:  # metrics; "inner" holds the inner-fold choices
                row[key], row[f"{key}_std"] = s["final_mean"], s["final_std"]
    else:
        row.update(json.loads((out / "results.json").read_text()))
    return row


def ladder_table(rows: list[dict[str, object]], split: str, folds: int) -> str:
    head = f"| rung | {' | '.join(METRICS)} |"
    lines = [head, "|---" * (len(METRICS) + 1) + "|"]
    for row in rows:
        cells = []
        for metric in METRICS:
            key = f"final/{split}/{metric}"
            value = row.get(key)
            std = f" ± {row[f'{key}_std']:.4f}" if folds and f"{key}_std" in row else ""
            cells.append(f"{value:.4f}{std}" if isinstance(value, float) else "–")
        lines.append(f"| {row['variant']} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=0, help="k-fold cross-validation over queries (0: train split)")
    parser.add_argument("--inner-folds", type=int, default=None,
                        help=f"with --folds: the {INNER_CV_RUNGS} rungs choose their training length by K inner folds "
                             "(default: K = --folds; 0: a 10%% dev hold-out instead)")
    parser.add_argument("--rungs", default=",".join(RUNGS))
    parser.add_argument("--out", default="", help="default runs/ladder/<dataset>")
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = parse_cli_overrides(rest)
        rungs = [r for r in args.rungs.split(",") if r]
        unknown = sorted(set(rungs) - set(RUNGS))
        if unknown:
            raise ConfigError(f"--rungs: unknown {unknown}; choose from {list(RUNGS)}")
        if args.inner_folds is None:  # a collection cross-validated has few labels: its dev tenth would be noise
            args.inner_folds = args.folds
        if args.inner_folds and (args.inner_folds < 2 or not args.folds):
            raise ConfigError(f"--inner-folds {args.inner_folds}: needs >= 2 and --folds")
        for rung in rungs:  # every rung's config parses before anything runs
            cfg = load_config(REPO / "configs" / f"scifact_{rung}.py",
                              {**overrides, **({"data.cv_folds": str(args.folds)} if args.folds else {})})
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or REPO / "runs" / "ladder" / cfg.data.dataset)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, rung in enumerate(rungs, start=1):
        rung_out = out / rung
        done = (rung_out / ("cv.json" if args.folds else "results.json")).is_file()
        if done and args.folds and rung in INNER_CV_RUNGS:  # finished the same way: with or without inner folds
            done = ("inner" in json.loads((rung_out / "cv.json").read_text())) == bool(args.inner_folds)
        if not done:
            print(f"[{i}/{len(rungs)}] {rung}: running (log: {rung_out}.log)", flush=True)
            with open(f"{rung_out}.log", "a") as log:
                code = subprocess.call(rung_command(rung, overrides, rung_out, args.folds, args.inner_folds),
                                       stdout=log,
                                       stderr=subprocess.STDOUT, cwd=REPO)
            if code != 0:
                print(f"error: rung {rung} failed (exit {code}); see {rung_out}.log", file=sys.stderr)
                return 1
        else:
            print(f"[{i}/{len(rungs)}] {rung}: finished, skipped")
        rows.append(rung_row(rung, rung_out, args.folds))
    split = cfg.data.eval_split
    table = ladder_table(rows, split, args.folds)
    from ragtune.sweep.plots import plot_metric_bars

    png = plot_metric_bars(rows, f"final/{split}/ndcg@10", out / "ladder_ndcg_at_10.png",
                           title=f"{cfg.data.dataset}: the ladder" + (f" ({args.folds}-fold CV)" if args.folds else ""))
    how = f"{args.folds}-fold cross-validation, mean ± std over folds" if args.folds else f"{split} split"
    (out / "ladder.md").write_text(f"## {cfg.data.dataset}: the ladder ({how})\n\n{table}\n![ladder]({png.name})\n")
    print(f"\n{table}\nwrote {out / 'ladder.md'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
