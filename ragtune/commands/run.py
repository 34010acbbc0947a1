"""The one entry point: build a task from a config, train it (if it trains), evaluate, save.

    ragtune run --config configs/scifact_zeroshot.py
    accelerate launch experiments/run.py --config configs/scifact_biencoder.py --optim.lr=3e-5

Writes to `output_dir`: config.json (resolved config), metrics.jsonl (training curve),
checkpoints/, best/, the exported model, timings.json and, last, results.json (flat
`<stage>/<split>/<metric>@<k>`: `baseline/...` before training, `final/...` after): a run with a
results.json is complete. A folder that already holds a run is refused unless `--train.resume`
continues it or `--overwrite` replaces it; a run holds a lock on the folder while it writes.

Multi-process (CPU or GPU): `train.batch_size` is the GLOBAL batch, split evenly over the processes,
so N processes compute what one process computes with the same config (in-batch negatives are
gathered across processes), only faster:

    accelerate launch --num_processes 2 experiments/run.py --config ...         # GPUs
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 experiments/run.py --config ...   # CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, broadcast_object_list, set_seed

from ragtune.commands import parse_config_args
from ragtune.config import ConfigError, apply_overrides, save_config
from ragtune.data.beir import DataError, dataset_dir
from ragtune.eval.metrics import Evaluated, evaluation_of, recording
from ragtune.eval.saved import load_per_query, save_evaluation
from ragtune.eval.significance import compare_per_query, comparison_table
from ragtune.tasks import Task, build_task, task_module
from ragtune.training.checkpoint import resolve_resume
from ragtune.training.loop import NonFiniteLossError, check_loader, train
from ragtune.training.run_dir import RunLock, atomic_write_text, prepare_output_dir
from ragtune.training.tracking import MetricsLog, start_tracking, tracker_kwargs


def evaluate_stage(parts: Task, model, stage: str, out: Path | None = None) -> dict[str, float]:
    """{'<stage>/<split>/<metric>': value}; with `out`, each split's per-query metrics and run are saved."""
    results = {}
    for split in parts.eval_splits:
        with recording() as calls:
            if stage == "baseline" and parts.baseline_evaluate is not None:
                metrics = parts.baseline_evaluate(split)
            else:
                metrics = parts.evaluate(model, split)
        evaluated = evaluation_of(calls, metrics)
        found = {split: evaluated} if evaluated is not None else {}
        if evaluated is not None and parts.train_positives is not None:
            found.update(positive_overlap_splits(split, evaluated, parts.train_positives))
        for name, ev in found.items():
            if out is not None:
                save_evaluation(out, stage, name, ev)
        for metric, value in metrics.items():
            results[f"{stage}/{split}/{metric}"] = value
        for name, ev in found.items():
            if name != split:
                results.update({f"{stage}/{name}/{metric}": value for metric, value in ev.means.items()})
    return results


def positive_overlap_splits(split: str, evaluated: Evaluated, train_positives: frozenset[str]) -> dict:
    """{'<split>_seen_pos': ..., '<split>_unseen_pos': ...}: eval queries with / without a relevant
    document that was a training positive (empty subsets are left out)."""
    seen = {q for q, judged in evaluated.qrels.items() if q in evaluated.rows
            and any(g >= 1 and d in train_positives for d, g in judged.items())}
    subsets = {f"{split}_seen_pos": seen, f"{split}_unseen_pos": set(evaluated.rows) - seen}
    return {name: evaluated.subset(qids) for name, qids in subsets.items() if qids}


def significance(out: Path, splits: list[str], seed: int) -> dict[str, dict]:
    """final vs baseline on each split that has both: a paired randomization test and a bootstrap CI per metric."""
    found = {}
    for split in splits:
        try:
            before, after = load_per_query(out, "baseline", split), load_per_query(out, "final", split)
        except FileNotFoundError:
            continue
        found[split] = compare_per_query(before, after, seed=seed)
    return found


def print_table(results: dict[str, float]) -> None:
    stages = list(dict.fromkeys(k.split("/", 1)[0] for k in results))
    rows = list(dict.fromkeys(k.split("/", 1)[1] for k in results))
    print("\n" + " | ".join([f"{'metric':<22}"] + [f"{s:>9}" for s in stages]))
    for row in rows:
        cells = [f"{results[f'{s}/{row}']:>9.4f}" if f"{s}/{row}" in results else f"{'':>9}" for s in stages]
        print(" | ".join([f"{row:<22}"] + cells))


def check_precision(cfg) -> None:
    """fp16 autocast needs a GPU; bf16 runs on a CPU but far slower than fp32 (README, Reliability)."""
    if cfg.train.mixed_precision == "no" or torch.cuda.is_available():
        return
    if cfg.train.mixed_precision == "fp16":
        raise ConfigError("--train.mixed_precision=fp16 needs a CUDA GPU; on a CPU use 'no' (fp32)")
    print("warning: train.mixed_precision=bf16 on a CPU: bf16 autocast was measured several times slower "
          "than fp32 on CPU cores (README, Reliability); use --train.mixed_precision=no here", file=sys.stderr)


