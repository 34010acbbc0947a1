#!/usr/bin/env python
"""The one entry point: build a task from a config, train it (if it trains), evaluate, save.

    accelerate launch experiments/run.py --config configs/scifact_biencoder.py --optim.lr=3e-5
    python experiments/run.py --config configs/scifact_zeroshot.py

Writes to `output_dir`: config.json (resolved config), results.json (flat
`<stage>/<split>/<metric>@<k>`: `baseline/...` before training, `final/...` after),
timings.json, metrics.jsonl (training curve), checkpoints/, best/ and the exported model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python experiments/run.py` finds experiments.*

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import set_seed  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from experiments.tasks import TaskParts, build_task  # noqa: E402
from ragtune.checkpoint import (  # noqa: E402
    load_checkpoint,
    load_trainable_state_dict,
    resolve_resume,
    save_checkpoint,
    save_trainable_only,
    trainable_state_dict,
)
from ragtune.config import ConfigError, apply_overrides, load_config_file, parse_cli_overrides, save_config  # noqa: E402
from ragtune.data.beir import DataError  # noqa: E402
from ragtune.optim import lr_lambda, param_groups  # noqa: E402
from ragtune.tracking import MetricsLog, start_tracking, tracker_kwargs  # noqa: E402


class NonFiniteLossError(RuntimeError):
    pass


def train(cfg, parts: TaskParts, accelerator: Accelerator, log: MetricsLog) -> dict | None:
    """Train parts.model with parts.step_fn; keep the best dev checkpoint; return its dev metrics."""
    out = Path(cfg.output_dir)
    optimizer = torch.optim.AdamW(param_groups(parts.model, cfg.optim.weight_decay),
                                  lr=cfg.optim.lr, betas=cfg.optim.betas)
    model, optimizer, loader = accelerator.prepare(parts.model, optimizer, parts.train_loader)
    steps_per_epoch = math.ceil(len(loader) / cfg.train.grad_accum)
    total_steps = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    # The scheduler is stepped by hand once per optimizer step (not prepared: accelerate would
    # step it once per process), so total_steps means the same thing on 1 or N processes.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        lr_lambda, warmup_steps=round(cfg.optim.warmup_ratio * total_steps),
        total_steps=total_steps, kind=cfg.optim.schedule))
    accelerator.register_for_checkpointing(scheduler)
    save_trainable_only(accelerator)
    eval_every = cfg.train.eval_every or steps_per_epoch
    save_every = cfg.train.save_every or eval_every

    state = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "best_metric": None, "best_step": None,
             "best_dev": None}
    resume_from = resolve_resume(cfg.train.resume, out)
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from, model)
        accelerator.print(f"resumed from {resume_from} at step {state['step']}")

    progress = tqdm(total=total_steps, initial=state["step"], desc="train", disable=not accelerator.is_main_process)
    model.train()
    while state["step"] < total_steps:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(state["epoch"])  # the sampler's shuffle depends on (seed, epoch) only
        # On resume, skip the batches this epoch already consumed (at the sampler, no collation).
        batches = accelerator.skip_first_batches(loader, state["batches_in_epoch"]) \
            if state["batches_in_epoch"] else loader
        for batch in batches:
            with accelerator.accumulate(model):
                loss, logs = parts.step_fn(model, batch)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss is {loss.item()} at step {state['step'] + 1} (epoch {state['epoch']}); "
                        f"stopped before the update. Last good checkpoint: {out / 'checkpoints' / 'latest'}. "
                        "Try a lower optim.lr, optim.max_grad_norm, or train.mixed_precision=no.")
                if not parts.step_does_backward:
                    accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.optim.max_grad_norm > 0:
                    logs["grad_norm"] = float(accelerator.clip_grad_norm_(model.parameters(),
                                                                          cfg.optim.max_grad_norm))
                optimizer.step()  # accelerate makes step/zero_grad no-ops between accumulation boundaries
                optimizer.zero_grad()
            state["batches_in_epoch"] += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            state["step"] += 1
            step = state["step"]
            progress.update(1)
            if step % cfg.log.log_every == 0 or step == 1:
                log.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0],
                         **{f"train/{k}": v for k, v in logs.items()}}, step)
                progress.set_postfix(loss=f"{loss.item():.4f}")
            if step % eval_every == 0 or step == total_steps:
                dev = parts.evaluate(accelerator.unwrap_model(model), "dev")
                model.train()
                log.log({f"dev/{k}": v for k, v in dev.items()}, step)
                metric = dev[cfg.train.metric_for_best]
                if state["best_metric"] is None or metric > state["best_metric"]:
                    state.update(best_metric=metric, best_step=step, best_dev=dev)
                    save_best_weights(accelerator, model, out / "best")
            if step % save_every == 0 or step == total_steps:
                save_checkpoint(accelerator, out, state)
            if step >= total_steps:
                break
        else:  # the epoch ran out of batches
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
    progress.close()
    if state["best_step"] is not None:
        load_trainable_state_dict(accelerator.unwrap_model(model), torch.load(out / "best" / "weights.pt",
                                                                              weights_only=True), "best/weights.pt")
        accelerator.print(f"best dev {cfg.train.metric_for_best}={state['best_metric']:.4f} "
                          f"at step {state['best_step']}")
    return state["best_dev"]


def save_best_weights(accelerator, model, path: Path) -> None:
    """Unwrapped trainable state (no frozen parameters) to best/weights.pt, written under a temporary
    name then renamed."""
    if accelerator.is_main_process:
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "weights.pt.tmp"
        torch.save(trainable_state_dict(accelerator.unwrap_model(model)), tmp)
        os.replace(tmp, path / "weights.pt")
    accelerator.wait_for_everyone()


def evaluate_stage(parts: TaskParts, model, stage: str) -> dict[str, float]:
    results = {}
    for split in parts.eval_splits:
        if stage == "baseline" and parts.baseline_evaluate is not None:
            metrics = parts.baseline_evaluate(split)
        else:
            metrics = parts.evaluate(model, split)
        for metric, value in metrics.items():
            results[f"{stage}/{split}/{metric}"] = value
    return results


def print_table(results: dict[str, float]) -> None:
    stages = list(dict.fromkeys(k.split("/", 1)[0] for k in results))
    rows = list(dict.fromkeys(k.split("/", 1)[1] for k in results))
    print("\n" + " | ".join([f"{'metric':<22}"] + [f"{s:>9}" for s in stages]))
    for row in rows:
        cells = [f"{results[f'{s}/{row}']:>9.4f}" if f"{s}/{row}" in results else f"{'':>9}" for s in stages]
        print(" | ".join([f"{row:<22}"] + cells))


def run(cfg) -> dict[str, float]:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.train.grad_accum,
                              mixed_precision=cfg.train.mixed_precision, **tracker_kwargs(cfg))
    set_seed(cfg.seed)
    if accelerator.is_main_process:
        save_config(cfg, out / "config.json")
    start_tracking(accelerator, cfg)
    log = MetricsLog(accelerator, out)
    parts = build_task(cfg, accelerator)
    results: dict[str, float] = {}
    if cfg.eval.baseline and accelerator.is_main_process and (
            parts.train_loader is not None or parts.baseline_evaluate is not None):
        results.update(evaluate_stage(parts, parts.model, "baseline"))
    if parts.train_loader is not None:
        start = time.perf_counter()  # training time includes dev evaluations, not the baseline
        train(cfg, parts, accelerator, log)
        parts.timings["train_seconds"] = time.perf_counter() - start
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(parts.model)
        results.update(evaluate_stage(parts, model, "final"))
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "timings.json").write_text(json.dumps(parts.timings, indent=2) + "\n")
        if parts.export is not None:
            parts.export(model, out / "model")
        log.log(results, step=-1)
        print_table(results)
        print(f"\nresults: {out / 'results.json'}")
    accelerator.end_training()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a Python file exposing get_config()")
    args, rest = parser.parse_known_args(argv)
    try:
        cfg = apply_overrides(load_config_file(args.config), parse_cli_overrides(rest))
        run(cfg)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
