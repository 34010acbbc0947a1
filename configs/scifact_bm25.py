"""BM25 on SciFact test: Lucene BM25 (k1=1.2, b=0.75), title + text, Lucene stopwords, Porter stemmer.

The setting of BEIR's Elasticsearch baseline and Anserini's flat index; untuned (k1 and b are the
HybridConfig defaults). Retrieves the top 1000 per query. Measured numbers: README (Results).
"""

from ragtune.config import EvalConfig, ExperimentConfig, LogConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="bm25",
        output_dir="runs/scifact_bm25",
        eval=EvalConfig(top_k=1000),
        log=LogConfig(wandb="disabled"),
    )
