"""BM25 + zero-shot MiniLM hybrid (cfg.hybrid defaults) -> top 20 -> the trained SciFact reranker.

Evaluation only; train the reranker first (configs/scifact_reranker.py). baseline/test = the hybrid
first stage alone, final/test = after reranking, mixed with the first-stage score by the weight
that is best on the 81 dev claims (rerank.interpolate_grid; `interpolate_chosen` in timings.json;
--rerank.interpolate_grid= --rerank.interpolate=0 gives the reranker alone). Pair scores cached
by the reranker runs are reused. Measured numbers: README (Results).
"""

from ragtune.config import EvalConfig, ExperimentConfig, LogConfig, ModelConfig, RerankConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="rerank_eval",
        output_dir="runs/scifact_hybrid_reranker",
        model=ModelConfig(name="runs/scifact_reranker/model"),  # the reranker (its saved max_length/template)
        eval=EvalConfig(k_values=(1, 10, 20)),
        log=LogConfig(wandb="disabled"),
        rerank=RerankConfig(first_stage="hybrid", first_stage_model="minilm", retrieve_n=20, final_k=20,
                            interpolate_grid=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)),
    )
