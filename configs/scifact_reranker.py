"""Cross-encoder reranker on SciFact, trained from the packaged MiniLM with a fresh one-logit head.

First stage: zero-shot MiniLM dense top 50 (point rerank.first_stage_model at a fine-tuned
bi-encoder folder for the (b) setting). results.json: baseline/test = first stage alone,
final/test = after reranking the top 50. Sized for 2 shared CPU cores (measured ~0.6 pairs/s
fwd+bwd at 256 tokens under load): 50 steps x 8 queries x group 4 (1 positive, 1 first-stage
hard negative, 2 random) at 128 tokens (the title and the abstract's first ~100 tokens).
That budget under-trains it (dev nDCG@10 on the top 10: 0.553 vs 0.660 for the first stage);
--rerank.interpolate=0.6 (chosen on dev) mixes the first-stage score back in.
"""

from ragtune.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RerankConfig,
    TrainConfig,
)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="reranker",
        output_dir="runs/scifact_reranker",
        model=ModelConfig(name="minilm"),  # initial weights of the cross-encoder; also the dense first stage
        data=DataConfig(dataset="scifact", dev_fraction=0.1),
        loss=LossConfig(name="listwise_ce"),
        optim=OptimConfig(lr=5e-5, warmup_ratio=0.1, schedule="linear"),
        train=TrainConfig(epochs=1, max_steps=50, batch_size=8),  # 8 queries x group 4 = 32 pairs per step
        eval=EvalConfig(k_values=(1, 10, 50)),  # @50 = the reranked depth: recall@50 is unchanged by design
        log=LogConfig(wandb="disabled"),
        rerank=RerankConfig(first_stage="dense", retrieve_n=50, final_k=50, max_length=128,
                            query_max_length=48, batch_size=50, group_size=4, hard_fraction=0.34,
                            hard_depth=50, dev_n=10),
    )
