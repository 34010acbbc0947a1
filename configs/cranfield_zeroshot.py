"""Zero-shot all-MiniLM-L6-v2 on Cranfield (graded qrels 1-4, test only): a small real-data sanity check.

Task eval and the ModelConfig defaults (packaged MiniLM, mean pooling, normalised, queries cut to
64 tokens, documents to 256); nothing is trained. Measured numbers: README (Results).
"""

from ragtune.config import DataConfig, ExperimentConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        output_dir="runs/cranfield_zeroshot",
        data=DataConfig(dataset="cranfield"),
    )
