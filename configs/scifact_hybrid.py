"""BM25 + zero-shot MiniLM hybrid on SciFact: fusion and weight chosen on train queries, never test.

Chosen by `python experiments/run.py --config configs/scifact_hybrid.py --hybrid.tune=true
--data.dev_fraction=1.0` (grid rrf | weighted x dense weight 0.0..1.0, nDCG@10 on all 809 train
queries: nothing is trained here, so all of train is held out): weighted min-max fusion, w=0.5
(0.7308; best rrf: w=0.3, 0.7170). The 81-query dev split (dev_fraction=0.1) is too small to
separate them: rrf w=0.4 0.7507 vs weighted w=0.2 0.7504.
"""

from ragtune.config import EvalConfig, ExperimentConfig, HybridConfig, LogConfig, ModelConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="hybrid",
        output_dir="runs/scifact_hybrid",
        model=ModelConfig(name="minilm", pooling="mean", normalize=True, query_max_length=64, doc_max_length=256),
        hybrid=HybridConfig(fusion="weighted", weight=0.5, rrf_k=60.0, depth=100, bm25_k1=1.2, bm25_b=0.75),
        eval=EvalConfig(k_values=(1, 10, 100), top_k=100),
        log=LogConfig(wandb="disabled"),
    )
