from __future__ import annotations

import json

import pytest

from ragtune.config import ConfigError, ExperimentConfig, ModelConfig, RerankConfig
from ragtune.tasks import rerank_eval


def test_rerank_eval_needs_an_explicit_dense_first_stage():
    # model.name is the reranker here; embedding the corpus with it would silently give nonsense.
    cfg = ExperimentConfig(task="rerank_eval", model=ModelConfig(name="runs/some_reranker/model"),
                           rerank=RerankConfig(first_stage="dense", first_stage_model=""))
    with pytest.raises(ConfigError, match="rerank.first_stage_model"):
        rerank_eval.build(cfg, accelerator=None)


def test_interpolation_weight_is_chosen_on_dev_and_used_on_test(tmp_path, subprocess_env, tiny_model_dir,
                                                                  tiny_data_root):
    from ragtune.models.cross_encoder import CrossEncoder
    from tests.commands.test_run import run_entry

    reranker = tmp_path / "reranker"
    CrossEncoder.from_pretrained(str(tiny_model_dir), max_length=32, query_max_length=8).save(reranker)
    common = ("--rerank.first_stage=bm25", "--rerank.retrieve_n=10", "--rerank.final_k=10")
    out, proc = run_entry(tmp_path, subprocess_env, "rerank_eval", reranker, tiny_data_root, *common,
                          "--rerank.interpolate_grid=0,0.3,0.7,1")
    timings = json.loads((out / "timings.json").read_text())
    per_w = {w: timings[f"interpolate_dev_ndcg@10_w{w}"] for w in (0.0, 0.3, 0.7, 1.0)}
    chosen = timings["interpolate_chosen"]
    assert per_w[chosen] == max(per_w.values()) and timings["interpolate_dev_queries"] == 6  # 20% of 30
    assert f"interpolate: w={chosen} chosen on 6 dev queries" in proc.stdout
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    out_fixed, _ = run_entry(fixed, subprocess_env, "rerank_eval", reranker, tiny_data_root, *common,
                             f"--rerank.interpolate={chosen}")
    results, results_fixed = (json.loads((o / "results.json").read_text()) for o in (out, out_fixed))
    assert {k: v for k, v in results.items() if k.startswith("final/")} == \
           {k: v for k, v in results_fixed.items() if k.startswith("final/")}


@pytest.mark.parametrize(("rerank", "metric", "message"), [
    ({"interpolate_grid": (0.0, 0.5), "cascade_model": "x"}, "ndcg@10", "not supported with rerank.cascade_model"),
    ({"interpolate_grid": (0.0, 1.5)}, "ndcg@10", r"weights must be in \[0, 1\], got \[1.5\]"),
    ({"interpolate_grid": (0.0, 0.5)}, "exact_match", "needs a cutoff such as 'ndcg@10'"),
])
def test_a_bad_interpolation_grid_is_refused_before_any_work(rerank, metric, message):
    from ragtune.config import TrainConfig

    cfg = ExperimentConfig(task="rerank_eval", model=ModelConfig(name="runs/some_reranker/model"),
                           train=TrainConfig(metric_for_best=metric), rerank=RerankConfig(first_stage="bm25", **rerank))
    with pytest.raises(ConfigError, match=message):
        rerank_eval.build(cfg, accelerator=None)  # no data, no model: it must fail on the config alone


def test_an_int8_reranker_reranks_the_fp32_first_stages_candidates(tmp_path, subprocess_env, tiny_model_dir,
                                                                   tiny_data_root):
    """rerank.backend applies to the reranker alone: the dense first stage (baseline rows) stays fp32."""
    from ragtune.models.cross_encoder import CrossEncoder
    from tests.commands.test_run import run_entry

    reranker = tmp_path / "reranker"
    CrossEncoder.from_pretrained(str(tiny_model_dir), max_length=32, query_max_length=8).save(reranker)
    common = ("--rerank.first_stage=dense", f"--rerank.first_stage_model={tiny_model_dir}", "--rerank.retrieve_n=10",
              "--rerank.final_k=10")
    results, timings = {}, {}
    for backend in ("torch", "torch_int8", "torch_int8_smooth"):
        folder = tmp_path / backend
        folder.mkdir()
        out, _ = run_entry(folder, subprocess_env, "rerank_eval", reranker, tiny_data_root, *common,
                           f"--rerank.backend={backend}", "--rerank.int8_calibration_queries=8")
        results[backend] = json.loads((out / "results.json").read_text())
        timings[backend] = json.loads((out / "timings.json").read_text())
    fp32 = results["torch"]
    assert fp32["rerank_backend"] == "torch"
    for backend in ("torch_int8", "torch_int8_smooth"):
        int8 = results[backend]
        assert (int8["inference_backend"], int8["rerank_backend"]) == ("torch", backend)
        assert {k: v for k, v in int8.items() if k.startswith("baseline/")} == \
               {k: v for k, v in fp32.items() if k.startswith("baseline/")}  # the same candidate lists
        assert set(int8) == set(fp32)
    smooth = timings["torch_int8_smooth"]  # what the calibration chose, and that it is the closest to fp32
    errors = {float(k.rsplit("alpha", 1)[1]): v for k, v in smooth.items() if k.startswith("int8_mean_abs_error")}
    assert set(errors) == {0.0, 0.5, 0.6, 0.7, 0.8, 0.9} and errors[smooth["int8_smooth_alpha"]] == min(errors.values())
    assert smooth["int8_calibration_pairs"] > 0 and "int8_smooth_alpha" not in timings["torch_int8"]
