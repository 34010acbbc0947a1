"""Zero-shot query-likelihood reranking (UPR) with the packaged SmolLM2-135M-Instruct on SciFact.

Reranks the top 20 of zero-shot MiniLM for the first 50 test queries (1,000 LLM passes).
Measured: the first 30 queries, top 10, passages cut to 128 tokens (see the README command):
nDCG@10 0.6724 -> 0.7029 at 0.78 pairs/s on 2 shared cores.
baseline/test = MiniLM alone on the same queries. Measured on 2 heavily shared CPU cores:
~136 s per query of 20 pairs (0.15 pairs/s), i.e. ~2 h for this config: shrink it with
--rerank.max_queries / --rerank.retrieve_n / --rerank.qlm_doc_max_tokens, or use a GPU.
"""

from ragtune.config import EvalConfig, ExperimentConfig, LogConfig, ModelConfig, RerankConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="rerank_eval",
        output_dir="runs/scifact_reranker_qlm",
        model=ModelConfig(name="smollm2"),  # the scorer; the dense first stage is rerank.first_stage_model
        eval=EvalConfig(k_values=(1, 10, 20)),
        log=LogConfig(wandb="disabled"),
        rerank=RerankConfig(scorer="qlm", first_stage="dense", first_stage_model="minilm", retrieve_n=20,
                            final_k=20, batch_size=10, max_queries=50, qlm_doc_max_tokens=192),
    )
