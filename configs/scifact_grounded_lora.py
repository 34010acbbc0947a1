"""Grounded answers on SciFact with a LoRA on SmolLM2-135M-Instruct (task 'generator').

Input: 4 passages ([1]..[4], 32 tokens each; gold mixed with negatives drawn from BM25 ranks
<= 200), then the claim. Target: the supporting id(s) or exactly "Information not available in
the provided context.". Training shows every train claim twice (generator.train_paired): with
its gold passage, and with that slot swapped for one more negative, so only the passages tell
the two answers apart. The LoRA (r 16) sits on all attention and MLP projections of the top 15
decoder layers; lr 1e-3, batch 8, 2 epochs = 364 steps. The checkpoint is the best dev exact
match (40 held-out train claims). Test: a fixed seeded subset of 100 test claims, half with no
gold passage. Baseline = base model (LoRA B = 0), final = base + LoRA.
Measured numbers and the runs that led here: README (Generator: grounded answers with LoRA, and
synthetic queries).
"""

from ragtune.config import ExperimentConfig, GeneratorConfig, LogConfig, OptimConfig, TrainConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        task="generator",
        output_dir="runs/scifact_grounded_lora",
        generator=GeneratorConfig(
            target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            lora_layers=15, passage_tokens=32, no_gold_share=0.5, negatives_depth=200, train_paired=True,
            eval_max_examples=100),
        optim=OptimConfig(lr=1e-3, weight_decay=0.0),
        train=TrainConfig(epochs=2, batch_size=8, metric_for_best="exact_match"),
        log=LogConfig(log_every=5),
    )
