"""Fine-tune the packaged all-MiniLM-L6-v2 on SciFact train (10% of train queries held out as dev).

InfoNCE over in-batch negatives plus one BM25-mined hard negative per query (mined at the start
of the run into <output_dir>/mined-bm25-<settings hash>.jsonl; candidates scoring above 0.95 x the positive's BM25
score are dropped as likely false negatives; 2 random corpus docs top up every query), 3 epochs
at lr 3e-5, batch 32. BM25 negatives and 3 epochs were chosen on dev nDCG@10 over in-batch
negatives only and over 2 epochs; the checkpoint is the best dev nDCG@10. The test split is
evaluated only before (baseline/) and after (final/). Measured numbers: README (Results).
"""

from ragtune.config import DataConfig, EvalConfig, ExperimentConfig, MiningConfig, OptimConfig, TrainConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="biencoder",
        output_dir="runs/scifact_biencoder",
        data=DataConfig(num_negatives=1),
        mining=MiningConfig(source="bm25", num_negatives=8, num_random=2),
        optim=OptimConfig(lr=3e-5),
        # A budget in examples (3 SciFact epochs are 2,496), so a larger collection does not train longer.
        train=TrainConfig(epochs=3, max_examples=2500),
        eval=EvalConfig(dev_pool_top_k=20),
    )
