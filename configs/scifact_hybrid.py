"""BM25 + zero-shot MiniLM hybrid on SciFact: fusion and weight chosen on train queries, never test.

Weighted min-max fusion with dense weight 0.5 over the top 100 of each source, BM25 k1=1.2, b=0.75:
all HybridConfig defaults, which were chosen by `python experiments/run.py --config
configs/scifact_hybrid.py --hybrid.tune=true --data.dev_fraction=1.0` (grid rrf | weighted x dense
weight 0.0..1.0, nDCG@10 on all 809 train queries: nothing is trained here, so all of train is
held out). The 81-query dev split (dev_fraction=0.1) is too small to separate the candidates.
Measured numbers: README (Results).
"""

from ragtune.config import ExperimentConfig, LogConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="hybrid",
        output_dir="runs/scifact_hybrid",
        log=LogConfig(wandb="disabled"),
    )
