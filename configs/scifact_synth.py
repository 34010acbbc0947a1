"""Synthetic SciFact claims from SmolLM2-135M-Instruct, round-trip filtered by all-MiniLM-L6-v2.

    OMP_NUM_THREADS=1 python experiments/synth.py --config configs/scifact_synth.py

No labels are read: documents are a seeded random sample of the corpus, and the filter keeps a
claim only if the frozen MiniLM ranks its source document in the top 20 of all 5,183. Sized for
~15 minutes of generation on 1 CPU thread (measured ~0.5-0.7 chunks/s for 128-token chunks at
batch 8-16 on the shared 2-core machine). Train on the output with configs/scifact_adapter_synth.py
or configs/scifact_biencoder_synth.py.

Measured (1 thread, nice 5, machine load ~4.5): 600 chunks of 305 docs in 714 s, 17,938 generated
tokens = 25.1 tokens/s (167 tokens/s counting the 101,453 prompt tokens); 17 empty/short, 5
duplicates, 578 deduped, 518 kept by the top-20 round trip (407 rank 1, median rank 1).
"""

from ragtune.config import DataConfig, EvalConfig, ExperimentConfig, ModelConfig, SynthConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="synth",  # informational: experiments/synth.py is the entry point, not run.py
        output_dir="runs/scifact_synth",
        model=ModelConfig(name="minilm", pooling="mean", normalize=True, query_max_length=64, doc_max_length=256),
        data=DataConfig(dataset="scifact"),
        synth=SynthConfig(generator="smollm2", chunk_size=128, chunk_overlap=16, max_chunks_per_doc=2,
                          max_chunks=600, queries_per_chunk=1, max_new_tokens=32, do_sample=True,
                          temperature=0.7, top_p=0.9, batch_size=16, min_words=3, filter_top_k=20, seed=0),
        eval=EvalConfig(batch_size=128),
    )
