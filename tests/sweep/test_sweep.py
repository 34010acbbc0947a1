"""Sweeps: grid expansion by hand, and a real 2-variant sweep of the tiny task through the entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ragtune.config import ConfigError
from ragtune.sweep.spec import Variant, expand_grid, expand_variants, markdown_table, read_csv
from tests.commands.test_run import CONFIG
from tests.conftest import REPO

# ---------------------------------------------------------------- pure parts


def test_expand_grid_is_the_cartesian_product_first_key_slowest():
    assert expand_grid({"a": [1, 2], "b": "x", "c": [True, False]}) == [
        {"a": 1, "b": "x", "c": True}, {"a": 1, "b": "x", "c": False},
        {"a": 2, "b": "x", "c": True}, {"a": 2, "b": "x", "c": False}]
    assert expand_grid({}) == [{}]


def test_expand_variants_concatenates_grids_and_names_by_varying_keys_only():
    variants = expand_variants([
        {"loss.name": "info_nce", "loss.temperature": [0.02, 0.1], "train.max_steps": 5},
        {"loss.name": "triplet", "train.max_steps": 5},
    ])
    # train.max_steps is the same everywhere: not in the names; loss.name -> 'loss='.
    assert [v.name for v in variants] == ["loss=info_nce,temperature=0.02", "loss=info_nce,temperature=0.1",
                                          "loss=triplet"]
    assert variants[2] == Variant("loss=triplet", {"loss.name": "triplet", "train.max_steps": 5})
    assert expand_variants([{"optim.lr": 1e-3}])[0].name == "base"
    assert [v.name for v in expand_variants([{"eval.k_values": [(1, 10), (5,)], "data.train_file": ["a b/c", ""]}])] \
        == ["k_values=1+10,train_file=a-b-c", "k_values=1+10,train_file=", "k_values=5,train_file=a-b-c",
            "k_values=5,train_file="]  # folder-safe


def test_duplicate_variants_are_an_error():
    with pytest.raises(ConfigError, match="both named 'lr=0.001'"):
        expand_variants([{"optim.lr": [1e-3, 2e-3]}, {"optim.lr": 1e-3}])


def test_markdown_table_rounds_and_blanks_missing():
    rows = [{"variant": "a", "loss.name": "x", "final/test/ndcg@10": 0.123456, "wall_seconds": 90.0},
            {"variant": "b", "loss.name": "y"}]
    assert markdown_table(rows, ["loss.name"], ["final/test/ndcg@10"]) == (
        "| variant | loss | final/test/ndcg@10 | wall (min) |\n|---|---|---|---|\n"
        "| a | x | 0.1235 | 1.5 |\n| b | y |  |  |\n")


def test_stale_keys_ignore_logging_and_name_what_changed(tmp_path):
    from ragtune.config import ExperimentConfig, apply_overrides, save_config
    from ragtune.sweep.spec import stale_keys

    ran = apply_overrides(ExperimentConfig(), {"optim.lr": 1e-4, "log.group": "old", "output_dir": "/a"})
    save_config(ran, tmp_path / "config.json")
    now = apply_overrides(ExperimentConfig(), {"optim.lr": 2e-4, "log.wandb": "disabled", "train.resume": "latest"})
    assert stale_keys(now, tmp_path / "config.json") == ["optim.lr: ran with 0.0001, sweep says 0.0002"]
    assert stale_keys(ran, tmp_path / "config.json") == []
    (tmp_path / "config.json").write_text('{"optim": {"lrr": 1}}')
    assert "no longer loads (unknown config key 'optim.lrr'" in stale_keys(now, tmp_path / "config.json")[0]


# ---------------------------------------------------------------- end to end

SWEEP = """
from ragtune.sweep.spec import Sweep

def get_sweep():
    return Sweep(name="tiny_sweep", config={config!r},
                 overrides={{"train.batch_size": 4, "optim.lr": 5e-4, "train.eval_every": {eval_every},
                             "train.epochs": {epochs}}},
                 variants=[{{"loss.temperature": [0.05, 0.1]}}],
                 metrics=("final/test/ndcg@10", "final/test/recall@5"))
