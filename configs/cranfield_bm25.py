"""BM25 on Cranfield-1400 (test only, graded qrels 1..4): a sanity check of graded nDCG.

Lucene BM25 with the HybridConfig defaults (k1=1.2, b=0.75), retrieving the top 1000 per query.
Measured numbers: README (Results).
"""

from ragtune.config import DataConfig, EvalConfig, ExperimentConfig, LogConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="bm25",
        output_dir="runs/cranfield_bm25",
        data=DataConfig(dataset="cranfield"),
        eval=EvalConfig(top_k=1000),
        log=LogConfig(wandb="disabled"),
    )
