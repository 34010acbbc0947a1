"""Zero-shot all-MiniLM-L6-v2 (packaged) on SciFact test: the baseline every other config beats."""

from ragtune.config import EvalConfig, ExperimentConfig, ModelConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="eval",
        output_dir="runs/scifact_zeroshot",
        model=ModelConfig(name="minilm", pooling="mean", normalize=True, query_max_length=64, doc_max_length=256),
        eval=EvalConfig(k_values=(1, 10, 100)),
    )
