"""Query-only linear adapter on frozen all-MiniLM-L6-v2 trained on SYNTHETIC pairs only.

    OMP_NUM_THREADS=1 ragtune synth --config configs/scifact_synth.py   # once
    python experiments/run.py --config configs/scifact_adapter_synth.py

No human label is read for training or selection: the train queries are the round-trip-filtered
SmolLM2 claims of runs/scifact_synth/synthetic_pairs.jsonl (positive = source document), and dev
(checkpoint selection) holds out the claims of a seeded 10% of the source documents. SciFact test
is evaluated only before (baseline/ = frozen MiniLM) and after (final/). Settings as
configs/scifact_adapter.py except: in-batch negatives only (adapter.negatives=none, chosen on
synthetic dev nDCG@10 over hard and random negatives), and the checkpoint is chosen on dev
nDCG@10 (the default) because synthetic dev recall@10 saturates. Measured numbers: README (Results).
"""

from ragtune.config import AdapterConfig, DataConfig, ExperimentConfig, LossConfig, OptimConfig, TrainConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="adapter",
        output_dir="runs/scifact_adapter_synth",
        data=DataConfig(train_file="runs/scifact_synth/synthetic_pairs.jsonl"),
        adapter=AdapterConfig(negatives="none"),  # in-batch only: chosen on dev
        loss=LossConfig(learn_temperature=True),
        optim=OptimConfig(lr=1e-3, weight_decay=0.0),
        train=TrainConfig(epochs=20),
    )
