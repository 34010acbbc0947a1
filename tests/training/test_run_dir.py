"""Output folders off the happy path: a rerun, two runs at once, a resume that changes settings,
a crash while exporting. Through the real entry point where the process boundary matters."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from ragtune.config import ConfigError, ExperimentConfig, apply_overrides, save_config
from ragtune.training.run_dir import RunLock, check_resume, prepare_output_dir, trim_metrics
from tests.commands.test_run import CONFIG
from tests.conftest import REPO

TRAIN = ["--train.max_steps=4", "--train.batch_size=8", "--train.save_every=1", "--eval.baseline=false"]


def _entry(tmp_path, env, model, root, *args):
    cfg = tmp_path / "c.py"
    cfg.write_text(CONFIG.format(task="biencoder", out=str(tmp_path / "out"), model=str(model), root=str(root)))
    return subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), "--config", str(cfg), *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_rerun_is_refused_and_overwrite_replaces_the_whole_run(tmp_path, subprocess_env, tiny_model_dir,
                                                                  tiny_data_root):
    out = tmp_path / "out"
    first = _entry(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root, *TRAIN)
    assert first.returncode == 0, first.stderr[-2000:]
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-3", "step-4"]

    again = _entry(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root, *TRAIN)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert (f"error: output_dir {out} already holds a run (config.json, finished: results.json). Pass --overwrite"
            in again.stderr)

    replaced = _entry(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root, *TRAIN, "--train.max_steps=2",
                      "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert f"overwrite: cleared the earlier run in {out}" in replaced.stdout
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-1", "step-2"]  # no old step-4
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [-1, 0, 1, 2] and steps.count(-1) == 1  # this run's curve (dev at 0) and results
    assert json.loads((out / "config.json").read_text())["train"]["max_steps"] == 2


def test_a_folder_in_use_by_another_run_is_refused(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    lock = RunLock(tmp_path / "out")
    lock.acquire()  # as a run in another process would hold it
    try:
        proc = _entry(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root, *TRAIN)
    finally:
        lock.release()
    assert proc.returncode == 2
    assert f"error: output_dir {tmp_path / 'out'} is in use by another run (pid " in proc.stderr
    assert not (tmp_path / "out" / "config.json").exists()  # refused before writing anything


def test_overwrite_refuses_a_folder_that_is_not_a_ragtune_run(tmp_path):
    out = tmp_path / "hf_model"
    out.mkdir()
    (out / "config.json").write_text('{"model_type": "bert"}')
    cfg = apply_overrides(ExperimentConfig(), {"output_dir": str(out), "overwrite": "true"})
    prepare_output_dir(cfg, RunLock(out), None)  # not a run: nothing deleted, nothing refused
    assert (out / "config.json").read_text() == '{"model_type": "bert"}'


def _saved_run(tmp_path, **overrides):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-4").mkdir(parents=True)
    (out / "checkpoints" / "step-4" / "trainer_state.json").write_text('{"step": 4}')
    cfg = apply_overrides(ExperimentConfig(), {"output_dir": str(out), **overrides})
    save_config(cfg, out / "config.json")
    return cfg, out / "checkpoints" / "step-4"


def test_resume_applies_lr_and_refuses_what_it_cannot_apply(tmp_path):
    cfg, ckpt = _saved_run(tmp_path)
    applied = check_resume(apply_overrides(cfg, {"train.resume": "latest", "optim.lr": "1e-5",
                                                 "log.log_every": "1"}), ckpt)
    assert applied == {"optim.lr": (2e-5, 1e-5)}  # log.* changes nothing the run computes
    with pytest.raises(ConfigError) as err:
        check_resume(apply_overrides(cfg, {"train.resume": "latest", "optim.schedule": "cosine",
                                           "data.num_negatives": "2"}), ckpt)
    assert ("(data.num_negatives: 0 -> 2; optim.schedule: 'linear' -> 'cosine'). A resume applies changes to "
            "['optim.lr', 'optim.max_grad_norm', 'train.epochs', 'train.max_examples', 'train.max_steps'] only") \
        in str(err.value)


def test_resume_keeps_the_curve_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "train/loss": 1.0}) + "\n" for s in (1, 2, 3, 4, 5, 6)))
    trim_metrics(path, 4)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]


def test_a_crash_while_exporting_leaves_no_results_json(tmp_path, monkeypatch, tiny_model_dir, tiny_data_root):
    """results.json is written last: a run killed in export is not complete, so a sweep reruns it."""
    import ragtune.commands.run as run_module

    def broken_export(model, path):
        path.mkdir(parents=True)
        (path / "config.json").write_text("{}")
        raise KeyboardInterrupt  # as a kill mid-export would stop it

    real_build = run_module.build_task

    def build(cfg, accelerator):
        return dataclasses.replace(real_build(cfg, accelerator), export=broken_export)

    monkeypatch.setattr(run_module, "build_task", build)
    cfg = apply_overrides(ExperimentConfig(), {
        "task": "eval", "output_dir": str(tmp_path / "out"), "model.name": str(tiny_model_dir),
        "data.dataset": "tiny", "data.data_root": str(tiny_data_root), "eval.k_values": "1,10",
        "log.wandb": "disabled"})
    with pytest.raises(KeyboardInterrupt):
        run_module.run(cfg)
    out = tmp_path / "out"
    assert not (out / "results.json").exists() and not (out / "model").exists()
    assert RunLock(out).acquire() is None  # the lock went with the failed run
