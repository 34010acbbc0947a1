"""Zero-shot all-MiniLM-L6-v2 (packaged) on SciFact test: the baseline the other configs are compared with.

Task eval and the ModelConfig defaults (mean pooling, normalised, queries cut to 64 tokens,
documents to 256); nothing is trained. Measured numbers: README (Results).
"""

from ragtune.config import ExperimentConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        output_dir="runs/scifact_zeroshot",
    )