"""


def _write_sweep(tmp_path, model, root, epochs=2, eval_every=3):
    base = tmp_path / "base.py"
    base.write_text(CONFIG.format(task="biencoder", out=str(tmp_path / "unused"), model=str(model), root=str(root)))
    path = tmp_path / "tiny_sweep.py"
    path.write_text(SWEEP.format(config=str(base), epochs=epochs, eval_every=eval_every))
    return path


def _sweep_cmd(sweep_file, out, *extra):
    return [sys.executable, "-m", "ragtune", "sweep", str(sweep_file), "--out", str(out), *extra]


def test_sweep_runs_collects_skips_and_refuses_stale(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    sweep_file, out = _write_sweep(tmp_path, tiny_model_dir, tiny_data_root), tmp_path / "sweep"
    first = subprocess.run(_sweep_cmd(sweep_file, out), env=subprocess_env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    names = ["temperature=0.05", "temperature=0.1"]
    rows = read_csv(out / "results.csv")
    assert [r["variant"] for r in rows] == names
    for row in rows:
        results = json.loads((out / row["variant"] / "results.json").read_text())
        assert row["inference_backend"] == results.pop("inference_backend") == "torch"
        assert {k: float(row[k]) for k in results} == results  # every other results.json key, exact
        cfg = json.loads((out / row["variant"] / "config.json").read_text())
        assert cfg["loss"]["temperature"] == float(row["loss.temperature"])
        assert cfg["log"]["group"] == "tiny_sweep" and cfg["log"]["run_name"] == f"tiny_sweep/{row['variant']}"
        assert float(row["wall_seconds"]) > 0
    table = (out / "results.md").read_text()
    for row in rows:  # the markdown table shows the csv's numbers
        assert f"| {row['variant']} | {row['loss.temperature']} | {float(row['final/test/ndcg@10']):.4f} |" in table
    for png in ("final_test_ndcg_at_10.png", "curves.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in table

    mtimes = {n: (out / n / "results.json").stat().st_mtime_ns for n in names}
    second = subprocess.run(_sweep_cmd(sweep_file, out), env=subprocess_env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert all(f"{n}: finished, skipped" in second.stdout for n in names)
    assert {n: (out / n / "results.json").stat().st_mtime_ns for n in names} == mtimes
    assert all((out / n / "run.log").read_text().count("$ ") == 1 for n in names)  # one launch each

    stale = subprocess.run(_sweep_cmd(sweep_file, out, "--optim.lr=1e-3"), env=subprocess_env,
                           capture_output=True, text=True, timeout=300)
    assert stale.returncode == 2 and "optim.lr: ran with 0.0005, sweep says 0.001" in stale.stderr


def test_killed_variant_resumes_from_latest(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    # 24 train records / batch 4 = 6 steps an epoch; 40 epochs; a checkpoint every 20 steps.
    sweep_file = _write_sweep(tmp_path, tiny_model_dir, tiny_data_root, epochs=40, eval_every=20)
    out = tmp_path / "sweep"
    # Extra CLI overrides reach every variant; here the pooled test split too.
    cmd = _sweep_cmd(sweep_file, out, "--only", "temperature=0.05", "--eval.test_pool_top_k=5")
    # Own session: killing the group ends the sweep AND the run.py child it started.
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    pointer = out / "temperature=0.05" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep ended before it could be killed"
    assert not (out / "temperature=0.05" / "results.json").exists()

    resumed = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "temperature=0.05: resuming from checkpoints/latest" in resumed.stdout
    log = (out / "temperature=0.05" / "run.log").read_text()
    assert "--train.resume=latest" in log and "resumed from" in log
    assert json.loads((out / "temperature=0.05" / "sweep.json").read_text())["launches"] == 2
    assert [r["variant"] for r in read_csv(out / "results.csv")] == ["temperature=0.05"]
    results = json.loads((out / "temperature=0.05" / "results.json").read_text())
    assert {"baseline/test-pool5/ndcg@10", "final/test-pool5/ndcg@10"} <= set(results)


def test_pooled_test_is_exact_for_the_pooling_model(tmp_path, tiny_model_dir, tiny_data_root):
    """eval.test_pool_top_k: positives + the model's top-k; that model's metrics @<=k are unchanged."""
    from ragtune.config import EvalConfig, ModelConfig
    from ragtune.data.beir import load_beir
    from ragtune.eval.dense import candidate_pool, evaluate_dense
    from ragtune.models.encoder import Encoder

    encoder = Encoder.from_config(ModelConfig(name=str(tiny_model_dir), query_max_length=16, doc_max_length=32))
    test = load_beir("tiny", "test", tiny_data_root)
    cfg = EvalConfig(k_values=(1, 3), top_k=3, batch_size=8)
    pooled = candidate_pool(encoder, test, 3, cfg)
    assert pooled.split == "test-pool3" and pooled.queries == test.queries and pooled.qrels == test.qrels
    positives = {d for docs in test.qrels.values() for d in docs}
    assert positives <= set(pooled.corpus) and len(pooled.corpus) <= len(positives) + 3 * len(test.queries)
    assert len(pooled.corpus) < len(test.corpus)
    full = evaluate_dense(encoder, test, cfg, show_progress=False).metrics
    assert evaluate_dense(encoder, pooled, cfg, show_progress=False).metrics == pytest.approx(full, abs=1e-6)


def test_a_variant_that_died_before_its_first_checkpoint_starts_over(tmp_path):
    """run.py refuses a folder that holds a run; the sweep reruns such a variant with --overwrite."""
    from ragtune.commands.sweep import variant_command
    from ragtune.sweep.spec import Sweep

    sweep = Sweep(name="s", config="base.py", overrides={}, variants=[{"loss.temperature": [0.05]}], metrics=())
    variant = Variant(name="temperature=0.05", overrides={"loss.temperature": 0.05})
    out = tmp_path / "temperature=0.05"
    out.mkdir()
    assert "--overwrite" not in variant_command(sweep, variant, {}, out, resume=False)  # a fresh folder
    (out / "config.json").write_text("{}")  # a launch that died in mining or the baseline
    assert variant_command(sweep, variant, {}, out, resume=False)[-1] == "--overwrite"
    assert variant_command(sweep, variant, {}, out, resume=True)[-1] == "--train.resume=latest"


def test_fold_summary_is_the_mean_and_sample_std_over_folds():
    from ragtune.sweep.spec import fold_summary

    rows = [{"baseline/test/ndcg@10": b, "final/test/ndcg@10": f} for b, f in ((0.3, 0.4), (0.5, 0.45), (0.2, 0.35))]
    s = fold_summary(rows, ["final/test/ndcg@10"])["final/test/ndcg@10"]
    deltas = [0.1, -0.05, 0.15]
    assert s["final_mean"] == pytest.approx(0.4) and s["baseline_mean"] == pytest.approx(1 / 3)
    assert s["final_std"] == pytest.approx(((0.0 ** 2 + 0.05 ** 2 + 0.05 ** 2) / 2) ** 0.5)
    assert s["delta_mean"] == pytest.approx(sum(deltas) / 3)
    mean = sum(deltas) / 3
    assert s["delta_std"] == pytest.approx((sum((d - mean) ** 2 for d in deltas) / 2) ** 0.5)
    assert s["improved"] == 2 and s["folds"] == 3


def test_cross_validation_runs_every_fold_and_reports_mean_and_std(tmp_path, subprocess_env, tiny_model_dir,
                                                                   tiny_data_root):
    base = tmp_path / "base.py"
    base.write_text(CONFIG.format(task="biencoder", out=str(tmp_path / "unused"), model=str(tiny_model_dir),
                                  root=str(tiny_data_root)))
    out = tmp_path / "cv"
    cmd = [sys.executable, "-m", "ragtune", "cv", "--config", str(base), "--folds", "2", "--out",
           str(out), "--train.batch_size=2", "--train.epochs=2", "--optim.lr=1e-3", "--data.dev_fraction=0.25"]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from ragtune.sweep.spec import fold_summary

    rows = [json.loads((out / f"cv_fold={i}" / "results.json").read_text()) for i in range(2)]
    tests = [json.loads((out / f"cv_fold={i}" / "config.json").read_text())["data"] for i in range(2)]
    assert [t["cv_fold"] for t in tests] == [0, 1] and all(t["cv_folds"] == 2 for t in tests)
    expected = fold_summary(rows, ["final/test/ndcg@10", "final/test/recall@10", "final/test/mrr@10"])
    got = json.loads((out / "cv.json").read_text())
    assert got.keys() == expected.keys() and all(got[m] == pytest.approx(expected[m]) for m in expected)
    assert "| final/test/ndcg@10 |" in (out / "cv.md").read_text()


def test_cross_validation_with_a_bad_setting_exits_2_with_one_line(tmp_path, subprocess_env):
    config = str(REPO / "configs" / "cranfield_adapter.py")
    cmd = [sys.executable, "-m", "ragtune", "cv", "--config", config, "--folds", "1",
           "--out", str(tmp_path / "cv")]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --data.cv_folds: must be 0 (no cross-validation) or >= 2, got 1"
    assert not (tmp_path / "cv").exists()


@pytest.mark.slow  # 66 s; the length choice itself is unit-tested in tests/sweep/test_inner_cv.py
def test_cross_validation_with_inner_folds_trains_each_fold_to_the_length_its_inner_folds_chose(
        tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    from ragtune.sweep.inner_cv import choose_length, dev_curve

    base = tmp_path / "base.py"
    base.write_text(CONFIG.format(task="adapter", out=str(tmp_path / "unused"), model=str(tiny_model_dir),
                                  root=str(tiny_data_root)))
    out = tmp_path / "cv"
    cmd = [sys.executable, "-m", "ragtune", "cv", "--config", str(base), "--folds", "2", "--inner-folds", "2",
           "--out", str(out), "--train.batch_size=2", "--train.epochs=3", "--optim.lr=0.1",
           "--adapter.negatives=random", "--adapter.num_negatives=2", "--train.metric_for_best=ndcg@1"]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads((out / "cv.json").read_text())
    for fold in range(2):
        inner = [out / "inner" / f"cv_fold={fold},dev_fold={j}" for j in range(2)]
        assert [json.loads((d / "config.json").read_text())["data"]["dev_fold"] for d in inner] == [0, 1]
        expected = choose_length([dev_curve(d, "ndcg@1") for d in inner])
        assert got["inner"][str(fold)]["chosen_epoch"] == pytest.approx(expected["chosen_epoch"])
        [final] = [d for d in out.glob(f"cv_fold={fold}*") if (d / "results.json").is_file()]
        train_cfg = json.loads((final / "config.json").read_text())["train"]
        assert train_cfg["select"] == "last" and train_cfg["stop_at_epoch"] == pytest.approx(expected["chosen_epoch"])
        timings = json.loads((final / "timings.json").read_text())
        assert timings["steps"] == round(expected["chosen_epoch"] * timings["steps_per_epoch"])
        assert timings["dev_queries"] == 0 and timings["train_queries"] == 5  # every train query trains
        results = json.loads((final / "results.json").read_text())
        if expected["chosen_epoch"] == 0:  # lr 0.1 wrecks this tiny model: the start is chosen and shipped as is
            assert all(results[f"final/{k}"] == results[f"baseline/{k}"] for k in ("test/ndcg@10", "test/mrr@10"))
    assert "| outer fold | mean inner dev, epoch 0 |" in (out / "cv.md").read_text()
    assert (out / "inner_curves.png").stat().st_size > 0
