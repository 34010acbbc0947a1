"""No-label adaptation that never re-encodes the corpus: the BM25 + dense hybrid distilled into MiniLM's
query tower, against the frozen document embeddings (task query_tower):

    OMP_NUM_THREADS=2 ragtune adapt --config configs/scifact_adapt_query_tower.py
    OMP_NUM_THREADS=2 ragtune adapt --config configs/scifact_adapt_query_tower.py --data.dataset=cranfield \
        --output_dir=runs/cranfield_adapt_query_tower
    # an unlabelled query log instead of generated queries (JSONL rows with "query" or "text"):
    OMP_NUM_THREADS=2 ragtune adapt --config configs/scifact_adapt_query_tower.py --adapt.queries=log \
        --adapt.filter=none --adapt.query_log=LOG.jsonl --output_dir=runs/scifact_adapt_query_log

1. SmolLM2-135M writes 1 sampled claim (T 0.7, top-p 0.9) for the first 256-token chunk of each of 640
   seeded random documents (no qrels read), kept when the teacher ranks its source in its top 10;
2. the teacher, the hybrid of ragtune/generation/pseudo_labels.py in the student's units, lists its
   top 100 documents for each query;
3. corpus_kl_distill: the student's softmax over the whole corpus is matched to that list, 80 steps
   of 64 queries at lr 3e-5, the last step kept (no label-free dev predicted the real queries).
The settings were fixed before any test run and probed only on SciFact's train claims
(experiments/adapt_query_source.py). The test split's qrels are read only by the final evaluation.
Measured numbers: README ("No labels").
"""

from ragtune.config import (
    AdaptConfig,
    DataConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    OptimConfig,
    SynthConfig,
    TrainConfig,
)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="query_tower",
        output_dir="runs/scifact_adapt_query_tower",
        data=DataConfig(),
        loss=LossConfig(name="corpus_kl_distill"),
        optim=OptimConfig(lr=3e-5),
        train=TrainConfig(max_steps=80, batch_size=64, select="last"),
        log=LogConfig(wandb="disabled"),
        synth=SynthConfig(chunk_size=256, chunk_overlap=32, max_chunks_per_doc=1, max_chunks=640,
                          queries_per_chunk=1, batch_size=16),
        adapt=AdaptConfig(teacher="hybrid", filter="teacher", filter_top_k=10, teacher_top_k=100),
    )
