"""Distil the SciFact reranker into the bi-encoder (MarginMSE over [pos, 3 negs] groups).

1. Teacher scores for all SciFact train queries (first-stage negatives, 2 hard + 1 random):
     python -m experiments.tasks.reranker --config configs/scifact_distill.py
2. Train with them, and the same budget without them (same groups, same steps):
     python experiments/run.py --config configs/scifact_distill.py
     python experiments/run.py --config configs/scifact_distill.py --loss.name=info_nce \
         --output_dir=runs/scifact_distill_noteacher
"""

from ragtune.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RerankConfig,
    TrainConfig,
)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="biencoder",
        output_dir="runs/scifact_distill",
        model=ModelConfig(name="minilm", pooling="mean", normalize=True, query_max_length=64, doc_max_length=256),
        data=DataConfig(dataset="scifact", dev_fraction=0.1, train_file="runs/scifact_distill/teacher_train.jsonl",
                        num_negatives=3),
        loss=LossConfig(name="margin_mse", temperature=0.05),  # student score = cosine / 0.05
        optim=OptimConfig(lr=2e-5, warmup_ratio=0.1),
        train=TrainConfig(epochs=1, max_steps=40, batch_size=16),  # 40 x 16 queries x 4 docs: ~12 min on 2 cores
        eval=EvalConfig(k_values=(1, 10, 100), dev_pool_top_k=20),
        log=LogConfig(wandb="disabled"),
        rerank=RerankConfig(teacher_model="runs/scifact_reranker/model", first_stage="dense",
                            first_stage_model="minilm",
                            group_size=4, hard_fraction=0.67, hard_depth=50, batch_size=64),
    )
