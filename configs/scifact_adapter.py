"""Query-only linear adapter on frozen all-MiniLM-L6-v2, SciFact train -> test.

Corpus and query embeddings are computed once and cached; only a linear map of the query
embedding trains, on the cached vectors. Each query's group is its positive plus 7 hard negatives
(the frozen encoder's top 50, positives removed), scored with InfoNCE and a learned temperature:
chosen on dev over the seed protocol (triplet loss, margin 1.0, one random negative). 20 epochs at
lr 1e-3, batch 32. Baseline = the frozen encoder (identity adapter); final = with the adapter.
The checkpoint is chosen on dev recall@10 only (dev = 10% of train queries); test was never used
to choose.

181 of SciFact's 283 test positive docs are also train positives, so a query-only adapter can
learn which documents this benchmark cites; the `test_unseen_pos/` rows report the 117 test
queries whose relevant docs are never a train positive. Measured numbers: README (Results).
"""

from ragtune.config import AdapterConfig, ExperimentConfig, LossConfig, OptimConfig, TrainConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="adapter",
        output_dir="runs/scifact_adapter",
        adapter=AdapterConfig(negatives="hard", num_negatives=7),
        loss=LossConfig(learn_temperature=True),
        optim=OptimConfig(lr=1e-3, weight_decay=0.0),
        train=TrainConfig(epochs=20, metric_for_best="recall@10"),
    )
