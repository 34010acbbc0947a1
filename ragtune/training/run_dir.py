"""The output folder of a run: refuse to mix two runs in one folder, lock it while a run writes it,
check what a resume may change, and write files so a crash never leaves a finished-looking run.

A folder "holds a run" once it has a ragtune `config.json` (the first file every run writes).
Such a folder is refused unless the run resumes it (`train.resume`) or replaces it (`overwrite`:
every entry is deleted except the sweep runner's own `run.log` and `sweep.json`). While a run
writes the folder it holds an exclusive `flock` on `<output_dir>/.lock`; the kernel drops the lock
when the process dies, even by SIGKILL, so a stale lock never blocks the next run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from ragtune.config import ConfigError, ExperimentConfig, config_from_dict, flatten
from ragtune.training.checkpoint import TRAINER_STATE

LOCK_FILE = ".lock"
KEPT_ON_OVERWRITE = {LOCK_FILE, "run.log", "sweep.json"}  # the sweep runner writes these around a run
# Changing these on resume cannot change what the resumed run computes.
RESUME_FREE = {"train.resume", "overwrite", "output_dir", "eval.batch_size", "eval.cache_dir", "train.save_every"}
RESUME_FREE_PREFIXES = ("log.",)
# Changing these on resume is applied explicitly from the resumed step on (and said so).
RESUME_APPLIED = {"optim.lr", "optim.max_grad_norm", "train.max_steps", "train.max_examples", "train.epochs"}


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def is_run_folder(path: Path) -> bool:
    """True when `path` holds a ragtune run's config.json (not, say, an HF model's)."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        saved = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and "task" in saved and "train" in saved


class RunLock:
    """An exclusive, non-blocking flock on <output_dir>/.lock, held until release() or process exit."""

    def __init__(self, output_dir: Path):
        self.path = output_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"output_dir {self.path.parent} is in use by another run (pid {holder}); "
                              "wait for it or choose another --output_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def saved_run_config(resume_from: Path | None, output_dir: Path) -> Path | None:
    """The config.json of the run a checkpoint belongs to (<run>/checkpoints/step-N), if it exists."""
    candidates = [output_dir / "config.json"]
    if resume_from is not None:
        candidates.insert(0, resume_from.resolve().parents[1] / "config.json")
    return next((p for p in candidates if p.is_file()), None)


def resume_changes(saved: ExperimentConfig, now: ExperimentConfig) -> tuple[dict, dict]:
    """(applied, refused): {key: (saved value, new value)} for the keys a resume changes."""
    old, new = flatten(saved), flatten(now)
    applied, refused = {}, {}
    for key, value in new.items():
        if old.get(key) == value or key in RESUME_FREE or key.startswith(RESUME_FREE_PREFIXES):
            continue
        (applied if key in RESUME_APPLIED else refused)[key] = (old.get(key), value)
    return applied, refused


def check_resume(cfg: ExperimentConfig, resume_from: Path) -> dict:
    """Refuse a resume whose config changes anything but RESUME_FREE / RESUME_APPLIED keys; return the
    applied changes {key: (old, new)} for the loop to apply and print."""
    saved_path = saved_run_config(resume_from, Path(cfg.output_dir))
    if saved_path is None:
        return {}
    applied, refused = resume_changes(config_from_dict(json.loads(saved_path.read_text())), cfg)
    if refused:
        shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(refused.items()))
        raise ConfigError(
            f"train.resume={cfg.train.resume}: the run in {saved_path.parent} was made with other settings "
            f"({shown}). A resume applies changes to {sorted(RESUME_APPLIED)} only; start a new run "
            "(another --output_dir, or --overwrite) to change anything else")
    return applied


def prepare_output_dir(cfg: ExperimentConfig, lock: RunLock, resume_from: Path | None) -> dict:
    """Lock output_dir, then refuse, clear (overwrite) or accept it; returns check_resume's applied changes.

    Called on the main process before anything is written."""
    out = Path(cfg.output_dir)
    lock.acquire()
    if resume_from is not None:
        applied = check_resume(cfg, resume_from)
        trim_metrics(out / "metrics.jsonl", json.loads((resume_from / TRAINER_STATE).read_text())["step"])
        return applied
    if not is_run_folder(out):
        return {}
    if not cfg.overwrite:
        finished = ", finished: results.json" if (out / "results.json").exists() else ""
        raise ConfigError(
            f"output_dir {out} already holds a run (config.json{finished}). "
            "Pass --overwrite to replace it, --train.resume=latest to continue it, or choose another --output_dir")
    for entry in out.iterdir():
        if entry.name in KEPT_ON_OVERWRITE:
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    print(f"overwrite: cleared the earlier run in {out}")
    return {}


def trim_metrics(path: Path, last_step: int) -> None:
    """Keep metrics.jsonl lines up to `last_step` (the resumed checkpoint): the killed run's later lines
    would otherwise appear twice in the curve, and its results line (step -1) would go stale."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and 0 <= json.loads(line).get("step", -1) <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))
