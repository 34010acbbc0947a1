from __future__ import annotations

import numpy as np

from experiments.grounded_reference import auc


def test_auc_counts_ordered_pairs_and_half_ties():
    # pairs (3,2) (3,0) (1,0) ordered, (1,2) not: 3 of 4
    assert auc(np.array([3.0, 1.0]), np.array([2.0, 0.0])) == 0.75
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([0.0, 0.0]), np.array([1.0, 2.0])) == 0.0


def test_a_folder_that_is_not_a_finished_generator_run_exits_2_with_what_is_missing(tmp_path, capsys):
    from experiments.grounded_reference import main

    assert main(["--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} is not a finished generator run: missing {tmp_path}/config.json")
    assert "adapter_config.json" in err


def test_a_finished_run_of_another_task_is_refused(tmp_path, capsys):
    import json

    from experiments.grounded_reference import main
    from ragtune.config import ExperimentConfig, save_config

    save_config(ExperimentConfig(task="biencoder"), tmp_path / "config.json")
    (tmp_path / "test_records.jsonl").write_text("")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "adapter_config.json").write_text(json.dumps({}))
    assert main(["--run", str(tmp_path)]) == 2
    assert "task 'biencoder', not a generator run" in capsys.readouterr().err
    assert main(["--run", str(tmp_path), "--generator.k_passages=3"]) == 2  # a run's prompts are its own
    assert "--run reads the run's own config" in capsys.readouterr().err
