"""Is the difference between two runs real? A paired randomization test and a bootstrap 95% CI.

    ragtune compare RUN                      # RUN's final vs its baseline (before training / first stage)
    ragtune compare RUN_A RUN_B              # RUN_B vs RUN_A, each at its final stage, over shared queries
        [--split test] [--stage-a final] [--stage-b final] [--metrics ndcg@10,recall@10,mrr@10]
        [--resamples 10000] [--seed 0]

Reads <run>/per_query/<stage>-<split>.jsonl (every run writes them); see ragtune/eval/significance.py
for the tests. Prints a markdown table: each metric's means, their difference, its 95% CI and p.
"""

from __future__ import annotations

import argparse
import sys

from ragtune.eval.saved import load_per_query
from ragtune.eval.significance import compare_per_query, comparison_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="one run folder (final vs baseline) or two (b vs a)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--stage-a", default="", help="default: baseline with one run, final with two")
    parser.add_argument("--stage-b", default="final")
    parser.add_argument("--metrics", default="ndcg@10,recall@10,mrr@10", help="comma-separated; 'all' for every one")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.runs) > 2:
        parser.error("give one run (final vs baseline) or two (b vs a)")
    if args.resamples < 1:
        parser.error(f"--resamples must be >= 1, got {args.resamples}")
    run_a, run_b = args.runs[0], args.runs[-1]
    stage_a = args.stage_a or ("baseline" if len(args.runs) == 1 else "final")
    try:
        a, b = load_per_query(run_a, stage_a, args.split), load_per_query(run_b, args.stage_b, args.split)
        metrics = None if args.metrics == "all" else [m.strip() for m in args.metrics.split(",") if m.strip()]
        known = set(next(iter(a.values()))) & set(next(iter(b.values())))
        unknown = sorted(set(metrics or []) - known)
        if unknown:
            raise ValueError(f"--metrics: {unknown} not in both runs (they have {sorted(known)})")
        result = compare_per_query(a, b, metrics, args.resamples, args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(comparison_table(result, f"{run_a} ({stage_a})", f"{run_b} ({args.stage_b})"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
