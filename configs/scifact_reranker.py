"""Cross-encoder reranker on SciFact, trained from the packaged MiniLM with a fresh one-logit head.

model.name (the default, minilm) gives the cross-encoder's initial weights and is also the dense
first stage. Training: 3 epochs over the 835 (claim, positive) groups of the 728 non-dev train
claims, 4 claims x group 8 per step (1 positive, 4 hard negatives from the zero-shot MiniLM top
50, 3 random ones, drawn afresh every epoch), listwise softmax CE at lr 5e-5, pairs cut to 192
tokens (title + the abstract's first ~150 tokens). 627 steps; dev (81 held-out train claims,
top 10 reranked) picks the checkpoint by nDCG@10.

Test: the zero-shot MiniLM top 50, reranked (results.json: baseline/test = the first stage alone,
final/test = after reranking). For the fine-tuned bi-encoder's top 50 and a dev-chosen mix with
the first-stage score, see the README (task rerank_eval with rerank.first_stage_model and
rerank.interpolate_grid). Measured numbers: README (Results).
"""

from ragtune.config import EvalConfig, ExperimentConfig, LogConfig, LossConfig, OptimConfig, RerankConfig, TrainConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="reranker",
        output_dir="runs/scifact_reranker",
        loss=LossConfig(name="listwise_ce"),
        optim=OptimConfig(lr=5e-5),
        # 4 claims x group 8 = 32 pairs per step; a budget in groups (3 SciFact epochs are 2,508), so a
        # larger collection does not train longer
        train=TrainConfig(epochs=3, max_examples=2600, batch_size=4),
        eval=EvalConfig(k_values=(1, 10, 50)),  # @50 = the reranked depth: recall@50 is unchanged by design
        log=LogConfig(wandb="disabled"),
        rerank=RerankConfig(final_k=50, max_length=192, query_max_length=48,
                            hard_fraction=0.57, dev_n=10),
    )
