"""SIGKILL a real training run mid-way, resume it, and get the uninterrupted run's results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.commands.test_run import CONFIG
from tests.conftest import REPO

TRAIN_ARGS = ["--train.epochs=40", "--train.batch_size=4", "--train.eval_every=20", "--optim.lr=5e-4",
              "--data.num_negatives=0"]


def _command(cfg_path, *extra):
    return [sys.executable, str(REPO / "experiments" / "run.py"), "--config", str(cfg_path), *TRAIN_ARGS, *extra]


def _config(tmp_path, name, model, root):
    path = tmp_path / f"{name}.py"
    path.write_text(CONFIG.format(task="biencoder", out=str(tmp_path / name), model=str(model), root=str(root)))
    return path


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    straight = subprocess.run(_command(_config(tmp_path, "straight", tiny_model_dir, tiny_data_root)),
                              env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]

    cfg = _config(tmp_path, "killed", tiny_model_dir, tiny_data_root)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(cfg), env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = out / "checkpoints" / "latest"
    deadline = time.time() + 240
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # right after the first checkpoint landed: mid-training
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "results.json").exists()
    step = json.loads((out / "checkpoints" / pointer.read_text() / "trainer_state.json").read_text())["step"]
    assert 0 < step < 40 * 6  # 24 train records / batch 4 = 6 steps per epoch

    resumed = subprocess.run(_command(cfg, "--train.resume=latest"), env=subprocess_env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {out / 'checkpoints' / f'step-{step}'} at step {step}" in resumed.stdout
    expected = json.loads((tmp_path / "straight" / "results.json").read_text())
    got = json.loads((out / "results.json").read_text())
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    # The training curve after the resume point is the same curve.
    def curve(path):
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r and r["step"] > step}
    straight_curve, resumed_curve = curve(tmp_path / "straight"), curve(out)
    assert resumed_curve and all(resumed_curve[s] == pytest.approx(straight_curve[s], abs=1e-5) for s in resumed_curve)
