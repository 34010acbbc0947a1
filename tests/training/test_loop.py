"""The training loop in experiments/run.py on a toy regression task built in-process."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from ragtune.config import ExperimentConfig, LogConfig, OptimConfig, TrainConfig, apply_overrides
from ragtune.tasks import Task
from ragtune.training.loop import NonFiniteLossError, train
from ragtune.training.tracking import MetricsLog


def toy_parts(batch_size: int, nan_at_step: int | None = None) -> Task:
    torch.manual_seed(0)
    x = torch.randn(16, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    model = torch.nn.Linear(4, 1)
    calls = {"n": 0}

    def step_fn(model, batch):
        calls["n"] += 1
        loss = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
        if nan_at_step is not None and calls["n"] >= nan_at_step:
            loss = loss * float("nan")
        return loss, {}

    def evaluate(model, split):
        with torch.no_grad():
            return {"neg_mse": -torch.nn.functional.mse_loss(model(x), y).item()}

    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    return Task(model=model, evaluate=evaluate, train_loader=loader, step_fn=step_fn)


def toy_cfg(tmp_path, **overrides) -> ExperimentConfig:
    cfg = ExperimentConfig(output_dir=str(tmp_path), optim=OptimConfig(lr=0.05, warmup_ratio=0.0, weight_decay=0.0,
                                                                        max_grad_norm=0.0, schedule="constant"),
                           train=TrainConfig(epochs=2, metric_for_best="neg_mse"), log=LogConfig(wandb="disabled"))
    return apply_overrides(cfg, overrides)


def run_toy(cfg, parts):
    accelerator = Accelerator(gradient_accumulation_steps=cfg.train.grad_accum)
    train(cfg, parts, accelerator, MetricsLog(accelerator, cfg.output_dir))
    return parts.model


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    big = run_toy(toy_cfg(tmp_path / "a"), toy_parts(batch_size=8))
    accumulated = run_toy(toy_cfg(tmp_path / "b", **{"train.grad_accum": 2}), toy_parts(batch_size=4))
    for p, q in zip(big.parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_non_finite_loss_stops_and_names_a_checkpoint_that_exists_and_gave_a_finite_loss(tmp_path):
    from ragtune.training.checkpoint import weights_are_finite

    cfg = toy_cfg(tmp_path, **{"train.epochs": 3, "train.eval_every": 1, "train.batch_size": 4})
    parts = toy_parts(batch_size=4, nan_at_step=4)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4 .*stopped before the update") as err:
        run_toy(cfg, parts)
    latest = (tmp_path / "checkpoints" / "latest").read_text()
    assert latest == "step-3"
    state = json.loads((tmp_path / "checkpoints" / "step-3" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["batches_in_epoch"] == 3
    # step 4's loss came from step-3's weights; step-2's weights gave step 3 a finite loss
    named = tmp_path / "checkpoints" / "step-2"
    assert f"Resume from {named} " in str(err.value) and f"--train.resume={named} " in str(err.value)
    assert named.is_dir() and weights_are_finite(named)


def test_non_finite_loss_before_any_usable_checkpoint_says_so(tmp_path):
    cfg = toy_cfg(tmp_path, **{"train.epochs": 3, "train.save_every": 1, "train.batch_size": 4})
    with pytest.raises(NonFiniteLossError, match="No checkpoint precedes the divergence: start again"):
        run_toy(cfg, toy_parts(batch_size=4, nan_at_step=2))
    assert (tmp_path / "checkpoints" / "step-1").is_dir()  # the weights that gave the bad loss: not named


def test_resume_applies_a_changed_learning_rate(tmp_path):
    cfg = toy_cfg(tmp_path, **{"train.epochs": 2, "train.batch_size": 4, "train.max_steps": 4, "log.log_every": 1})
    run_toy(cfg, toy_parts(batch_size=4))  # constant lr 0.05 for 4 steps
    resumed = apply_overrides(cfg, {"train.max_steps": 8, "train.resume": "latest", "optim.lr": 0.01})
    model = run_toy(resumed, toy_parts(batch_size=4))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/lr"] for r in rows if "train/lr" in r] == pytest.approx([0.05] * 4 + [0.01] * 4)

    # an independent AdamW loop: 4 steps at lr 0.05, then 4 more at 0.01 from that state
    torch.manual_seed(0)
    reference = toy_parts(batch_size=4)
    ref_model = reference.model
    opt = torch.optim.AdamW(ref_model.parameters(), lr=0.05, weight_decay=0.0)
    batches = list(reference.train_loader)
    for step in range(8):
        if step == 4:
            for group in opt.param_groups:
                group["lr"] = 0.01
        opt.zero_grad()
        x, y = batches[step % 4]
        torch.nn.functional.mse_loss(ref_model(x), y).backward()
        opt.step()
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_a_loader_without_a_batch_is_refused_before_training(tmp_path):
    from ragtune.config import ConfigError

    cfg = toy_cfg(tmp_path, **{"train.batch_size": 32})
    parts = toy_parts(batch_size=4)
    parts = dataclasses.replace(parts, train_loader=DataLoader(parts.train_loader.dataset, batch_size=32,
                                                               drop_last=True))  # 16 records
    with pytest.raises(ConfigError, match=r"train.batch_size=32 leaves the training loader without a batch "
                                          r"\(16 training records"):
        run_toy(cfg, parts)
    assert not (tmp_path / "checkpoints").exists()
    with pytest.raises(ConfigError, match="train.epochs=0 and train.max_steps=0: nothing to train"):
        run_toy(toy_cfg(tmp_path, **{"train.epochs": 0}), toy_parts(batch_size=4))


def test_trainable_parameters_without_a_gradient_are_named():
    from ragtune.training.loop import unused_trainable

    model = FrozenBase()
    model.base.requires_grad_(True)
    model.spare = torch.nn.Linear(2, 2)  # trainable, never used
    model(torch.randn(3, 4)).sum().backward()
    assert unused_trainable(model) == ["spare.weight", "spare.bias"]


def test_lr_schedule_is_logged_per_step(tmp_path):
    cfg = toy_cfg(tmp_path, **{"optim.schedule": "linear", "optim.warmup_ratio": 0.25, "log.log_every": 1})
    run_toy(cfg, toy_parts(batch_size=4))  # 2 epochs x 4 batches = 8 steps, 2 warmup
    lrs = [r["train/lr"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
           if "train/lr" in r]
    # logged after the scheduler step: lambda(step) for step = 1..8
    expected = [0.05 * m for m in (1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0)]
    assert lrs == pytest.approx(expected)


class FrozenBase(torch.nn.Module):
    """A frozen 'base' layer under a trainable head, like a LoRA on a frozen model."""

    def __init__(self):
        super().__init__()
        self.base = torch.nn.Linear(4, 4).requires_grad_(False)
        self.head = torch.nn.Linear(4, 1)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        return self.head(self.base(x))


def frozen_parts(batch_size: int) -> Task:
    parts = toy_parts(batch_size)
    torch.manual_seed(1)
    return dataclasses.replace(parts, model=FrozenBase())


def test_checkpoints_and_best_weights_hold_only_what_training_changes(tmp_path):
    from safetensors import safe_open

    cfg = toy_cfg(tmp_path / "straight", **{"train.epochs": 2, "train.eval_every": 2, "train.batch_size": 4})
    straight = run_toy(cfg, frozen_parts(4))
    best = torch.load(tmp_path / "straight" / "best" / "weights.pt", weights_only=True)
    assert set(best) == {"head.weight", "head.bias", "calls"}  # no base.*
    with safe_open(str(tmp_path / "straight" / "checkpoints" / "step-8" / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == {"head.weight", "head.bias", "calls"}

    # resume from the step-4 checkpoint of a run cut short: the same final weights as straight through
    short = toy_cfg(tmp_path / "resumed", **{"train.epochs": 2, "train.eval_every": 2, "train.batch_size": 4,
                                              "train.max_steps": 4})
    run_toy(short, frozen_parts(4))
    resumed_cfg = apply_overrides(short, {"train.max_steps": 0, "train.resume": "latest"})
    resumed = run_toy(resumed_cfg, frozen_parts(4))
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value)


def test_a_checkpoint_missing_a_trainable_tensor_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    cfg = toy_cfg(tmp_path, **{"train.epochs": 1, "train.batch_size": 4})
    run_toy(cfg, frozen_parts(4))
    path = tmp_path / "checkpoints" / "step-4" / "model.safetensors"
    save_file({k: v for k, v in load_file(path).items() if k != "head.bias"}, path)
    resume = apply_overrides(cfg, {"train.resume": "latest", "train.epochs": 2})
    with pytest.raises(RuntimeError, match=r"missing trainable \['head.bias'\]"):
        run_toy(resume, frozen_parts(4))


def test_a_run_whose_training_only_hurts_ends_with_the_initial_weights(tmp_path, capsys):
    parts = toy_parts(batch_size=4)
    initial = {k: v.clone() for k, v in parts.model.state_dict().items()}
    ascend = parts.step_fn
    parts = dataclasses.replace(parts, step_fn=lambda model, batch: (-ascend(model, batch)[0], {}))  # ascend the mse
    cfg = toy_cfg(tmp_path, **{"train.eval_every": 1, "train.batch_size": 4})
    model = run_toy(cfg, parts)
    for name, value in initial.items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    assert "warning: no training step beat the initial model on dev neg_mse" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    dev = [(r["step"], r["dev/neg_mse"]) for r in rows if "dev/neg_mse" in r]
    assert dev[0][0] == 0 and all(value < dev[0][1] for _, value in dev[1:])  # every later step was worse
    assert parts.timings["best_step"] == 0 and parts.timings["dev_initial"] == parts.timings["dev_best"]


def test_a_run_that_helps_keeps_its_best_step_and_reports_the_start(tmp_path, capsys):
    parts = toy_parts(batch_size=4)
    run_toy(toy_cfg(tmp_path, **{"train.eval_every": 2, "train.batch_size": 4}), parts)
    assert parts.timings["best_step"] > 0 and parts.timings["dev_best"] > parts.timings["dev_initial"]
    assert f"(initial {parts.timings['dev_initial']:.4f})" in capsys.readouterr().out


@pytest.mark.parametrize("train_kw, expected", [
    ({"epochs": 3}, (78, 26)),  # 26 steps an epoch: evaluated after each
    ({"epochs": 3, "max_examples": 2500}, (78, 26)),  # ceil(2500 / 32) = 79 > 3 epochs: the epochs cap it
    ({"epochs": 3, "max_examples": 1000}, (32, 11)),  # ceil(1000 / 32) = 32 steps; every ceil(32 / 3)
    ({"epochs": 3, "max_examples": 1000, "grad_accum": 2}, (16, 6)),  # 64 examples an optimizer step
    ({"epochs": 3, "max_examples": 1000, "max_steps": 5}, (5, 2)),  # max_steps wins
    ({"epochs": 3, "max_examples": 1000, "eval_every": 7}, (32, 7)),
])
def test_training_length_in_epochs_examples_or_steps(train_kw, expected):
    from ragtune.training.loop import training_length

    assert training_length(TrainConfig(batch_size=32, **train_kw), steps_per_epoch=26) == expected


def test_a_budget_in_examples_stops_a_long_epoch(tmp_path):
    cfg = toy_cfg(tmp_path, **{"train.epochs": 5, "train.batch_size": 2, "train.max_examples": 6})
    run_toy(cfg, toy_parts(batch_size=2))  # 8 steps an epoch, but 6 examples = 3 steps
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if "dev/neg_mse" in line]
    assert steps == [0, 1, 2, 3]  # step 0, then every ceil(3 / 3) = 1 step


def test_stop_at_epoch_with_select_last_keeps_the_stopped_steps_weights_on_the_full_schedule(tmp_path, capsys):
    # toy: 4 steps an epoch, 3 epochs = a 12-step linear schedule; stop after 1.5 epochs = 6 steps
    cfg = toy_cfg(tmp_path / "stop", **{"train.epochs": 3, "train.batch_size": 4, "optim.schedule": "linear",
                                        "train.select": "last", "train.stop_at_epoch": 1.5,
                                        "task": "adapter"})
    stopped = run_toy(cfg, parts := toy_parts(batch_size=4))
    assert parts.timings["steps"] == 6 and parts.timings["schedule_steps"] == 12 and parts.timings["best_step"] == 6
    assert "train.select=last: the final weights are step 6's" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "stop" / "metrics.jsonl").read_text().splitlines()]
    assert not any(k.startswith("dev/") for r in rows for k in r)  # no dev evaluation at all
    # the same 6 steps of the same 12-step schedule, taken from a full best_dev run's step-6 checkpoint
    full = toy_cfg(tmp_path / "full", **{"train.epochs": 3, "train.batch_size": 4, "optim.schedule": "linear",
                                         "train.save_every": 6, "train.eval_every": 100})
    run_toy(full, toy_parts(batch_size=4))
    lrs = {r["step"]: r["train/lr"] for r in rows if "train/lr" in r}
    full_lrs = {json.loads(line)["step"]: json.loads(line).get("train/lr")
                for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()}
    assert all(lrs[s] == pytest.approx(full_lrs[s]) for s in lrs)  # the stop is a point on the same schedule
    from safetensors.torch import load_file

    at_six = load_file(tmp_path / "full" / "checkpoints" / "step-6" / "model.safetensors")
    assert at_six.keys() == stopped.state_dict().keys()
    for name, value in at_six.items():
        torch.testing.assert_close(stopped.state_dict()[name], value)


def test_stop_at_epoch_zero_ends_with_the_initial_weights(tmp_path):
    parts = toy_parts(batch_size=4)
    initial = {k: v.clone() for k, v in parts.model.state_dict().items()}
    model = run_toy(toy_cfg(tmp_path, **{"train.select": "last", "train.stop_at_epoch": 0, "task": "adapter"}), parts)
    for name, value in initial.items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    assert parts.timings["steps"] == 0
