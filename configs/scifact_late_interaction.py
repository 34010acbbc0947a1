"""Late interaction (ColBERT-style) from the packaged all-MiniLM-L6-v2 on SciFact train, at the
bi-encoder's budget (configs/scifact_biencoder.py): the same records (one BM25-mined hard negative
per query, 2 random top-ups), batch 32, 3 epochs capped at 2,500 examples, lr 3e-5, the best dev
nDCG@10 checkpoint over the same 10% hold-out of train queries.

Token vectors of 128 dims (a projection from 384, drawn from the seed), queries padded to 32
tokens with [MASK] (query expansion, not attended to), document punctuation masked, as in
ColBERT / PyLate. InfoNCE over in-batch MaxSim scores at temperature 1 (PyLate's contrastive
loss). The test split is also reported as a reranker of the hybrid (BM25 + dense) top 100.
Measured numbers: README (Results).
"""

from ragtune.config import (DataConfig, EvalConfig, ExperimentConfig, LateConfig, LossConfig, MiningConfig,
                            OptimConfig, TrainConfig)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="late_interaction",
        output_dir="runs/scifact_late_interaction",
        data=DataConfig(num_negatives=1),
        mining=MiningConfig(source="bm25", num_negatives=8, num_random=2),
        loss=LossConfig(temperature=1.0),
        optim=OptimConfig(lr=3e-5),
        train=TrainConfig(epochs=3, max_examples=2500),
        eval=EvalConfig(dev_pool_top_k=20),
        late=LateConfig(dim=128, query_length=32, rerank_first_stage="hybrid", rerank_n=100),
    )
