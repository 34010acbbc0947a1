from __future__ import annotations

import pytest

from experiments.tasks import rerank_eval
from ragtune.config import ConfigError, ExperimentConfig, ModelConfig, RerankConfig


def test_rerank_eval_needs_an_explicit_dense_first_stage():
    # model.name is the reranker here; embedding the corpus with it would silently give nonsense.
    cfg = ExperimentConfig(task="rerank_eval", model=ModelConfig(name="runs/some_reranker/model"),
                           rerank=RerankConfig(first_stage="dense", first_stage_model=""))
    with pytest.raises(ConfigError, match="rerank.first_stage_model"):
        rerank_eval.build(cfg, accelerator=None)
