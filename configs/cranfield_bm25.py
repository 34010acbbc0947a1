"""BM25 on Cranfield-1400 (test only, graded qrels 1..4): a sanity check of graded nDCG."""

from ragtune.config import DataConfig, EvalConfig, ExperimentConfig, HybridConfig, LogConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="bm25",
        output_dir="runs/cranfield_bm25",
        data=DataConfig(dataset="cranfield", eval_split="test"),
        hybrid=HybridConfig(bm25_k1=1.2, bm25_b=0.75),
        eval=EvalConfig(k_values=(1, 10, 100), top_k=1000),
        log=LogConfig(wandb="disabled"),
    )
