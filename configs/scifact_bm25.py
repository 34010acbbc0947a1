"""BM25 on SciFact test: Lucene BM25 (k1=1.2, b=0.75), title + text, Lucene stopwords, Porter stemmer.

The setting of BEIR's Elasticsearch baseline (0.665) and Anserini's flat index (0.679); untuned.
"""

from ragtune.config import EvalConfig, ExperimentConfig, HybridConfig, LogConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="bm25",
        output_dir="runs/scifact_bm25",
        hybrid=HybridConfig(bm25_k1=1.2, bm25_b=0.75),
        eval=EvalConfig(k_values=(1, 10, 100), top_k=1000),
        log=LogConfig(wandb="disabled"),
    )
