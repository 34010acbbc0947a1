"""Adapter ablation on SciFact with 5 seeds: loss x negatives x temperature, on cached embeddings.

    OMP_NUM_THREADS=1 ragtune sweep configs/sweeps/scifact_adapter_seeds.py

The shipped recipe (configs/scifact_adapter.py: InfoNCE, 7 hard negatives, τ 0.05 learned) is
the first variant; every other variant is tested against it, paired by seed (the seed draws
the dev hold-out, the batches and the negatives), Holm-corrected. Each run trains in seconds
on the cached MiniLM embeddings. Measured numbers: README (Ablation sweeps).
"""

from ragtune.sweep.spec import Sweep

SEEDS = [1, 2, 3, 4, 5]


def get_sweep() -> Sweep:
    return Sweep(
        name="scifact_adapter_seeds",
        config="configs/scifact_adapter.py",
        overrides={"log.wandb": "disabled"},
        variants=[
            {"loss.name": "info_nce", "adapter.negatives": ["hard", "random"], "loss.temperature": [0.05, 0.1],
             "seed": SEEDS},
            {"loss.name": ["triplet", "poly1_ce"], "adapter.negatives": "hard", "seed": SEEDS},
        ],
        metrics=("final/test/ndcg@10", "final/test/recall@10", "final/test_unseen_pos/ndcg@10"),
        curves=("train/loss", "dev/recall@10"),
        description="Adapter ablation, 5 seeds per variant; the first variant is the shipped recipe.",
    )
