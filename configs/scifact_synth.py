"""Synthetic SciFact claims from SmolLM2-135M-Instruct, round-trip filtered by all-MiniLM-L6-v2.

    OMP_NUM_THREADS=1 ragtune synth --config configs/scifact_synth.py

No labels are read: documents are a seeded random sample of the corpus, and the filter keeps a
claim only if the frozen MiniLM ranks its source document in the top 20 of all 5,183. Sized for
a CPU budget: 600 chunks of 128 tokens (overlap 16, at most the first 2 of a document), one
sampled claim each (temperature 0.7, top-p 0.9), 16 prompts per generate() call. Train on the
output with configs/scifact_adapter_synth.py or configs/scifact_biencoder_synth.py.
Measured numbers: README (Generator: grounded answers with LoRA, and synthetic queries).
"""

from ragtune.config import ExperimentConfig, SynthConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="synth",  # informational: ragtune/commands/synth.py is the entry point, not run.py
        output_dir="runs/scifact_synth",
        synth=SynthConfig(chunk_size=128, chunk_overlap=16, max_chunks_per_doc=2, max_chunks=600, batch_size=16),
    )
