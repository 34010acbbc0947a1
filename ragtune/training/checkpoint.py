"""Atomic training checkpoints and resume.

A checkpoint is a folder `<output_dir>/checkpoints/step-<N>` holding accelerate's state
(model, optimizer, scaler, RNG states of python/numpy/torch) plus `trainer_state.json`
(step, epoch, batches consumed in the epoch, best metric, scheduler state). Only the model
entries training can change are stored (`trainable_state_dict`): a LoRA checkpoint holds the
adapter, not the frozen 135M-parameter base it was loaded from. It is written to
a temporary folder and renamed into place, and `latest` is updated by an atomic rename too,
so a crash or SIGKILL at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

TRAINER_STATE = "trainer_state.json"
MODEL_FILE = "model.safetensors"  # what accelerate's save_state names the first model's weights


def frozen_names(model: torch.nn.Module) -> set[str]:
    """State-dict names of the parameters that do not require grad (tied aliases included)."""
    return {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


def trainable_state_dict(model: torch.nn.Module, state: dict | None = None) -> dict:
    """model.state_dict() (or `state`, taken from it) without the frozen parameters: the trainable
    ones and the buffers, i.e. everything training can change."""
    frozen = frozen_names(model)
    return {k: v for k, v in (model.state_dict() if state is None else state).items() if k not in frozen}


def check_loaded_keys(model: torch.nn.Module, missing, unexpected, source) -> None:
    """A partial load may only lack frozen parameters (they are still the ones the model was built with)."""
    lacking = sorted(set(missing) - frozen_names(model))
    if lacking or unexpected:
        raise RuntimeError(f"{source} does not fit the model: missing trainable {lacking[:5]}"
                           f"{'...' if len(lacking) > 5 else ''}, unexpected {sorted(unexpected)[:5]}")


def load_trainable_state_dict(model: torch.nn.Module, state: dict, source: str = "state dict") -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    check_loaded_keys(model, missing, unexpected, source)


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def save_trainable_only(accelerator) -> None:
    """Make accelerate's save_state write trainable_state_dict of each model (call once per run)."""
    def hook(models, weights, output_dir):
        for i, model in enumerate(models):
            weights[i] = trainable_state_dict(model, weights[i])

    accelerator.register_save_state_pre_hook(hook)


def save_checkpoint(accelerator, output_dir: str | Path, state: dict, keep: int = 2) -> Path:
    """Write step-<state['step']>, point `latest` at it, keep the newest `keep` checkpoints."""
    root = checkpoints_dir(output_dir)
    final = root / f"step-{state['step']}"
    tmp = root / f".tmp-step-{state['step']}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every rank writes its own RNG state here
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer = root / ".latest.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, root / "latest")
        old = sorted((p for p in root.glob("step-*") if p != final), key=lambda p: int(p.name.split("-")[1]))
        for path in old[: max(0, len(old) - (keep - 1))]:
            shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resolve_resume(resume: str, output_dir: str | Path) -> Path | None:
    """'' -> None; 'latest' -> the newest complete checkpoint of output_dir; else a folder."""
    if not resume:
        return None
    if resume == "latest":
        pointer = checkpoints_dir(output_dir) / "latest"
        if not pointer.is_file():
            raise FileNotFoundError(f"train.resume=latest but {pointer} does not exist (no checkpoint yet)")
        path = checkpoints_dir(output_dir) / pointer.read_text().strip()
    else:
        path = Path(resume)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {TRAINER_STATE})")
    return path


def load_checkpoint(accelerator, path: Path, model: torch.nn.Module) -> dict:
    """Restore a checkpoint written by save_checkpoint into the prepared `model` (and the optimizer,
    scheduler and RNG states accelerate registered); its model file may lack frozen parameters only."""
    if (path / MODEL_FILE).is_file():
        with safe_open(str(path / MODEL_FILE), framework="pt") as f:
            saved = set(f.keys())
        expected = set(model.state_dict())
        check_loaded_keys(model, expected - saved, saved - expected, path / MODEL_FILE)
    accelerator.load_state(str(path), strict=False)  # frozen parameters keep their loaded values
    return json.loads((path / TRAINER_STATE).read_text())


def checkpoint_steps(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints of a run, newest first."""
    root = checkpoints_dir(output_dir)
    found = [(int(p.name.split("-")[1]), p) for p in root.glob("step-*") if (p / TRAINER_STATE).is_file()]
    return sorted(found, reverse=True)


def weights_are_finite(path: Path) -> bool:
    """True when every floating tensor of the checkpoint's model file is finite."""
    with safe_open(str(path / MODEL_FILE), framework="pt") as f:
        for key in f.keys():
            t = f.get_tensor(key)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return False
    return True


def last_good_checkpoint(output_dir: str | Path, failed_step: int) -> Path | None:
    """The newest checkpoint that is safe to resume after the loss of step `failed_step` went non-finite.

    Step s's loss is computed with the weights after s - 1 updates, so checkpoint step-(f-1) holds the
    weights that produced the bad loss; the newest checkpoint at or before step f - 2 gave a finite
    loss afterwards. It must also have finite weights (a diverging run can store inf before the loss shows it).
    """
    for step, path in checkpoint_steps(output_dir):
        if step <= failed_step - 2 and (path / MODEL_FILE).is_file() and weights_are_finite(path):
            return path
    return None
