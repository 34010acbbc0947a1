"""No-label adaptation of all-MiniLM-L6-v2 to SciFact with no generator: inverse-cloze sentences.

    OMP_NUM_THREADS=2 ragtune adapt --config configs/scifact_adapt_sentences.py
    OMP_NUM_THREADS=2 ragtune adapt --config configs/scifact_adapt_sentences.py --data.dataset=cranfield \
        --output_dir=runs/cranfield_adapt_sentences        # the same recipe on another collection

1. queries: one seeded sentence of 6+ words from every document; its positive is the document with
   that sentence removed (ragtune/generation/corpus_queries.py), so it cannot be matched by copying;
2. pseudo-labels: a sentence is kept when the zero-shot MiniLM ranks its whole document in the top 10
   of the corpus (generic sentences that point nowhere drop out); 4 negatives from the dense top 30;
3. InfoNCE over the batch (in-batch negatives + one mined negative per query), 1 epoch at lr 3e-5,
   batch 32, the last step kept (train.select=last): the held-out synthetic dev would hold each
   sentence's document whole, where finding it is copying, which is not what this trains.
The test split's qrels are read only by the final evaluation. Measured numbers: README ("No labels").
"""

from ragtune.config import (
    AdaptConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    OptimConfig,
    TrainConfig,
)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="biencoder",
        output_dir="runs/scifact_adapt_sentences",
        data=DataConfig(num_negatives=1),
        loss=LossConfig(name="info_nce"),
        optim=OptimConfig(lr=3e-5),
        train=TrainConfig(epochs=1, batch_size=32, select="last"),
        eval=EvalConfig(dev_pool_top_k=20),
        log=LogConfig(wandb="disabled"),
        adapt=AdaptConfig(queries="sentences", teacher="none", filter="dense", filter_top_k=10),
    )
