"""Fine-tune the packaged all-MiniLM-L6-v2 on SciFact train (10% of train queries held out as dev).

In-batch negatives InfoNCE; the test split is evaluated only before (baseline/) and after (final/).
"""

from ragtune.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="biencoder",
        output_dir="runs/scifact_biencoder",
        seed=42,
        model=ModelConfig(name="minilm", pooling="mean", normalize=True, query_max_length=64, doc_max_length=256),
        data=DataConfig(dataset="scifact", train_split="train", dev_fraction=0.1, eval_split="test"),
        loss=LossConfig(name="info_nce", temperature=0.05),
        optim=OptimConfig(lr=2e-5, weight_decay=0.01, warmup_ratio=0.1, schedule="linear"),
        train=TrainConfig(epochs=3, batch_size=32),
        eval=EvalConfig(k_values=(1, 10, 100), dev_pool_top_k=20),
    )
