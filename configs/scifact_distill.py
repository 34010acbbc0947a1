"""Distil the SciFact reranker into the bi-encoder (MarginMSE over [pos, 3 negs] groups).

1. Teacher scores for all SciFact train queries (first-stage negatives, 2 hard + 1 random):
     ragtune teacher-scores --config configs/scifact_distill.py
2. Train with them, and the same budget without them (same groups, same steps):
     python experiments/run.py --config configs/scifact_distill.py
     python experiments/run.py --config configs/scifact_distill.py --loss.name=info_nce \
         --output_dir=runs/scifact_distill_noteacher

The teacher is the trained reranker of configs/scifact_reranker.py; the student starts from the
packaged all-MiniLM-L6-v2 and trains a fixed 40 steps of 16 queries; the checkpoint is the best
dev nDCG@10 (10% of train queries held out). Measured numbers: README (Results).
"""

from ragtune.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    RerankConfig,
    TrainConfig,
)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="biencoder",
        output_dir="runs/scifact_distill",
        data=DataConfig(train_file="runs/scifact_distill/teacher_train.jsonl", num_negatives=3),
        loss=LossConfig(name="margin_mse"),  # student score = cosine / loss.temperature (default 0.05)
        train=TrainConfig(max_steps=40, batch_size=16),  # 40 x 16 queries x 4 docs
        eval=EvalConfig(dev_pool_top_k=20),
        log=LogConfig(wandb="disabled"),
        rerank=RerankConfig(teacher_model="runs/scifact_reranker/model", first_stage_model="minilm",
                            group_size=4, hard_fraction=0.67),
    )
