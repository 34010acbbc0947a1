"""`ragtune <command>` / `python -m ragtune`: dispatch, --help with every config key, and a real run."""

from __future__ import annotations

import json
import subprocess
import sys

from ragtune.cli import COMMANDS, main
from ragtune.config import TrainConfig
from ragtune.config_help import field_comments
from tests.commands.test_run import CONFIG
from tests.conftest import REPO


def test_no_command_prints_the_commands_and_an_unknown_one_names_the_closest(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["rn", "--config", "x.py"]) == 2
    assert "unknown command 'rn'; did you mean 'run'?" in capsys.readouterr().err


def test_run_help_lists_every_config_key_with_type_value_and_default():
    proc = subprocess.run([sys.executable, "-m", "ragtune", "run", "--config", "configs/scifact_biencoder.py",
                           "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip().startswith("--")}
    assert lines["--optim.lr"].split()[1:4] == ["float", "=", "3e-05"] and "(default 2e-05)" in lines["--optim.lr"]
    assert lines["--model.pooling"].split()[1] == "Literal['cls',"  # the choices, as the dataclass types them
    assert "a budget in training examples" in lines["--train.max_examples"]  # its comment, from above the field
    assert "--overwrite" in lines and "--config" in proc.stdout


def test_field_comments_join_the_lines_above_and_the_trailing_comment():
    comments = field_comments(TrainConfig)
    assert comments["eval_every"].startswith("optimizer steps between dev evaluations")
    assert comments["max_examples"].startswith("> 0 (and max_steps 0): a budget in training examples")
    assert comments["batch_size"] == ""


def test_ragtune_run_and_the_experiments_shim_give_the_same_results(tmp_path, subprocess_env, tiny_model_dir,
                                                                    tiny_data_root):
    results = []
    for i, entry in enumerate([["-m", "ragtune", "run"], [str(REPO / "experiments" / "run.py")]]):
        config, out = tmp_path / f"c{i}.py", tmp_path / f"out{i}"
        config.write_text(CONFIG.format(task="eval", out=str(out), model=str(tiny_model_dir),
                                        root=str(tiny_data_root)))
        proc = subprocess.run([sys.executable, *entry, "--config", str(config)], cwd=REPO, env=subprocess_env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(json.loads((out / "results.json").read_text()))
    assert results[0] == results[1] and 0 < results[0]["final/test/ndcg@10"] <= 1
