"""The one training loop: `train(cfg, parts, accelerator, log)` trains any task's parts.

Step 0 evaluates dev (the untrained model is a candidate for best), then optimizer steps with
gradient accumulation, clipping, a hand-stepped schedule, dev evaluation and checkpoints every
so many steps; a non-finite loss stops every process before the update and names a usable
checkpoint. It returns the best dev metrics and leaves the best weights loaded.
"""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ragtune.config import ConfigError
from ragtune.tasks import Task
from ragtune.training.checkpoint import (
    last_good_checkpoint,
    load_checkpoint,
    load_trainable_state_dict,
    resolve_resume,
    save_checkpoint,
    save_trainable_only,
    trainable_state_dict,
)
from ragtune.training.optim import lr_lambda, param_groups
from ragtune.training.tracking import MetricsLog


class NonFiniteLossError(RuntimeError):
    pass


def check_loader(cfg, loader) -> None:
    """A training loader without a batch, or a budget of zero steps, would train nothing and still
    export the untrained model as if trained: refuse both before the model is prepared."""
    if len(loader) == 0:
        records = len(loader.dataset) if hasattr(loader, "dataset") else "?"
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} leaves the training loader without a batch "
                          f"({records} training records; an incomplete last batch is dropped): "
                          "lower train.batch_size")
    if cfg.train.max_steps == 0 and cfg.train.epochs == 0:
        raise ConfigError("train.epochs=0 and train.max_steps=0: nothing to train (set one of them)")


def set_loader_epoch(loader, epoch: int) -> None:
    """set_epoch on the loader and every (batch) sampler under it. accelerate's prepared loader forwards
    set_epoch to a batch sampler only while it is not wrapped for sharding (its BatchSamplerShard has no
    set_epoch), so without this walk every epoch of a multi-process run would replay epoch 0's order."""
    stack, seen = [loader], set()
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
        stack += [getattr(obj, "batch_sampler", None), getattr(obj, "sampler", None)]


def unused_trainable(model) -> list[str]:
    """Trainable parameters without a gradient after a backward: DDP fails on the next step on them."""
    return [name.removeprefix("module.") for name, p in model.named_parameters()
            if p.requires_grad and p.grad is None]