def on_main_process(accelerator, fn):
    """fn() on the main process only; its result, or its ConfigError, reaches every process."""
    box = [None, None]
    if accelerator.is_main_process:
        try:
            box[0] = fn()
        except (ConfigError, FileNotFoundError) as e:
            box[1] = str(e)
    broadcast_object_list(box)
    if box[1] is not None:
        raise ConfigError(box[1])
    return box[0]


def export_model(parts: Task, model, path: Path) -> None:
    """Export into a temporary folder, then rename it into place: `model/` is complete or absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    parts.export(model, tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def run(cfg) -> dict[str, float]:
    out = Path(cfg.output_dir)
    check_precision(cfg)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.train.grad_accum,
                              mixed_precision=cfg.train.mixed_precision,
                              dataloader_config=DataLoaderConfiguration(split_batches=True), **tracker_kwargs(cfg))
    if cfg.train.batch_size % accelerator.num_processes:
        raise ConfigError(f"--train.batch_size={cfg.train.batch_size} is the global batch: it must split evenly "
                          f"over the {accelerator.num_processes} processes")
    lock = RunLock(out)
    try:
        applied = on_main_process(accelerator, lambda: prepare_output_dir(
            cfg, lock, resolve_resume(cfg.train.resume, out)))
        for key, (old, new) in applied.items():
            accelerator.print(f"resume: {key} {old!r} -> {new!r}, applied from the resumed step on")
        return run_locked(cfg, accelerator)
    finally:
        lock.release()


def run_locked(cfg, accelerator: Accelerator) -> dict[str, float]:
    """Everything a run does once its output folder is locked and checked."""
    out = Path(cfg.output_dir)
    set_seed(cfg.seed)
    if accelerator.is_main_process:
        save_config(cfg, out / "config.json")
    start_tracking(accelerator, cfg)
    log = MetricsLog(accelerator, out)
    parts = build_task(cfg, accelerator)
    if parts.train_loader is not None:
        check_loader(cfg, parts.train_loader)  # before the baseline evaluation's minutes
    results: dict[str, float] = {}
    baseline = cfg.eval.baseline and accelerator.is_main_process and (
        parts.train_loader is not None or parts.baseline_evaluate is not None)
    initial_model = None
    if baseline and cfg.eval.baseline_after_training and parts.train_loader is not None:
        initial_model = copy.deepcopy(parts.model)  # before training touches the weights; evaluated last
    elif baseline:
        results.update(evaluate_stage(parts, parts.model, "baseline", out))
    if parts.train_loader is not None:
        start = time.perf_counter()  # training time includes dev evaluations, not the baseline
        train(cfg, parts, accelerator, log)
        parts.timings["train_seconds"] = time.perf_counter() - start
    if accelerator.is_main_process:
        if initial_model is not None:
            results.update(evaluate_stage(parts, initial_model, "baseline", out))
            del initial_model
        model = accelerator.unwrap_model(parts.model) if parts.model is not None else None
        results.update(evaluate_stage(parts, model, "final", out))
        splits = [s for s in parts.eval_splits for s in (s, f"{s}_seen_pos", f"{s}_unseen_pos")]
        tests = significance(out, splits, cfg.seed)
        if tests:
            atomic_write_text(out / "significance.json", json.dumps(tests, indent=2) + "\n")
        if parts.export is not None:
            export_model(parts, model, out / "model")
        atomic_write_text(out / "timings.json", json.dumps(parts.timings, indent=2) + "\n")
        log.log(results, step=-1)
        # Last, and atomic: a run with a results.json is complete (sweeps skip it as done).
        recorded = {**results, "inference_backend": cfg.eval.backend}  # how the test evaluations ran
        if cfg.task in ("reranker", "rerank_eval"):
            recorded["rerank_backend"] = cfg.rerank.backend or cfg.eval.backend
        atomic_write_text(out / "results.json", json.dumps(recorded, indent=2) + "\n")
        print_table(results)
        for split, table in tests.items():
            shown = {m: r for m, r in table.items() if m in ("ndcg@10", "recall@10", "mrr@10")} or table
            print(f"\nfinal vs baseline on {split}:\n{comparison_table(shown, 'baseline', 'final')}", end="")
        print(f"\nresults: {out / 'results.json'}")
    accelerator.end_training()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help and every config key")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir")
    try:
        parsed = parse_config_args(parser, argv)
        if parsed is None:
            return 0
        args, cfg = parsed
        if args.overwrite:
            cfg = apply_overrides(cfg, {"overwrite": "true"})
        task_module(cfg.task)  # an unknown task fails here, before any loading
        dataset_dir(cfg.data.dataset, cfg.data.data_root or None)  # so does a missing dataset
        run(cfg)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
