"""Run an ablation sweep: every variant through `ragtune run`, then a table and plots.

    ragtune sweep configs/sweeps/scifact_ablation.py [--out DIR] [--dry-run]
        [--only VARIANT ...] [--section.key=value ...]   # extra overrides apply to every variant

Each variant runs in its own process, one after the other, into <out>/<variant>/ (default
out: runs/sweeps/<sweep name>). Re-running the same command is safe: a variant with a
results.json is skipped (unless its saved config no longer matches the sweep: then it stops
and says which keys changed); one with checkpoints/latest but no results.json (it crashed or
was killed) resumes with --train.resume=latest; anything else starts fresh. W&B runs are
grouped under the sweep name (log.group) and named <sweep>/<variant>.
Writes <out>/results.csv (every results.json key), <out>/results.md, <out>/<metric>.png
(one bar per variant) and <out>/curves.png (training curves overlaid).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ragtune.config import ConfigError, parse_cli_overrides
from ragtune.sweep.spec import (
    Sweep,
    Variant,
    cli_value,
    collect_rows,
    expand_variants,
    load_sweep,
    markdown_table,
    resolved_config,
    seed_summary,
    seed_table,
    stale_keys,
    varying_keys,
    write_csv,
)

REPO = Path(__file__).resolve().parents[2]  # the checkout: configs/ and runs/


def base_config_path(sweep: Sweep) -> Path:
    path = Path(sweep.config)
    return path if path.is_absolute() else REPO / path


def variant_command(sweep: Sweep, variant: Variant, extra: dict[str, str], out: Path, resume: bool) -> list[str]:
    """Later overrides win in run.py, so CLI extras come after the sweep's and the variant's own."""
    overrides = {**sweep.overrides, **variant.overrides,
                 "log.group": sweep.name, "log.run_name": f"{sweep.name}/{variant.name}", **extra}
    cmd = [sys.executable, "-m", "ragtune", "run", "--config", str(base_config_path(sweep))]
    cmd += [f"--{k}={cli_value(v)}" for k, v in overrides.items()]
    cmd.append(f"--output_dir={out}")
    if resume:
        cmd.append("--train.resume=latest")
    elif (out / "config.json").is_file():  # an earlier launch died before its first checkpoint: start over
        cmd.append("--overwrite")
    return cmd


def run_variant(cmd: list[str], out: Path) -> tuple[int, float]:
    """Run one variant, its output appended to <out>/run.log; count it and its wall time in <out>/sweep.json."""
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "sweep.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"wall_seconds": 0.0, "launches": 0}
    record["launches"] += 1  # counted up front: a killed launch never reaches the end of this function
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    start = time.perf_counter()
    with (out / "run.log").open("a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    seconds = time.perf_counter() - start
    record["wall_seconds"] += seconds  # summed over launches (a killed launch's time is not known)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return code, seconds


def report(sweep: Sweep, variants: list[Variant], sweep_dir: Path) -> None:
    """results.csv, results.md and the PNGs from whatever variants have finished."""
    rows = collect_rows(sweep_dir, variants)
    if not rows:
        print("no finished variant yet: nothing to tabulate")
        return
    write_csv(rows, sweep_dir / "results.csv")
    metric = sweep.metrics[0]
    baseline = metric.replace("final/", "baseline/", 1)
    keys = varying_keys([v.overrides for v in variants])
    table = markdown_table(rows, keys, list(sweep.metrics))
    pngs = []
    try:
        from ragtune.sweep.plots import plot_metric_bars, plot_overlaid_curves

        bars = sweep_dir / f"{metric.replace('/', '_').replace('@', '_at_')}.png"
        pngs.append(plot_metric_bars(rows, metric, bars, baseline_metric=baseline, title=f"{sweep.name}: {metric}"))
        curves = {r["variant"]: sweep_dir / r["variant"] / "metrics.jsonl" for r in rows}
        pngs.append(plot_overlaid_curves(curves, list(sweep.curves), sweep_dir / "curves.png", title=sweep.name))
    except ValueError as e:  # e.g. an evaluation-only sweep logs no curves: the table still stands
        print(f"plots: {e}")
    seeds = ""
    if "seed" in keys:  # a seeds axis: mean and 95% CI per variant, paired tests against the first
        summary = seed_summary(rows, metric)
        seeds = "\n### Over seeds\n\n" + seed_table(summary, metric)
        from ragtune.sweep.plots import plot_seed_bars

        pngs.append(plot_seed_bars(summary, metric, sweep_dir / "seeds.png", title=f"{sweep.name}: {metric}"))
        (sweep_dir / "seeds.json").write_text(json.dumps(summary, indent=2) + "\n")
    images = "".join(f"![{p.stem}]({p.name})\n" for p in pngs)
    (sweep_dir / "results.md").write_text(f"## {sweep.name}\n\n{sweep.description}\n\n{table}{seeds}\n{images}")
    print("\n" + table + seeds)
    print(f"wrote {sweep_dir / 'results.csv'}, {sweep_dir / 'results.md'}" + "".join(f", {p}" for p in pngs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="a sweep file exposing get_sweep()")
    parser.add_argument("--out", default="", help="sweep folder (default runs/sweeps/<name>)")
    parser.add_argument("--only", action="append", default=[], help="run only this variant (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--report-only", action="store_true", help="rebuild the table and plots, run nothing")
    args, rest = parser.parse_known_args(argv)
    try:
        sweep = load_sweep(args.sweep)
        extra = parse_cli_overrides(rest)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_sweep(sweep, extra, args.out, args.only, args.dry_run, args.report_only)


def run_sweep(sweep: Sweep, extra: dict[str, str], out: str = "", only: list[str] = (), dry_run: bool = False,
              report_only: bool = False) -> int:
    """Run (or resume, or skip) every variant, then write the table and plots; the exit code."""
    try:
        variants = expand_variants(sweep.variants)
        unknown = set(only) - {v.name for v in variants}
        if unknown:
            raise ConfigError(f"--only {sorted(unknown)}: no such variant; known: {[v.name for v in variants]}")
        # Resolve every variant's config before running any: a typo fails now, not after hours.
        configs = {v.name: resolved_config(sweep, v, extra, REPO) for v in variants}
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sweep_dir = Path(out or REPO / "runs" / "sweeps" / sweep.name)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(
        {"name": sweep.name, "config": sweep.config, "overrides": sweep.overrides, "extra": extra,
         "variants": {v.name: v.overrides for v in variants}}, indent=2, default=str) + "\n")
    failed = []
    todo = [v for v in variants if not only or v.name in only]
    for i, v in enumerate([] if report_only else todo, start=1):
        out = sweep_dir / v.name
        tag = f"[{i}/{len(todo)}] {v.name}"
        if (out / "results.json").is_file():
            diff = stale_keys(configs[v.name], out / "config.json")
            if diff:
                print(f"error: {tag} finished with a different config ({'; '.join(diff)}); "
                      f"delete {out} to rerun it", file=sys.stderr)
                return 2
            print(f"{tag}: finished, skipped")
            continue
        resume = (out / "checkpoints" / "latest").is_file()
        cmd = variant_command(sweep, v, extra, out, resume)
        if dry_run:
            print(f"{tag}: {' '.join(cmd)}")
            continue
        print(f"{tag}: {'resuming from checkpoints/latest' if resume else 'running'} (log: {out / 'run.log'})",
              flush=True)
        code, seconds = run_variant(cmd, out)
        if code != 0:
            failed.append(v.name)
            tail = (out / "run.log").read_text()[-1500:]
            print(f"{tag}: FAILED (exit {code}) after {seconds:.0f} s; last lines of run.log:\n{tail}", flush=True)
            continue  # the other variants still run; rerunning the sweep retries (or resumes) this one
        results = json.loads((out / "results.json").read_text())
        if (out / "timings.json").is_file():  # a sweep's metrics may be timings keys (dev_best)
            results = {**json.loads((out / "timings.json").read_text()), **results}
        shown = ", ".join(f"{m}={results[m]:.4f}" for m in sweep.metrics if isinstance(results.get(m), (int, float)))
        print(f"{tag}: done in {seconds:.0f} s: {shown}", flush=True)
    if not dry_run:
        report(sweep, variants, sweep_dir)
    if failed:
        print(f"failed variants: {failed}; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
