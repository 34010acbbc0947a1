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
