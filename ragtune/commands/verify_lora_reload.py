"""Reload a generator run's exported LoRA with peft.PeftModel.from_pretrained and check that it
reproduces the run's final greedy test answers, and that merging it gives the same logits.

    ragtune verify-lora-reload runs/scifact_grounded_lora

The answers are regenerated with the task's own `greedy_answers` over the run's saved
test_records.jsonl, so the batches are the ones the run evaluated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ragtune.config import ConfigError
from ragtune.data.beir import DataError
from ragtune.data.instruct import collate_left, load_instruct_records, prompt_ids
from ragtune.generation.grounded import INSTRUCTION
from ragtune.models.generator import load_adapter, load_generator, merge_lora, pad_token_id
from ragtune.tasks.generator import finished_run, greedy_answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="output_dir of a finished `generator` task run")
    args = parser.parse_args(argv)
    try:
        predictions = sorted((args.run / "predictions").glob("*-test.jsonl"))
        cfg, records_path = finished_run(args.run, *([] if predictions else ["predictions/<n>-test.jsonl"]))
        g, final = cfg.generator, predictions[-1]
        records = load_instruct_records(records_path)
    except (ConfigError, DataError, FileNotFoundError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    expected = [json.loads(line)["output"] for line in final.read_text().splitlines()]
    base, tokenizer = load_generator(g.name)
    model = load_adapter(base, args.run / "model").eval()  # peft.PeftModel.from_pretrained
    outputs = greedy_answers(model, tokenizer, records, g, desc="regenerate test")
    same = sum(o == e for o, e in zip(outputs, expected, strict=True))
    print(f"reloaded adapter reproduces {same}/{len(expected)} test answers of {final}")

    pad = pad_token_id(tokenizer)
    prompts = [prompt_ids(tokenizer, r, g.system_prompt, INSTRUCTION, g.query_first) for r in records[:4]]
    batch = collate_left([(p, p) for p in prompts], pad)
    with torch.inference_mode():
        peft_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        merged_logits = merge_lora(model)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    print(f"max |peft - merged| logit over real tokens: {(peft_logits - merged_logits)[real].abs().max().item():.2e}")
    return 0 if same == len(expected) else 1


if __name__ == "__main__":
    sys.exit(main())
