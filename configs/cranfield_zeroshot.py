"""Zero-shot all-MiniLM-L6-v2 on Cranfield (graded qrels 1-4, test only): a small real-data sanity check."""

from ragtune.config import DataConfig, EvalConfig, ExperimentConfig, ModelConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="eval",
        output_dir="runs/cranfield_zeroshot",
        model=ModelConfig(name="minilm", pooling="mean", normalize=True, query_max_length=64, doc_max_length=256),
        data=DataConfig(dataset="cranfield", eval_split="test"),
        eval=EvalConfig(k_values=(1, 10, 100)),
    )
