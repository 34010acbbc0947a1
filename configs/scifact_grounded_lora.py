"""Grounded answers on SciFact with a LoRA on SmolLM2-135M-Instruct (task 'generator').

Input: 4 passages ([1]..[4], 32 tokens each; gold mixed with negatives drawn from BM25 ranks
<= 200), then the claim. Target: the supporting id(s) or exactly "Information not available in
the provided context.". Training shows every train claim twice (generator.train_paired): with
its gold passage, and with that slot swapped for one more negative, so only the passages tell
the two answers apart. Test: a fixed seeded subset of 100 test claims, half with no gold passage.
Baseline = base model (LoRA B = 0), final = base + LoRA. 2 epochs = 364 steps, ~38 min on 2 CPU
cores (see the README for the numbers and the runs that led here).
"""

from ragtune.config import (
    DataConfig,
    ExperimentConfig,
    GeneratorConfig,
    LogConfig,
    OptimConfig,
    TrainConfig,
)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="generator",
        output_dir="runs/scifact_grounded_lora",
        data=DataConfig(dataset="scifact", train_split="train", dev_fraction=0.1, eval_split="test"),
        generator=GeneratorConfig(
            name="smollm2", lora_r=16, lora_alpha=32, lora_dropout=0.05,
            target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            lora_layers=15, k_passages=4, passage_tokens=32, no_gold_share=0.5, negatives="bm25",
            negatives_depth=200, train_paired=True, query_first=False, max_new_tokens=16, train_max_examples=0,
            dev_max_examples=40, eval_max_examples=100, eval_batch_size=16, bucket_size=8),
        optim=OptimConfig(lr=1e-3, weight_decay=0.0, warmup_ratio=0.1, schedule="linear", max_grad_norm=1.0),
        train=TrainConfig(epochs=2, batch_size=8, metric_for_best="exact_match"),
        log=LogConfig(wandb="offline", log_every=5),
    )
