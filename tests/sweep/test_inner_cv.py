"""Training length by inner cross-validation: the mean of the inner dev curves, read from real run files."""

import json

import pytest

from ragtune.sweep.inner_cv import choose_length, dev_curve


def test_the_chosen_length_is_the_highest_mean_point_and_the_earliest_on_a_tie():
    curves = [([0, 1, 2, 3], [0.30, 0.40, 0.35, 0.20]),
              ([0, 1, 2, 3], [0.50, 0.40, 0.55, 0.60])]
    c = choose_length(curves)
    assert c["mean"] == pytest.approx([0.40, 0.40, 0.45, 0.40]) and c["epochs"] == [0, 1, 2, 3]
    assert c["chosen_epoch"] == 2 and c["chosen_mean"] == pytest.approx(0.45)
    assert c["initial_mean"] == pytest.approx(0.4)
    tie = choose_length([([0, 1], [0.5, 0.4]), ([0, 1], [0.3, 0.4])])  # 0.4 and 0.4: the untrained model
    assert tie["chosen_epoch"] == 0
    short = choose_length([([0, 1, 2], [0.1, 0.2, 0.9]), ([0, 1], [0.1, 0.3])])  # cut to the shortest
    assert short["epochs"] == [0, 1] and short["chosen_epoch"] == 1
    with pytest.raises(ValueError, match="no inner-fold curve"):
        choose_length([])


def test_dev_curve_reads_epochs_from_the_runs_steps_per_epoch(tmp_path):
    rows = [{"step": 0, "dev/recall@10": 0.2}, {"step": 3, "train/loss": 1.0}, {"step": 5, "dev/recall@10": 0.3},
            {"step": 10, "dev/recall@10": 0.25}, {"step": -1, "final/test/recall@10": 0.9}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "timings.json").write_text(json.dumps({"steps_per_epoch": 5}))
    assert dev_curve(tmp_path, "recall@10") == ([0.0, 1.0, 2.0], [0.2, 0.3, 0.25])
    with pytest.raises(ValueError, match="no dev/ndcg@10 was logged"):
        dev_curve(tmp_path, "ndcg@10")
