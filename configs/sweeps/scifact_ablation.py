"""Bi-encoder ablation on SciFact: loss x hard negatives x InfoNCE temperature (6 variants).

    ragtune mine --config configs/scifact_zeroshot.py --mining.source=dense \
        --mining.num_negatives=8 --mining.num_random=1 --out runs/mined/scifact_dense_r1.jsonl
    OMP_NUM_THREADS=1 ragtune sweep configs/sweeps/scifact_ablation.py

Budgeted for a shared 2-core CPU: 8 steps of batch 16 from all-MiniLM-L6-v2, documents cut
to 128 tokens for training AND evaluation (so the zero-shot `baseline/` columns, measured by
every variant before it trains, are at the same length; after the first variant they are a
cache hit). Test is POOLED (eval.test_pool_top_k=10): each test query's positives plus the
zero-shot model's top-10, ~2,000 of the 5,183 docs, re-encoded once per variant; results are
keyed `test-pool10` so they are never mistaken for full-corpus numbers. The pool is exact for
the zero-shot model and optimistic for the trained ones (they can only rank pooled docs).
Every variant reads the same training records (dense-mined, one random negative added so no
query lacks one); `num_negatives=0` ignores their negatives: in-batch negatives only.
Triplet and contrastive margin need a negative per query, so they run with hard negatives.
Measured numbers: README (Ablation sweeps).
"""

from ragtune.sweep.spec import Sweep


def get_sweep() -> Sweep:
    return Sweep(
        name="scifact_ablation",
        config="configs/scifact_biencoder.py",
        overrides={
            "data.train_file": "runs/mined/scifact_dense_r1.jsonl",
            "model.doc_max_length": 128,
            "train.max_steps": 8, "train.batch_size": 16, "train.eval_every": 4,
            "optim.lr": 5e-5, "optim.warmup_ratio": 0.1,
            "eval.dev_pool_top_k": 5, "eval.test_pool_top_k": 10, "eval.k_values": (1, 10, 100),
            "log.log_every": 1,
        },
        variants=[
            # InfoNCE at the default temperature: in-batch negatives only vs + 1 hard negative.
            {"loss.name": "info_nce", "loss.temperature": 0.05, "data.num_negatives": [0, 1]},
            # Margin losses on (query, positive, hard negative); margin on cosine scores.
            {"loss.name": ["triplet", "contrastive_margin"], "loss.margin": 0.2, "data.num_negatives": 1},
            # Temperature grid around 0.05 (with the hard negative).
            {"loss.name": "info_nce", "loss.temperature": [0.02, 0.1], "data.num_negatives": 1},
        ],
        metrics=("final/test-pool10/ndcg@10", "final/test-pool10/mrr@10", "final/test-pool10/recall@100",
                 "baseline/test-pool10/ndcg@10"),
        description=("SciFact test, POOLED (`test-pool10`: each query's positives + zero-shot top-10, ~2,000 of "
                     "5,183 docs); all-MiniLM-L6-v2 fine-tuned 8 steps x batch 16, docs cut to 128 tokens; "
                     "`baseline/` = the same model before training (zero-shot at 128 tokens, exact on the pool)."),
    )
