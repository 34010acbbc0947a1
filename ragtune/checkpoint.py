"""Atomic training checkpoints and resume.

A checkpoint is a folder `<output_dir>/checkpoints/step-<N>` holding accelerate's state
(model, optimizer, scaler, RNG states of python/numpy/torch) plus `trainer_state.json`
(step, epoch, batches consumed in the epoch, best metric, scheduler state). It is written to
a temporary folder and renamed into place, and `latest` is updated by an atomic rename too,
so a crash or SIGKILL at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

TRAINER_STATE = "trainer_state.json"


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


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


def load_checkpoint(accelerator, path: Path) -> dict:
    accelerator.load_state(str(path))
    return json.loads((path / TRAINER_STATE).read_text())
