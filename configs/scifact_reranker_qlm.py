"""Zero-shot query-likelihood reranking (UPR) with the packaged SmolLM2-135M-Instruct on SciFact.

Reranks the top 20 of zero-shot MiniLM for the first 50 test queries (1,000 LLM passes), each
passage cut to 192 tokens in the prompt; nothing is trained. baseline/test = MiniLM alone on the
same queries. Slow on a CPU: shrink it with --rerank.max_queries / --rerank.retrieve_n /
--rerank.qlm_doc_max_tokens (the README command reranks a smaller sample), or use a GPU.
Measured numbers: README (Results).
"""

from ragtune.config import EvalConfig, ExperimentConfig, LogConfig, ModelConfig, RerankConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="rerank_eval",
        output_dir="runs/scifact_reranker_qlm",
        model=ModelConfig(name="smollm2"),  # the scorer; the dense first stage is rerank.first_stage_model
        eval=EvalConfig(k_values=(1, 10, 20)),
        log=LogConfig(wandb="disabled"),
        rerank=RerankConfig(scorer="qlm", first_stage_model="minilm", retrieve_n=20, final_k=20, batch_size=10,
                            max_queries=50),
    )
