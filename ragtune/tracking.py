"""Experiment tracking: W&B through accelerate (offline by default) and a local metrics.jsonl.

Offline W&B needs no network; upload later with `wandb sync <output_dir>/wandb/offline-run-*`.
metrics.jsonl is always written by the main process, one JSON object per logged step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ragtune.config import flatten

WANDB_MODES = ("offline", "online", "disabled")


def tracker_kwargs(cfg) -> dict:
    """Arguments for Accelerator(...) that enable W&B when configured."""
    if cfg.log.wandb not in WANDB_MODES:
        raise ValueError(f"log.wandb='{cfg.log.wandb}'; choose from {WANDB_MODES}")
    if cfg.log.wandb == "disabled":
        return {}
    os.environ["WANDB_MODE"] = cfg.log.wandb
    os.environ.setdefault("WANDB_SILENT", "true")
    return {"log_with": "wandb", "project_dir": cfg.output_dir}


def start_tracking(accelerator, cfg) -> None:
    if cfg.log.wandb == "disabled":
        return
    init = {"dir": cfg.output_dir, "name": cfg.log.run_name or Path(cfg.output_dir).name}
    if cfg.log.group:
        init["group"] = cfg.log.group
    accelerator.init_trackers(cfg.log.project, config=flatten(cfg), init_kwargs={"wandb": init})


class MetricsLog:
    """Appends {'step': ..., **metrics} lines to <output_dir>/metrics.jsonl and forwards to trackers."""

    def __init__(self, accelerator, output_dir: str | Path):
        self.accelerator = accelerator
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        self.accelerator.log(metrics, step=step)
