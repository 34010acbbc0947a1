"""How many seeds the bi-encoder's ablation needs: its two InfoNCE variants over 3 seeds each.

    ragtune mine --config configs/scifact_zeroshot.py --mining.source=dense \
        --mining.num_negatives=8 --mining.num_random=1 --out runs/mined/scifact_dense_r1.jsonl
    OMP_NUM_THREADS=1 ragtune sweep configs/sweeps/scifact_biencoder_seeds.py

The budget of configs/sweeps/scifact_ablation.py (8 steps x batch 16, docs at 128 tokens, pooled
test) with the variants that differed most there: in-batch negatives only vs + 1 hard negative.
A seed draws the dev hold-out, the batches and their negatives. The spread over seeds, and of
the paired difference, says how many seeds a difference of that size needs at this budget
(README, Ablation sweeps).
"""

from pathlib import Path

from ragtune.sweep.spec import Sweep, load_sweep


def get_sweep() -> Sweep:
    base = load_sweep(Path(__file__).with_name("scifact_ablation.py"))
    return Sweep(
        name="scifact_biencoder_seeds",
        config=base.config,
        overrides=base.overrides,
        variants=[{"loss.name": "info_nce", "loss.temperature": 0.05, "data.num_negatives": [1, 0],
                   "seed": [1, 2, 3]}],
        metrics=base.metrics,
        description=base.description + " Three seeds per variant.",
    )
