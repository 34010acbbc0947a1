"""Grounded answers on SciFact with a LoRA on SmolLM2-135M-Instruct (task 'generator').

Input: a claim + 4 passages ([1]..[4], 32 tokens each; gold mixed with BM25 negatives, 40% of
claims with no gold passage; the claim comes first). Target: the supporting id(s) or exactly
"Information not available in the provided context.". Baseline = base model (LoRA B = 0),
final = base + LoRA. Test = a fixed seeded subset of test claims (generator.eval_max_examples).
Sized for 2 shared CPU cores (see the numbers in the README / report).
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
            target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), lora_layers=15,
            k_passages=4, passage_tokens=32, no_gold_share=0.4, negatives="bm25", query_first=True,
            max_new_tokens=16, train_max_examples=320, dev_max_examples=24, eval_max_examples=100,
            eval_batch_size=16, bucket_size=8),
        optim=OptimConfig(lr=1e-3, weight_decay=0.0, warmup_ratio=0.1, schedule="linear", max_grad_norm=1.0),
        train=TrainConfig(epochs=1, batch_size=8, metric_for_best="exact_match"),
        log=LogConfig(wandb="offline", log_every=5),
    )
