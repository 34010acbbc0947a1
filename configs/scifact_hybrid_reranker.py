"""BM25 + zero-shot MiniLM hybrid (cfg.hybrid defaults) -> top 50 -> the trained SciFact reranker.

Evaluation only; train the reranker first (configs/scifact_reranker.py). baseline/test = the hybrid
first stage alone, final/test = after reranking. Pair scores cached by the reranker runs are reused.
"""

from ragtune.config import EvalConfig, ExperimentConfig, LogConfig, ModelConfig, RerankConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="rerank_eval",
        output_dir="runs/scifact_hybrid_reranker",
        model=ModelConfig(name="runs/scifact_reranker/model"),  # the reranker (its saved max_length/template)
        eval=EvalConfig(k_values=(1, 10, 50)),
        log=LogConfig(wandb="disabled"),
        rerank=RerankConfig(first_stage="hybrid", first_stage_model="minilm", retrieve_n=50, final_k=50,
                            batch_size=50),
    )