def all_finite(accelerator, loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every process: all of them stop together, not one alone while
    the others wait for it in the next collective."""
    finite = torch.isfinite(loss.detach()).float()
    if accelerator.num_processes > 1:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    return bool(finite)


def non_finite_message(cfg, loss: torch.Tensor, state: dict) -> str:
    failed = state["step"] + 1
    good = last_good_checkpoint(cfg.output_dir, failed)
    where = (f"Resume from {good} (finite weights, and its weights gave a finite loss) with "
             f"--train.resume={good} and a lower --optim.lr (applied on resume)" if good is not None else
             "No checkpoint precedes the divergence: start again (--overwrite) with a lower optim.lr")
    value = loss.item()
    what = f"loss is {value}" if not math.isfinite(value) else "the loss is not finite on another process"
    return (f"{what} at step {failed} (epoch {state['epoch']}); stopped before the update. "
            f"{where}; optim.max_grad_norm or train.mixed_precision=no may help too.")


def training_length(train_cfg, steps_per_epoch: int) -> tuple[int, int]:
    """(optimizer steps, steps between dev evaluations).

    max_steps wins; else `epochs`, cut to the train.max_examples budget when one is set (a recipe
    stated in examples runs as long on a collection of 100k pairs as on one of 1k). Evaluation
    defaults to once per epoch, and at least three times a run when the budget ends within an epoch."""
    total = train_cfg.max_steps or train_cfg.epochs * steps_per_epoch
    if not train_cfg.max_steps and train_cfg.max_examples:
        total = min(total, math.ceil(train_cfg.max_examples / (train_cfg.batch_size * train_cfg.grad_accum)))
    return total, train_cfg.eval_every or max(1, min(steps_per_epoch, math.ceil(total / 3)))


def train(cfg, parts: Task, accelerator: Accelerator, log: MetricsLog) -> dict | None:
    """Train parts.model with parts.step_fn; keep the best dev checkpoint; return its dev metrics."""
    out = Path(cfg.output_dir)
    check_loader(cfg, parts.train_loader)
    optimizer = torch.optim.AdamW(param_groups(parts.model, cfg.optim.weight_decay),
                                  lr=cfg.optim.lr, betas=cfg.optim.betas)
    model, optimizer, loader = accelerator.prepare(parts.model, optimizer, parts.train_loader)
    steps_per_epoch = math.ceil(len(loader) / cfg.train.grad_accum)
    total_steps, eval_every = training_length(cfg.train, steps_per_epoch)
    # train.stop_at_epoch ends the run early at a point of the same schedule (a length chosen elsewhere)
    stop_step = total_steps if cfg.train.stop_at_epoch < 0 else \
        min(total_steps, round(cfg.train.stop_at_epoch * steps_per_epoch))
    select_best = cfg.train.select == "best_dev"
    # The scheduler is stepped by hand once per optimizer step (not prepared: accelerate would
    # step it once per process), so total_steps means the same thing on 1 or N processes.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        lr_lambda, warmup_steps=round(cfg.optim.warmup_ratio * total_steps),
        total_steps=total_steps, kind=cfg.optim.schedule))
    accelerator.register_for_checkpointing(scheduler)
    save_trainable_only(accelerator)
    save_every = cfg.train.save_every or eval_every

    state = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "best_metric": None, "best_step": None,
             "best_dev": None}
    resume_from = resolve_resume(cfg.train.resume, out)
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from, model)
        # The checkpoint's scheduler holds the old base lr: the config's optim.lr applies from here on
        # (the same value when unchanged; run() has refused any change a resume cannot apply).
        scheduler.base_lrs = [cfg.optim.lr] * len(optimizer.param_groups)
        for group in optimizer.param_groups:
            group["initial_lr"] = cfg.optim.lr
            group["lr"] = cfg.optim.lr * scheduler.lr_lambdas[0](scheduler.last_epoch)
        accelerator.print(f"resumed from {resume_from} at step {state['step']}")

    def evaluate_dev(step: int) -> None:
        """Dev metrics at `step`, logged; a new best is kept in best/weights.pt."""
        dev = parts.evaluate(accelerator.unwrap_model(model), "dev")
        model.train()
        log.log({f"dev/{k}": v for k, v in dev.items()}, step)
        metric = dev[cfg.train.metric_for_best]
        if state["best_metric"] is None or metric > state["best_metric"]:
            state.update(best_metric=metric, best_step=step, best_dev=dev)
            save_best_weights(accelerator, model, out / "best")

    if resume_from is None and select_best:
        # Step 0: the untrained model is a candidate for best, so a run whose training only hurts
        # dev ends with the weights it started from, and says so.
        evaluate_dev(0)
        state["initial_dev"] = state["best_dev"]

    progress = tqdm(total=stop_step, initial=state["step"], desc="train", disable=not accelerator.is_main_process)
    model.train()
    checked_unused = False
    while state["step"] < stop_step:
        set_loader_epoch(loader, state["epoch"])  # the sampler's shuffle depends on (seed, epoch) only
        # On resume, skip the batches this epoch already consumed (at the sampler, no collation).
        batches = accelerator.skip_first_batches(loader, state["batches_in_epoch"]) \
            if state["batches_in_epoch"] else loader
        for batch in batches:
            with accelerator.accumulate(model):
                loss, logs = parts.step_fn(model, batch)
                if not all_finite(accelerator, loss):
                    raise NonFiniteLossError(non_finite_message(cfg, loss, state))
                if not parts.step_does_backward:
                    accelerator.backward(loss)
                if accelerator.sync_gradients and not checked_unused:
                    checked_unused = True
                    unused = unused_trainable(model)
                    if unused and accelerator.num_processes > 1:
                        raise RuntimeError(f"trainable parameters the loss never reaches: {unused[:6]}: DDP fails "
                                           "on them; freeze them (requires_grad_(False)) or use them in the loss")
                    if unused:
                        accelerator.print(f"note: trainable parameters without a gradient (a multi-process run "
                                          f"would fail on them): {unused[:6]}")
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
                # The mean over processes: each holds the loss of its share of the global batch.
                mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
                log.log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0],
                         **{f"train/{k}": v for k, v in logs.items()}}, step)
                progress.set_postfix(loss=f"{mean_loss:.4f}")
            if select_best and (step % eval_every == 0 or step == stop_step):
                evaluate_dev(step)
            if step % save_every == 0 or step == stop_step:
                save_checkpoint(accelerator, out, state)
            if step >= stop_step:
                break
        else:  # the epoch ran out of batches
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
    progress.close()
    parts.timings.update(steps_per_epoch=steps_per_epoch, steps=state["step"], schedule_steps=total_steps)
    if not select_best:  # no dev: the weights in memory, the last step's, are the final ones
        what = "the initial model (no step)" if state["step"] == 0 else f"step {state['step']}'s"
        accelerator.print(f"train.select=last: the final weights are {what}")
        parts.timings.update(best_step=state["step"])
        return None
    load_trainable_state_dict(accelerator.unwrap_model(model), torch.load(out / "best" / "weights.pt",
                                                                          weights_only=True), "best/weights.pt")
    metric, initial = cfg.train.metric_for_best, (state.get("initial_dev") or {}).get(cfg.train.metric_for_best)
    if state["best_step"] == 0:
        accelerator.print(f"warning: no training step beat the initial model on dev {metric} ({initial:.4f}): "
                          "the final model is the initial one")
    else:
        start = f" (initial {initial:.4f})" if initial is not None else ""
        accelerator.print(f"best dev {metric}={state['best_metric']:.4f} at step {state['best_step']}{start}")
    parts.timings.update(best_step=state["best_step"], dev_best=state["best_metric"], dev_initial=initial)
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


